"""Log-likelihoods under a replica: held-out NLL of demonstrations and log-probs of preference answers.

Demonstrations are scored on the assistant tokens only (the same `{% generation %}` mask training
uses), so NLL measures how well a replica predicts what the contributor wrote, not the user's or the
tools' text. Preference answers are scored as the completion after the prompt's assistant header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from replica.agents.adapters import use_adapter
from replica.agents.kv_cache import RowCache, common_prefix, roomy_cache, supports_row_caches


@dataclass(frozen=True)
class Scored:
    """Summed negative log-likelihood of the scored tokens of one example, and how many there were."""

    nll: float
    tokens: int


def demonstration_rows(
    tokenizer: PreTrainedTokenizerBase, examples: list[dict[str, Any]], chat_template: str
) -> list[tuple[list[int], list[int]]]:
    """(input ids, assistant mask) of each `sft/*` row ({"messages", "tools"}) under the training template."""
    rows = []
    for example in examples:
        encoded = tokenizer.apply_chat_template(
            example["messages"],
            tools=example.get("tools") or None,
            chat_template=chat_template,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        rows.append((list(encoded["input_ids"]), list(encoded["assistant_masks"])))
    return rows


def completion_rows(
    tokenizer: PreTrainedTokenizerBase,
    prompt: list[dict[str, Any]],
    completion: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
) -> tuple[list[int], list[int]]:
    """(input ids, completion mask) of prompt + completion: the mask covers what follows the
    prompt's assistant header, i.e. exactly what a policy would have generated."""
    head = list(
        tokenizer.apply_chat_template(
            prompt, tools=tools or None, add_generation_prompt=True, return_dict=True
        )["input_ids"]
    )
    full = list(
        tokenizer.apply_chat_template(prompt + completion, tools=tools or None, return_dict=True)["input_ids"]
    )
    if full[: len(head)] != head:
        raise ValueError("the chat template renders the prompt differently once a completion follows it")
    return full, [0] * len(head) + [1] * (len(full) - len(head))


@torch.inference_mode()
def score_rows(
    model: PreTrainedModel,
    rows: list[tuple[list[int], list[int]]],
    adapter: str | None,
    pad_token_id: int,
    batch_size: int = 8,
    share_prefix: bool = True,
) -> list[Scored]:
    """NLL of the masked tokens of each row under `adapter` (None: the bare base), right-padded batches.

    The rows' common leading tokens (a contributor's system prompt and tool schemas: most of each
    row) are computed once and read from a key/value cache by every batch (`share_prefix`), and the
    vocabulary projection runs only where a token is scored; the figures are those of a plain
    forward pass over each whole row, up to float rounding (tests/test_eval_likelihood.py).
    """
    scores: list[Scored] = []
    with use_adapter(model, adapter):
        prefix = _shared_prefix(model, rows) if share_prefix else None
        for start in range(0, len(rows), batch_size):
            scores.extend(_score_batch(model, rows[start : start + batch_size], pad_token_id, prefix))
    return scores


def mean_nll(scores: list[Scored]) -> float:
    """Token-weighted mean NLL (nats per token) over examples; perplexity is its exp."""
    tokens = sum(s.tokens for s in scores)
    return sum(s.nll for s in scores) / tokens if tokens else float("nan")


def _shared_prefix(model: PreTrainedModel, rows: list[tuple[list[int], list[int]]]) -> RowCache | None:
    """Keys and values of the leading tokens every row shares, up to the token before the first
    scored one (whose logits must be computed); None when that is too short to be worth a cache
    or the model's cache cannot be shared row by row."""
    if len(rows) < 2 or not supports_row_caches(model):
        return None
    first_ids = rows[0][0]
    length = min(common_prefix(first_ids, ids) for ids, _ in rows[1:])
    for _, mask in rows:
        if 1 in mask:
            length = min(length, mask.index(1) - 1)
    if length < 2:
        return None
    cache = DynamicCache(config=model.config)
    model(
        input_ids=torch.tensor([first_ids[:length]], device=model.device),
        cache=cache,
        use_cache=True,
    )
    return RowCache(first_ids[:length], [(layer.keys, layer.values) for layer in cache.layers])


def _score_batch(
    model: PreTrainedModel, rows: list[tuple[list[int], list[int]]], pad: int, prefix: RowCache | None
) -> list[Scored]:
    past = len(prefix.ids) if prefix else 0  # every row starts with these tokens, read from the cache
    width = max(len(ids) for ids, _ in rows) - past
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), past + width), dtype=torch.long)
    attention[:, :past] = 1
    scored = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row_ids, mask) in enumerate(rows):
        n = len(row_ids) - past
        ids[i, :n] = torch.tensor(row_ids[past:])
        attention[i, past : past + n] = 1
        scored[i, :n] = torch.tensor(mask[past:], dtype=torch.bool)
    # Column t predicts token t + 1: only the columns whose next token is scored in some row.
    keep = scored[:, 1:].any(dim=0).nonzero().squeeze(-1)
    if not len(keep):
        return [Scored(nll=0.0, tokens=0) for _ in rows]
    device = model.device
    cache = None
    if prefix:
        cache = roomy_cache(model, past + width)
        for index, layer in enumerate(cache.layers):
            layer.fill([prefix.layers[index]] * len(rows), [past] * len(rows), past)
    logits = model(
        input_ids=ids.to(device),
        attention_mask=attention.to(device),
        cache=cache,
        use_cache=cache is not None,
        logits_to_keep=keep.to(device),
    ).logits.float()
    logprobs = torch.log_softmax(logits, dim=-1)
    targets = ids[:, keep + 1].to(device)
    token_nll = -logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = scored[:, keep + 1].to(device)
    return [
        Scored(nll=float(token_nll[i][mask[i]].sum()), tokens=int(mask[i].sum())) for i in range(len(rows))
    ]

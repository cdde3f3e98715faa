"""Log-likelihoods under a replica: held-out NLL of demonstrations and log-probs of preference answers.

Demonstrations are scored on the assistant tokens only (the same `{% generation %}` mask training
uses), so NLL measures how well a replica predicts what the contributor wrote, not the user's or the
tools' text. Preference answers are scored as the completion after the prompt's assistant header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from replica.agents.adapters import use_adapter


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
) -> list[Scored]:
    """NLL of the masked tokens of each row under `adapter` (None: the bare base), right-padded batches."""
    scores: list[Scored] = []
    with use_adapter(model, adapter):
        for start in range(0, len(rows), batch_size):
            scores.extend(_score_batch(model, rows[start : start + batch_size], pad_token_id))
    return scores


def mean_nll(scores: list[Scored]) -> float:
    """Token-weighted mean NLL (nats per token) over examples; perplexity is its exp."""
    tokens = sum(s.tokens for s in scores)
    return sum(s.nll for s in scores) / tokens if tokens else float("nan")


def _score_batch(model: PreTrainedModel, rows: list[tuple[list[int], list[int]]], pad: int) -> list[Scored]:
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    scored = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row_ids, mask) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        attention[i, : len(row_ids)] = 1
        scored[i, : len(mask)] = torch.tensor(mask, dtype=torch.bool)
    device = model.device
    logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()
    # Token t is predicted from position t-1.
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = ids[:, 1:].to(device)
    token_nll = -logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = scored[:, 1:].to(device)
    return [
        Scored(nll=float(token_nll[i][mask[i]].sum()), tokens=int(mask[i].sum())) for i in range(len(rows))
    ]

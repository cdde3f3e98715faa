"""The agent loop: generate a turn, parse tool calls, run them in the sandbox, repeat.

This is the one loop in replica; evaluation and chat both drive it. Many episodes advance
together: each round, every unfinished episode's conversation is rendered with the tokenizer's
chat template (`tools=`), the prompts are left-padded into batches and generated in one call, and
when a batch holds episodes of different adapters, PEFT's mixed-adapter batching (`adapter_names=`)
runs each row through its own LoRA on the one loaded base. Tool calls are parsed by TRL's
`parse_response` with the prompt as `prefix=` (so the template's tool-call syntax is recognized)
and `tools=` (so arguments are typed by the tool's schema).

Nothing is read twice (`cache_store.py`): an episode keeps its keys and values from one turn to
the next (the re-rendered conversation starts with what the model already read, so a turn computes
only the tool results and the new assistant header), and every first turn starts from its system
prompt and tool schemas prefilled once per adapter. Reuse is decided on token ids, so greedy
episodes come out the same with or without the caches; `GenerationSettings` turns each off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl.chat_template_utils import parse_response

from replica.agents.adapters import BASE_ADAPTER, use_adapter
from replica.agents.cache_store import CacheStore
from replica.agents.kv_cache import RowCache, cached_batch, row_caches, supports_row_caches
from replica.agents.sandbox import STEP_LIMIT, Sandbox
from replica.errors import UserError
from replica.templates import has_response_parser

# Why an episode ended.
STOP_ANSWER = "answer"  # an assistant turn without tool calls: the final answer
STOP_STEP_LIMIT = "step_limit"  # max_turns assistant turns without a final answer
STOP_CONTEXT = "context_limit"  # the conversation no longer fits the model
STOP_TOOL_CALLS = "tool_calls"  # chat mode (no sandbox): the caller runs the tools


@dataclass(frozen=True)
class GenerationSettings:
    """How each assistant turn is generated. temperature 0 = greedy (the reproducible default)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    turn_cache: bool = True  # carry each episode's keys and values from one turn to the next
    prefix_cache: bool = True  # prefill each (adapter, system prompt + tools) once for all episodes
    cache_mb: int = 2048  # memory for both caches between turns (least recently used dropped first)


@dataclass
class Episode:
    """One conversation of a model (an adapter, or the base when `adapter` is None) with an environment."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    sandbox: Sandbox | None = None
    adapter: str | None = None
    max_turns: int = 8
    meta: dict[str, Any] = field(default_factory=dict)
    turns: int = 0
    done: bool = False
    stop_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_errors: list[str] = field(default_factory=list)
    generated_tokens: int = 0
    prefilled_tokens: int = 0  # prompt tokens computed for this episode (not read from a cache)

    @property
    def final_answer(self) -> str:
        """The content of the last assistant message ("" when the model never answered)."""
        for message in reversed(self.messages):
            if message.get("role") == "assistant":
                return message.get("content") or ""
        return ""


def run_episodes(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    episodes: list[Episode],
    settings: GenerationSettings = GenerationSettings(),
    batch_size: int = 16,
    caches: CacheStore | None = None,
    on_progress: Callable[[list[Episode]], None] | None = None,
) -> list[Episode]:
    """Advance every episode to its end (final answer, step limit or context limit), in batches.

    `batch_size=1` runs them one at a time; with greedy decoding both give the same episodes, and
    so do runs with and without the caches (`settings.turn_cache`, `settings.prefix_cache`).
    `caches` (default: a fresh store for this call, as the settings say) may be passed to read its
    counters or to share prefixes across calls; it must not outlive a change of adapter weights.
    `on_progress(episodes)` is called after each generated batch (a progress display reads `done`).
    """
    _require_response_parser(tokenizer)
    store = caches if caches is not None else cache_store(model, settings)
    round_index = 0
    while active := [e for e in episodes if not e.done]:
        pending = []
        for episode in active:
            prompt = render_prompt(tokenizer, episode.messages, episode.tools)
            if _fits(model, prompt, settings):
                pending.append((episode, prompt))
            else:
                _finish(episode, STOP_CONTEXT)
                if store is not None:
                    store.drop_turn(_key(episode))
        reused = _reusable(store, model, tokenizer, pending)
        rows = sorted(zip(pending, reused, strict=True), key=_batch_order)
        for chunk in _chunks(rows, batch_size):
            turns = generate_turns(
                model,
                tokenizer,
                [prompt for (_, prompt), _ in chunk],
                [episode.adapter for (episode, _), _ in chunk],
                settings,
                seed_offset=round_index,
                reused=[cache for _, cache in chunk] if store else None,
                keep_caches=store is not None and store.turns,
            )
            for ((episode, prompt), _), turn in zip(chunk, turns, strict=True):
                episode.prefilled_tokens += turn.computed
                _advance(episode, tokenizer, prompt, turn.new_ids)
                if store is not None and turn.cache is not None and not episode.done:
                    store.keep_turn(_key(episode), turn.cache)
                elif store is not None:
                    store.drop_turn(_key(episode))
            if on_progress is not None:
                on_progress(episodes)
        round_index += 1
    return episodes


def chat_turn(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    adapter: str | None = None,
    settings: GenerationSettings = GenerationSettings(),
) -> dict[str, Any]:
    """One assistant message (content and parsed `tool_calls`) for a conversation: the serving step."""
    prompt = render_prompt(tokenizer, messages, tools)
    new_ids = generate_batch(model, tokenizer, [prompt], [adapter], settings)[0]
    return parse_turn(tokenizer, prompt, new_ids, tools)


def render_prompt(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> list[int]:
    """The conversation so far plus the assistant header, as token ids of the tokenizer's template."""
    encoded = tokenizer.apply_chat_template(
        messages, tools=tools or None, add_generation_prompt=True, return_dict=True
    )
    return list(encoded["input_ids"])


@dataclass
class Turn:
    """One row's generated turn: its new tokens (up to EOS), how many prompt tokens it computed
    (the rest came from a cache), and, when kept, the keys and values of prompt + new tokens."""

    new_ids: list[int]
    computed: int
    cache: RowCache | None = None


def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    adapters: list[str | None],
    settings: GenerationSettings,
    seed_offset: int = 0,
) -> list[list[int]]:
    """Generate one turn per prompt (left-padded batch); returns each row's new tokens up to its EOS."""
    return [
        turn.new_ids for turn in generate_turns(model, tokenizer, prompts, adapters, settings, seed_offset)
    ]


@torch.inference_mode()
def generate_turns(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    adapters: list[str | None],
    settings: GenerationSettings,
    seed_offset: int = 0,
    reused: list[RowCache | None] | None = None,
    keep_caches: bool = True,
) -> list[Turn]:
    """Generate one turn per prompt in one generate() call.

    Without `reused` every prompt is prefilled in full. With it (one entry per row: the cached
    start of that row's prompt, or None), each row reads that start from the cache and computes
    the rest; with `keep_caches`, its `Turn.cache` then holds the keys and values of its prompt
    and new tokens.
    """
    eos_ids = _eos_ids(model, tokenizer)
    kwargs = _generation_kwargs(tokenizer, settings, eos_ids, seed_offset)
    if reused is None:
        batch = tokenizer.pad({"input_ids": prompts}, padding_side="left", return_tensors="pt")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        with _adapters_for(model, adapters, kwargs):
            output = model.generate(**batch, **kwargs)
        width = batch["input_ids"].shape[1]
        return [
            Turn(_until_eos(row[width:].tolist(), eos_ids), len(p))
            for row, p in zip(output, prompts, strict=True)
        ]
    layout = cached_batch(model, prompts, reused, tokenizer.pad_token_id, settings.max_new_tokens)
    with _adapters_for(model, adapters, kwargs):
        output = model.generate(
            input_ids=layout.input_ids, attention_mask=layout.attention_mask, cache=layout.cache, **kwargs
        )
    width = layout.input_ids.shape[1]
    new_ids = [_until_eos(row[width:].tolist(), eos_ids) for row in output]
    if not keep_caches:
        return [Turn(*row) for row in zip(new_ids, layout.computed, strict=True)]
    caches = row_caches(layout.cache, [p + n for p, n in zip(prompts, new_ids, strict=True)], layout.starts)
    return [Turn(*row) for row in zip(new_ids, layout.computed, caches, strict=True)]


def parse_turn(
    tokenizer: PreTrainedTokenizerBase, prompt: list[int], new_ids: list[int], tools: list[dict] | None
) -> dict[str, Any]:
    """The assistant message a turn's tokens encode (tool calls parsed; malformed ones become text)."""
    parsed = parse_response(tokenizer, new_ids, prefix=prompt, tools=tools or None)
    message: dict[str, Any] = {"role": "assistant", "content": parsed.get("content") or ""}
    calls = [_normalize_call(call) for call in parsed.get("tool_calls") or []]
    if calls:
        message["tool_calls"] = calls
    return message


# --------------------------------------------------------------------------- internals


def _require_response_parser(tokenizer: PreTrainedTokenizerBase) -> None:
    """Stop before generating anything when no tool call could be read back from the output
    (replica.templates.add_response_parser found no parser for the model's chat template)."""
    if not has_response_parser(tokenizer):
        raise UserError(
            "the model's chat template has no known response parser, so its tool calls cannot be read; "
            "set model.chat_template to a TRL template family (e.g. qwen2_5) that the model was trained with"
        )


def _advance(
    episode: Episode, tokenizer: PreTrainedTokenizerBase, prompt: list[int], new_ids: list[int]
) -> None:
    """Append the generated turn; run its tool calls; decide whether the episode is over."""
    episode.turns += 1
    episode.generated_tokens += len(new_ids)
    message = parse_turn(tokenizer, prompt, new_ids, episode.tools)
    episode.messages.append(message)
    calls = message.get("tool_calls") or []
    if not calls:
        return _finish(episode, STOP_ANSWER)
    for index, call in enumerate(calls):
        call.setdefault("id", f"call_{episode.turns}_{index}")
    episode.tool_calls.extend(calls)
    if episode.sandbox is None:
        return _finish(episode, STOP_TOOL_CALLS)
    for call in calls:
        outcome = episode.sandbox.execute(call)
        episode.messages.append(outcome.message)
        if outcome.error:
            episode.tool_errors.append(outcome.error)
    if episode.turns >= episode.max_turns:
        return _finish(episode, STOP_STEP_LIMIT)
    return None


def _finish(episode: Episode, reason: str) -> None:
    episode.done = True
    episode.stop_reason = reason
    if reason == STOP_STEP_LIMIT and episode.sandbox is not None:
        episode.sandbox.errors[STEP_LIMIT] = episode.sandbox.errors.get(STEP_LIMIT, 0) + 1
        episode.tool_errors.append(STEP_LIMIT)


def _normalize_call(call: dict[str, Any]) -> dict[str, Any]:
    """OpenAI shape whatever the parser returned: {"type", "function": {"name", "arguments": dict}}."""
    function = call.get("function", call)
    arguments = function.get("arguments")
    normalized = {
        "type": "function",
        "function": {"name": function.get("name"), "arguments": arguments if arguments is not None else {}},
    }
    if call.get("id"):
        normalized["id"] = call["id"]
    return normalized


def cache_store(model: PreTrainedModel, settings: GenerationSettings) -> CacheStore | None:
    """A fresh store for the settings' caches; None when both are off or the model's cache cannot
    be cut by rows (sliding-window or linear-attention layers: those models are prefilled in full)."""
    if not (settings.turn_cache or settings.prefix_cache) or not supports_row_caches(model):
        return None
    return CacheStore(settings.cache_mb * 2**20, turns=settings.turn_cache, prefixes=settings.prefix_cache)


def _reusable(
    store: CacheStore | None,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pending: list[tuple[Episode, list[int]]],
) -> list[RowCache | None]:
    """Each pending row's cached prompt start: its own last turn, else its shared prefix (prefilled
    now, once per adapter and prefix, for the rows that have no turn cache)."""
    if store is None:
        return [None] * len(pending)
    starts = [(e.adapter, e.messages, e.tools) for e, _ in pending if not store.has_turn(_key(e))]
    store.prefill_prefixes(model, tokenizer, starts)
    return [store.reusable(_key(episode), episode.adapter, prompt) for episode, prompt in pending]


def _key(episode: Episode) -> tuple[int, str | None]:
    """An episode's turn-cache key. With its adapter: a store shared across calls may see an id
    again, and keys and values computed by one adapter must never be read with another."""
    return id(episode), episode.adapter


def _batch_order(row: tuple[tuple[Episode, list[int]], RowCache | None]) -> tuple[str, int, int]:
    """Sort key: adapter, then prompt tokens to compute, then length. A batch then holds few
    adapters (PEFT's mixed-adapter forward loops over the distinct adapters of a batch in every
    LoRA layer, so each one costs time at every step) and rows of alike lengths (less padding)."""
    (episode, prompt), cache = row
    return episode.adapter or "", len(prompt) - (len(cache.ids) if cache else 0), len(prompt)


def _generation_kwargs(
    tokenizer: PreTrainedTokenizerBase, settings: GenerationSettings, eos_ids: list[int], seed_offset: int
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": eos_ids,
        "do_sample": settings.temperature > 0,
    }
    if settings.temperature > 0:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        torch.manual_seed(settings.seed + seed_offset)  # recorded seed: the same command samples the same
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)  # silence sampling-only defaults
    return kwargs


def _fits(model: PreTrainedModel, prompt: list[int], settings: GenerationSettings) -> bool:
    """Whether the prompt plus a full turn fits the model's positions (else the episode ends)."""
    limit = getattr(model.config, "max_position_embeddings", None)
    return limit is None or len(prompt) + settings.max_new_tokens <= limit


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """End-of-turn tokens: the tokenizer's EOS (the template's turn end) and the model's own."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def _until_eos(ids: list[int], eos_ids: list[int]) -> list[int]:
    """Keep a row's tokens up to and including its first EOS (what follows is padding)."""
    for position, token in enumerate(ids):
        if token in eos_ids:
            return ids[: position + 1]
    return ids


@contextlib.contextmanager
def _adapters_for(
    model: PreTrainedModel, adapters: list[str | None], kwargs: dict[str, Any]
) -> Iterator[None]:
    """Route each batch row through its adapter: one adapter for the whole batch is the plain fast
    path (`use_adapter`); several become PEFT's mixed-adapter batch (`adapter_names=` in generate)."""
    names = set(adapters)
    if len(names) > 1:
        if not isinstance(model, PeftModel):
            raise ValueError(
                f"adapters {sorted(n for n in names if n)} requested but the model has none loaded"
            )
        kwargs["adapter_names"] = [a or BASE_ADAPTER for a in adapters]
        yield
        return
    with use_adapter(model, next(iter(names))):
        yield


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

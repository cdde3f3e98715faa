"""The keys and values the agent loop keeps between turns: per episode, and per shared prefix.

Two kinds of entries share one memory bound (least recently used dropped first):

- an episode's **turn cache**: everything its model read and wrote last turn. The next turn's
  prompt (the conversation re-rendered with the tool results appended) starts with most of it;
  the loop reuses the longest common prefix and computes only the rest.
- a **shared prefix**: the tokens every conversation with the same system messages and tool
  schemas starts with, prefilled once per adapter (LoRA changes keys and values) and read by every
  episode's first turn, the way vLLM's automatic prefix caching does.

Reuse is decided on token ids alone, so it is exact: a row reads cached keys and values only for
the tokens its own prompt starts with; when nothing matches, it is prefilled in full.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedTokenizerBase

from replica.agents.adapters import use_adapter
from replica.agents.kv_cache import RowCache, common_prefix

# Two user messages that differ from their first token: their renderings share exactly the
# tokens that come before any user content (system messages, tool schemas, the user header).
_PROBES = ("0", "1")


class CacheStore:
    """Turn caches and shared prefixes, together at most `max_bytes` (least recently used evicted)."""

    def __init__(self, max_bytes: int, turns: bool = True, prefixes: bool = True) -> None:
        self.max_bytes = max_bytes
        self.turns = turns
        self.prefixes = prefixes
        self.prefix_prefills = 0  # shared prefixes computed (once per adapter and prefix, unless evicted)
        self.prefix_tokens = 0  # tokens those prefills computed
        self.evictions = 0
        self._entries: OrderedDict[tuple, RowCache] = OrderedDict()
        self._bytes = 0
        self._prefix_ids: dict[str, list[int]] = {}

    def reusable(self, episode_key: Hashable, adapter: str | None, prompt: list[int]) -> RowCache | None:
        """The longest cached start of `prompt` for this episode and adapter (None: nothing cached).

        Always leaves the prompt's last token to compute: its logits begin the turn.
        """
        best: RowCache | None = None
        best_key = None
        turn = self._entries.get(("turn", episode_key))
        if turn is not None:
            shared = min(common_prefix(turn.ids, prompt), len(prompt) - 1)
            if shared > 0:
                best, best_key = turn.cropped(shared), ("turn", episode_key)
        for key, entry in self._entries.items():
            if key[0] != "prefix" or key[1] != adapter or len(entry.ids) >= len(prompt):
                continue
            if len(entry.ids) > (len(best.ids) if best else 0) and prompt[: len(entry.ids)] == entry.ids:
                best, best_key = entry, key
        if best_key is not None:
            self._entries.move_to_end(best_key)
        return best

    def keep_turn(self, episode_key: Hashable, cache: RowCache) -> None:
        """Remember what an episode's model has read, for its next turn."""
        if self.turns:
            self._put(("turn", episode_key), cache)

    def drop_turn(self, episode_key: Hashable) -> None:
        """Forget an episode's cache (it has ended)."""
        entry = self._entries.pop(("turn", episode_key), None)
        if entry is not None:
            self._bytes -= entry.nbytes

    def has_turn(self, episode_key: Hashable) -> bool:
        return ("turn", episode_key) in self._entries

    def prefill_prefixes(
        self,
        model,
        tokenizer: PreTrainedTokenizerBase,
        starts: list[tuple[str | None, list[dict], list | None]],
    ) -> None:
        """Prefill the shared prefix of each (adapter, messages, tools) not cached yet: once per
        adapter and distinct prefix, however many episodes start with it."""
        if not self.prefixes:
            return
        for adapter, messages, tools in starts:
            ids = self.prefix_ids(tokenizer, messages, tools)
            key = ("prefix", adapter, tuple(ids))
            if len(ids) < 2 or key in self._entries:
                continue
            self._put(key, _prefill(model, adapter, ids))
            self.prefix_prefills += 1
            self.prefix_tokens += len(ids)

    def prefix_ids(
        self, tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], tools: list | None
    ) -> list[int]:
        """The tokens every conversation with these leading system messages and tools starts with,
        under the tokenizer's chat template (memoized: rendering a template costs milliseconds)."""
        system = _leading_system(messages)
        key = json.dumps([system, tools or None], sort_keys=True, default=str)
        if key not in self._prefix_ids:
            a, b = (
                list(
                    tokenizer.apply_chat_template(
                        system + [{"role": "user", "content": probe}], tools=tools or None, return_dict=True
                    )["input_ids"]
                )
                for probe in _PROBES
            )
            self._prefix_ids[key] = a[: common_prefix(a, b)]
        return self._prefix_ids[key]

    def _put(self, key: tuple, cache: RowCache) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._entries[key] = cache
        self._bytes += cache.nbytes
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes
            self.evictions += 1
        if self._bytes > self.max_bytes:  # one entry larger than the whole bound: keep nothing
            self._entries.clear()
            self._bytes = 0
            self.evictions += 1

    @property
    def nbytes(self) -> int:
        return self._bytes


@torch.inference_mode()
def _prefill(model, adapter: str | None, ids: list[int]) -> RowCache:
    """One forward pass over `ids` with `adapter` (None: the base); its keys and values."""
    cache = DynamicCache(config=model.config)
    with use_adapter(model, adapter):
        model(
            input_ids=torch.tensor([ids], device=model.device), cache=cache, use_cache=True, logits_to_keep=1
        )
    return RowCache(list(ids), [(layer.keys, layer.values) for layer in cache.layers])


def _leading_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    leading = []
    for message in messages:
        if message.get("role") != "system":
            break
        leading.append(message)
    return leading

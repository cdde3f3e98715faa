"""What a model has already read: one row's keys and values, and batches that start from them.

A `RowCache` holds the keys and values one adapter computed for one row's token ids (LoRA changes
keys and values, so a cache belongs to one adapter). The agent loop keeps one per episode between
turns and one per shared prefix (system prompt + tool schemas); `cached_batch` lays a batch out
so that each row reads what it can from its cache and computes only the rest.

The layout is plain left padding, so generate() needs nothing special: with `width` = the longest
run of tokens any row must compute, every row feeds its last `width` tokens (a row whose cache
covers more re-computes a few cached tokens) and reads the tokens before them from the cache,
left-padded to a common length. Position ids come from the attention mask, so each row's tokens
keep the positions they had when they were cached.

Its layers (`RoomyLayer`) are transformers' `DynamicLayer` with room reserved for the turn: the
stock layer concatenates the whole cache with each new token, a copy that was the largest single
cost of a decode step on CPU (measured with cProfile on the demo: `torch.cat` 4.3 s of 20 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


@dataclass
class RowCache:
    """Keys and values for `ids`, computed by one adapter: per layer a (keys, values) pair, each
    shaped [1, kv_heads, len(ids), head_dim]."""

    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def nbytes(self) -> int:
        return sum(keys.nbytes + values.nbytes for keys, values in self.layers)

    def cropped(self, length: int) -> RowCache:
        """The first `length` tokens (views of the same tensors: no copy)."""
        return RowCache(self.ids[:length], [(k[:, :, :length], v[:, :, :length]) for k, v in self.layers])


@dataclass
class CachedBatch:
    """A left-padded batch for generate(): ids and mask over cached and new tokens, and the cache
    holding the cached part (empty when no row reads anything from a cache)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    cache: DynamicCache
    starts: list[int]  # column of each row's first real token
    computed: list[int]  # prompt tokens each row computes (the rest it reads from its cache)


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two id lists share."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


def supports_row_caches(model) -> bool:
    """Whether the model's cache is one full-attention `DynamicLayer` per layer: the only kind whose
    rows can be cut and re-joined token by token (sliding-window and linear-attention layers keep
    a window or a state instead, so the loop prefills those models in full)."""
    cache = DynamicCache(config=model.config)
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


class RoomyLayer(DynamicLayer):
    """A full-attention cache layer that writes new keys and values into room reserved ahead
    (`room` tokens in all, doubled when outgrown) instead of concatenating the whole cache each step.
    `keys` and `values` are views of the filled part, so everything that reads a `DynamicLayer`
    (sequence length, masks, cropping) reads it unchanged."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        end = length + key_states.shape[-2]
        if self._keys is None or end > self._keys.shape[-2]:
            self._keys = _grown(self._keys, self.keys, key_states, max(self.room, 2 * end))
            self._values = _grown(self._values, self.values, value_states, max(self.room, 2 * end))
        self._keys[:, :, length:end] = key_states
        self._values[:, :, length:end] = value_states
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def fill(self, rows: list[tuple[torch.Tensor, torch.Tensor] | None], keep: list[int], past: int) -> None:
        """Start with each row's first `keep[r]` cached keys and values, right-aligned at column
        `past`, zeros to their left (padding the attention mask hides): written straight into the
        reserved room, one copy per row."""
        keys, values = next(row for row, k in zip(rows, keep, strict=True) if k)
        self._keys = keys.new_empty((len(rows), keys.shape[1], max(self.room, past), keys.shape[3]))
        self._values = values.new_empty((len(rows), values.shape[1], max(self.room, past), values.shape[3]))
        for index, (row, k) in enumerate(zip(rows, keep, strict=True)):
            self._keys[index, :, : past - k] = 0
            self._values[index, :, : past - k] = 0
            if k:
                self._keys[index, :, past - k : past] = row[0][0, :, :k]
                self._values[index, :, past - k : past] = row[1][0, :, :k]
        self.keys, self.values = self._keys[:, :, :past], self._values[:, :, :past]
        self.device, self.is_initialized = keys.device, True


def roomy_cache(model, room: int) -> DynamicCache:
    """An empty cache of `RoomyLayer`s, one per layer of the model, each with room for `room` tokens."""
    cache = DynamicCache(config=model.config)
    cache.layers = [RoomyLayer(room) for _ in cache.layers]
    return cache


def cached_batch(
    model, prompts: list[list[int]], reused: list[RowCache | None], pad_token_id: int, new_tokens: int
) -> CachedBatch:
    """Lay out `prompts` so that each row reads its `reused` prefix (None: nothing) from the cache,
    with room in the cache for `new_tokens` generated tokens.

    Each reused cache must hold a prefix of its prompt shorter than the prompt (a row computes at
    least its last token, whose logits start the turn).
    """
    fresh = [len(p) - (len(r.ids) if r else 0) for p, r in zip(prompts, reused, strict=True)]
    if min(fresh) < 1:
        raise ValueError("a reused cache must leave at least one prompt token to compute")
    width = max(fresh)
    keep = [max(0, len(p) - width) for p in prompts]  # <= len(reused.ids): width >= each row's fresh
    past = max(keep)
    total = past + width
    ids = [[pad_token_id] * (total - len(p)) + p for p in prompts]
    mask = [[0] * (total - len(p)) + [1] * len(p) for p in prompts]
    device = model.device
    cache = roomy_cache(model, total + new_tokens)
    if past:
        for index, layer in enumerate(cache.layers):
            layer.fill([r.layers[index] if r else None for r in reused], keep, past)
    return CachedBatch(
        input_ids=torch.tensor(ids, device=device),
        attention_mask=torch.tensor(mask, device=device),
        cache=cache,
        starts=[total - len(p) for p in prompts],
        computed=[len(p) - k for p, k in zip(prompts, keep, strict=True)],
    )


def row_caches(cache: DynamicCache, sequences: list[list[int]], starts: list[int]) -> list[RowCache]:
    """Cut a batch cache back into rows: row r's tokens `sequences[r]` begin at column `starts[r]`.

    Each row keeps what the cache holds of its sequence (generate() never feeds its last token)
    and nothing of the padding after its end of turn. Copies, so the batch's tensors can be freed.
    """
    length = cache.get_seq_length()
    rows = []
    for row, (sequence, start) in enumerate(zip(sequences, starts, strict=True)):
        n = min(len(sequence), length - start)
        layers = [
            (
                layer.keys[row : row + 1, :, start : start + n].clone(),
                layer.values[row : row + 1, :, start : start + n].clone(),
            )
            for layer in cache.layers
        ]
        rows.append(RowCache(sequence[:n], layers))
    return rows


def _grown(buffer: torch.Tensor | None, filled: torch.Tensor, like: torch.Tensor, room: int) -> torch.Tensor:
    """A new buffer of `room` tokens holding what `filled` holds (the old buffer is dropped). Left
    uninitialized: every column is written before the `keys`/`values` views reach it."""
    shape = (like.shape[0], like.shape[1], room, like.shape[3])
    grown = like.new_empty(shape)
    if buffer is not None and filled.numel():
        grown[:, :, : filled.shape[-2]] = filled
    return grown

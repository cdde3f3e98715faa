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


def cached_batch(
    model, prompts: list[list[int]], reused: list[RowCache | None], pad_token_id: int
) -> CachedBatch:
    """Lay out `prompts` so that each row reads its `reused` prefix (None: nothing) from the cache.

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
    cache = DynamicCache(config=model.config)
    if past:
        sample = next(r for r, k in zip(reused, keep, strict=True) if k)
        layers = []
        for layer in range(len(sample.layers)):
            keys, values = zip(
                *(_left_padded(r, layer, k, past, sample) for r, k in zip(reused, keep, strict=True)),
                strict=True,
            )
            layers.append((torch.cat(keys).to(device), torch.cat(values).to(device)))
        cache = DynamicCache(layers, config=model.config)
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


def _left_padded(
    row: RowCache | None, layer: int, keep: int, past: int, sample: RowCache
) -> tuple[torch.Tensor, torch.Tensor]:
    """One row's first `keep` cached keys and values for a layer, zero-padded on the left to `past`
    (the attention mask hides the padding)."""
    shape_keys, shape_values = (t.shape for t in sample.layers[layer])
    keys = sample.layers[layer][0].new_zeros((1, shape_keys[1], past, shape_keys[3]))
    values = sample.layers[layer][1].new_zeros((1, shape_values[1], past, shape_values[3]))
    if keep:
        keys[:, :, past - keep :] = row.layers[layer][0][:, :, :keep]
        values[:, :, past - keep :] = row.layers[layer][1][:, :, :keep]
    return keys, values

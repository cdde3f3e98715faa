"""Cut the tokens a preference pair's two answers end with in common.

A pair whose rejected answer differs from the chosen one in a single token (an id with one wrong
digit, a tool call with one wrong value) shares everything after it: `", "address": "95 Oak
Street"}` follows both `C-909` and `C-908`. DPO's sequence log-ratio counts that shared tail twice,
raised after the right digit and lowered after the wrong one, and lowering it teaches the model
to stop writing what every tool call needs: on SmolLM2, plain DPO left bob's `update_address`
calls without their `address` argument (docs/benchmarks.md). Cut at the end of the span where the
answers differ, the pair says only what the contributor preferred. The tokens before the
difference are left alone (they cancel in the log-ratio); both answers keep at least one token.
"""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Dataset


@dataclass
class TrimStats:
    """How many pairs lost a shared tail, and how many completion tokens went with them."""

    pairs: int = 0
    trimmed: int = 0
    tokens: int = 0


def shared_suffix_length(chosen: list[int], rejected: list[int]) -> int:
    """Tokens the two answers end with in common, leaving each at least one token."""
    limit = min(len(chosen), len(rejected)) - 1
    length = 0
    while length < limit and chosen[-1 - length] == rejected[-1 - length]:
        length += 1
    return length


def trim_shared_suffix(dataset: Dataset) -> tuple[Dataset, TrimStats]:
    """The tokenized pairs (TRL's `chosen_ids` / `rejected_ids`) without their shared tails."""

    def trim(example: dict) -> dict:
        cut = shared_suffix_length(example["chosen_ids"], example["rejected_ids"])
        if cut:
            example["chosen_ids"] = example["chosen_ids"][:-cut]
            example["rejected_ids"] = example["rejected_ids"][:-cut]
        return example

    cuts = [
        shared_suffix_length(c, r)
        for c, r in zip(dataset["chosen_ids"], dataset["rejected_ids"], strict=True)
    ]
    stats = TrimStats(pairs=len(cuts), trimmed=sum(1 for cut in cuts if cut), tokens=2 * sum(cuts))
    return dataset.map(trim, desc="Cutting shared answer tails"), stats

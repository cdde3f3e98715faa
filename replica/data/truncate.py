"""Cutting a demonstration that is longer than `data.max_length` back to a turn boundary.

`data.too_long: truncate` (LLaMA-Factory users know it as `cutoff_len`) keeps the longest
beginning of the conversation that ends with an assistant turn and fits, instead of rejecting the
whole record. Cutting at a turn boundary, never inside a turn, keeps every kept turn exactly as
recorded and the conversation valid (a beginning of a valid conversation that ends with the
assistant is valid). Feedback records are not cut: dropping turns from a prompt or a response
would change what was judged, so they are rejected as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from replica.data.records import Demonstration

Measure = Callable[[BaseModel, list | None], tuple[int, dict[str, Any]]]


def truncate_to_fit(
    record: BaseModel, tools: list | None, measure: Measure, max_length: int
) -> tuple[Demonstration, dict[str, Any]] | None:
    """The longest turn-boundary cut of a demonstration that fits `max_length`, with its rendered
    parts; None for feedback records and for a demonstration whose first assistant turn is too long."""
    if not isinstance(record, Demonstration):
        return None
    # Where a cut may end: after each assistant turn but the last (the whole record is too long).
    ends = [i + 1 for i, m in enumerate(record.messages) if m.role == "assistant"][:-1]
    best = None
    low, high = 0, len(ends) - 1
    while low <= high:  # a longer beginning is never shorter in tokens: binary search the cut
        middle = (low + high) // 2
        cut = record.model_copy(update={"messages": record.messages[: ends[middle]]})
        length, parts = measure(cut, tools)
        if length <= max_length:
            best, low = (cut, parts), middle + 1
        else:
            high = middle - 1
    return best

"""Held-out splits by task, deterministic, with a leakage check.

A contributor's tasks are ordered by `sha256(f"{seed}:{task_id}")` and the first
`round(fraction * n)` are held out (at least one and at most n-1 when n >= 2, none when n = 1),
so every record of a task lands on the same side, the same seed always gives the same split,
and adding a task moves at most one other task across the cut. With `by: time` the contributor's most recently
recorded tasks are held out instead (a task's time is its latest `recorded_at`; records
without one count as oldest).

Demonstration tasks and feedback-only prompts are two pools split separately, so a contributor
always gets held-out demonstrations when they have two tasks or more; feedback about a
demonstrated task follows that task's side.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from replica.artifacts import sha256_text
from replica.config import SplitConfig
from replica.data.records import normalize_text

_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def heldout_count(n: int, fraction: float) -> int:
    """How many of n tasks to hold out."""
    if n < 2 or fraction <= 0:
        return 0
    return min(n - 1, max(1, math.floor(fraction * n + 0.5)))


def choose_heldout(times: dict[str, datetime | None], config: SplitConfig) -> set[str]:
    """The held-out task keys of one pool: `times` maps task key -> latest recorded_at."""
    count = heldout_count(len(times), config.heldout_fraction)
    if config.by == "time":
        order = sorted(times, key=lambda k: (_aware(times[k]), k), reverse=True)
    else:
        order = sorted(times, key=lambda k: sha256_text(f"{config.seed}:{k}"))
    return set(order[:count])


def _aware(moment: datetime | None) -> datetime:
    if moment is None:
        return _OLDEST
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def split_pools(
    demo_times: dict[str, datetime | None], feedback_times: dict[str, datetime | None], config: SplitConfig
) -> set[str]:
    """Held-out keys of one contributor: demonstration tasks, then feedback-only prompts."""
    heldout = choose_heldout(demo_times, config)
    feedback_only = {k: t for k, t in feedback_times.items() if k not in demo_times}
    return heldout | choose_heldout(feedback_only, config)


def note_time(times: dict[str, datetime | None], key: str, moment: datetime | None) -> None:
    """Record that `key` has a record made at `moment`, keeping the latest time per key."""
    if key not in times or moment is not None and (times[key] is None or _aware(moment) > _aware(times[key])):
        times[key] = moment


def prompt_texts(messages: Iterable[dict[str, Any]]) -> set[str]:
    """Normalized text of every user message (what a held-out prompt must not share with training)."""
    return {normalize_text(m["content"]) for m in messages if m.get("role") == "user" and m.get("content")}


def first_user_text(messages: list[dict[str, Any]]) -> str:
    return next(
        (normalize_text(m["content"]) for m in messages if m.get("role") == "user" and m.get("content")), ""
    )


class LeakageCheck:
    """Held-out rows whose opening user message also appears as a user message in training rows.

    Rows stream through it: every training row first (`train`), then the held-out ones (`check`).
    It keeps a 128-bit digest per distinct training prompt text, not the texts.
    """

    def __init__(self) -> None:
        self._seen: set[bytes] = set()
        self.found: list[dict[str, str]] = []

    def train(self, row: dict[str, Any]) -> None:
        self._seen.update(_digest(text) for text in prompt_texts(_messages(row)))

    def check(self, split: str, row: dict[str, Any]) -> None:
        text = first_user_text(_messages(row))
        if text and _digest(text) in self._seen:
            self.found.append(
                {"split": split, "id": row["id"], "task_id": row["task_id"], "text": text[:120]}
            )


def leakage(heldout: dict[str, list[dict]], train: dict[str, list[dict]]) -> list[dict[str, str]]:
    """`LeakageCheck` over lists of rows: `heldout` / `train` map split names (sft/..., pref/...)
    to rows with `messages` or `prompt`."""
    check = LeakageCheck()
    for rows in train.values():
        for row in rows:
            check.train(row)
    for split, rows in heldout.items():
        for row in rows:
            check.check(split, row)
    return check.found


def _messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    return row.get("messages") or row.get("prompt") or []


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

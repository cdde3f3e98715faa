"""Why records were rejected, grouped: the lines that end `replica data prepare` and `data validate`.

A user who sees "rejected 100" needs the reason next; one line per kind of reason, with its count
and the first place it was seen, says it without opening rejected.jsonl.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any


class Rejections:
    """Rejections grouped by kind of reason, for the summary: "97 x contributor_id: unknown contributor".

    Ids, quoted values and counts are left out of the grouping key (`reason_kind`), so a hundred
    records of a hundred unknown contributors are one line; the first place each was seen is kept.
    """

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.first: dict[str, str] = {}

    def add(self, outcome: Any) -> None:
        """Count one rejected `validate.Outcome`."""
        kind = reason_kind(outcome.path, outcome.reason)
        self.counts[kind] += 1
        self.first.setdefault(kind, f"{outcome.item.file}:{outcome.item.line}")

    def most_common(self, n: int = 5) -> list[dict[str, Any]]:
        return [
            {"reason": kind, "count": count, "first": self.first[kind]}
            for kind, count in self.counts.most_common(n)
        ]


def reason_kind(path: str, reason: str) -> str:
    """`path: reason` with list indices, quoted values and bare numbers replaced by placeholders."""
    path = re.sub(r"\[\d+\]", "[]", path or "$")
    reason = re.sub(r" \(and \d+ more problems?\)$", "", reason)
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
    reason = re.sub(r"(?<![=\w.])\d+(?:\.\d+)?(?![\w.])", "N", reason)
    return f"{path}: {reason}"


def rejection_lines(rejections: list[dict[str, Any]], note: str) -> list[str]:
    """The most common kinds of rejection, with counts and the first place each was seen."""
    if not rejections:
        return []
    lines = [f"most common rejections ({note}):"]
    lines += [f"  {r['count']:>6} x {r['reason']}  (first: {r['first']})" for r in rejections]
    return lines

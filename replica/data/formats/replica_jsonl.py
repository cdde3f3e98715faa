"""The native format: each row is already a record, tagged with `kind` (see docs/internals.md)."""

from __future__ import annotations

from typing import Any

from replica.data.formats.common import Where
from replica.data.records import RECORD_TYPES

NAME = "replica"
_UNOWNED = ("contributor", "task")  # kinds that belong to no contributor


def detect(obj: dict[str, Any]) -> bool:
    return obj.get("kind") in RECORD_TYPES


def convert(obj: dict[str, Any], where: Where) -> list[dict[str, Any]]:
    """Pass the row through; the input's `contributor:` fills a missing `contributor_id`."""
    if where.contributor and "contributor_id" not in obj and obj.get("kind") not in _UNOWNED:
        obj = {**obj, "contributor_id": where.contributor}
    return [obj]

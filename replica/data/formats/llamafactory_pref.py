"""LLaMA-Factory's preference rows: `{"conversations": [...prompt turns], "chosen": {"from", "value"}, "rejected": {...}}`."""

from __future__ import annotations

from typing import Any

from replica.data.formats.common import FormatError, Where, task_id_for
from replica.data.formats.sharegpt import to_messages

NAME = "llamafactory_pref"


def detect(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("conversations"), list) and isinstance(obj.get("chosen"), dict)


def convert(obj: dict[str, Any], where: Where) -> list[dict[str, Any]]:
    prompt = to_messages(obj.get("conversations"), obj.get("system"))
    return [
        {
            "kind": "preference",
            "id": where.record_id(),
            "contributor_id": where.contributor_id,
            "task_id": task_id_for(prompt),
            "prompt": prompt,
            "chosen": _answer(obj.get("chosen"), "chosen"),
            "rejected": _answer(obj.get("rejected"), "rejected"),
            "source": where.source(NAME),
        }
    ]


def _answer(turn: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(turn, dict) or "value" not in turn:
        raise FormatError(path, f"expected a turn object {{'from', 'value'}}, found {type(turn).__name__}")
    return to_messages([turn])

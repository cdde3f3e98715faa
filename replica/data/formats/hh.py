"""Anthropic HH-RLHF rows: `{"chosen": transcript, "rejected": transcript}`, turns `\\n\\nHuman:` / `\\n\\nAssistant:`.

The two transcripts share their history and differ in the final Assistant turn: the history
is the prompt, the final turns are chosen and rejected.
"""

from __future__ import annotations

import re
from typing import Any

from replica.data.formats.common import FormatError, Where, task_id_for

NAME = "hh"
_TURN = re.compile(r"\n\n(Human|Assistant): ?")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def detect(obj: dict[str, Any]) -> bool:
    chosen = obj.get("chosen")
    return isinstance(chosen, str) and chosen.lstrip(" ").startswith("\n\nHuman:") and "prompt" not in obj


def parse_transcript(text: str, path: str) -> list[dict[str, str]]:
    """`\\n\\nHuman: a\\n\\nAssistant: b` -> [{"role": "user", ...}, {"role": "assistant", ...}]."""
    parts = _TURN.split(text)
    if parts[0].strip():
        raise FormatError(path, f"text before the first Human turn: {parts[0][:60]!r}")
    return [
        {"role": _ROLES[speaker], "content": body}
        for speaker, body in zip(parts[1::2], parts[2::2], strict=True)
    ]


def convert(obj: dict[str, Any], where: Where) -> list[dict[str, Any]]:
    chosen = parse_transcript(obj["chosen"], "chosen")
    rejected = parse_transcript(obj.get("rejected") or "", "rejected")
    if not chosen or chosen[-1]["role"] != "assistant":
        raise FormatError("chosen", "transcript does not end with an Assistant turn")
    if not rejected or rejected[-1]["role"] != "assistant":
        raise FormatError("rejected", "transcript does not end with an Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise FormatError("rejected", "chosen and rejected differ before their final Assistant turn")
    prompt = chosen[:-1]
    return [
        {
            "kind": "preference",
            "id": where.record_id(),
            "contributor_id": where.contributor_id,
            "task_id": task_id_for(prompt),
            "prompt": prompt,
            "chosen": chosen[-1:],
            "rejected": rejected[-1:],
            "source": where.source(NAME),
        }
    ]

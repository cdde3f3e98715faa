"""Helpers shared by the importers: positions, ids, message text and tool schemas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replica import safe_json
from replica.artifacts import sha256_text
from replica.data.records import normalize_text

UNASSIGNED = "unassigned"  # contributor of foreign rows whose input config names none


class FormatError(ValueError):
    """A row that does not fit its format: `path` is the JSON path inside the row."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Where:
    """Where a row came from, for ids and provenance."""

    file: str
    line: int
    contributor: str | None = None

    @property
    def stem(self) -> str:
        return Path(self.file.split("[")[0]).stem

    def record_id(self, suffix: str = "") -> str:
        """A stable id for a row without one: `<file stem>-<line>[-suffix]`."""
        return f"{self.stem}-{self.line}" + (f"-{suffix}" if suffix else "")

    def source(self, fmt: str, **extra: Any) -> dict[str, Any]:
        return {"format": fmt, "file": self.file, "line": self.line, **extra}

    @property
    def contributor_id(self) -> str:
        return self.contributor or UNASSIGNED


def task_id_for(messages: list[dict[str, Any]]) -> str:
    """A task id for data without tasks: a hash of the normalized first user message.

    Rows asking the same thing share a task, so a split by task keeps them on one side.
    """
    first_user = next((m.get("content") for m in messages if m.get("role") == "user"), None)
    return "t-" + sha256_text(normalize_text(content_text(first_user) or ""))[:12]


def content_text(content: Any) -> Any:
    """OpenAI content may be a list of parts: keep the text parts, joined; anything else as is."""
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        texts = [part.get("text") for part in content if part.get("type") == "text"]
        if len(texts) == len(content):
            return "".join(t or "" for t in texts)
    return content


def wrap_tools(tools: Any, path: str = "tools") -> list[dict[str, Any]] | None:
    """Tools as OpenAI function schemas: decodes a JSON string, wraps bare `{name, parameters}`."""
    if isinstance(tools, str):
        try:
            tools = safe_json.loads(tools) if tools.strip() else None
        except ValueError as err:  # invalid JSON, or nested past safe_json.MAX_DEPTH
            raise FormatError(path, f"tools string is not valid JSON ({getattr(err, 'msg', err)})") from None
    if not tools:
        return None
    if not isinstance(tools, list):
        raise FormatError(path, f"expected a list of tool schemas, found {type(tools).__name__}")
    return [
        tool if isinstance(tool, dict) and "function" in tool else {"type": "function", "function": tool}
        for tool in tools
    ]

"""JSON text decoded under a nesting limit: a hostile or broken document is an error, never a crash.

Python's `json` decoder recurses once per nested array or object, so a line of `[[[[...` a few
thousand deep raises `RecursionError`: a traceback in `replica data prepare`, a 500 in
`replica serve`. Real records and requests nest a handful of levels (a tool's parameter schema
perhaps ten), so text nested deeper than `MAX_DEPTH` is refused before it is decoded, and what
is decoded is shallow enough for every later step (pydantic, jsonschema, chat templates).
Both the data layer and the server read JSON through `loads` here.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 64

# A JSON string literal (escapes included), written as an unrolled loop so it runs in linear time.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TooDeep(ValueError):
    """JSON text nested deeper than the limit."""

    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(f"JSON nested {depth} levels deep; at most {limit} levels are accepted")
        self.depth, self.limit = depth, limit


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in `text` (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= 1:
        return text.count("[") + text.count("{")
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(_STEP[b] for b in brackets), default=0)


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, but text nested deeper than `max_depth` raises `TooDeep` (a ValueError).

    Bytes must be UTF-8 (`UnicodeDecodeError` otherwise); invalid JSON raises
    `json.JSONDecodeError` as usual.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")
    depth = nesting_depth(text)
    if depth > max_depth:
        raise TooDeep(depth, max_depth)
    return json.loads(text)

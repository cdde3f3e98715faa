"""Importers: one file per foreign format, each mapping its rows onto native record dicts.

An importer is a module with `NAME`, `detect(obj) -> bool` (does this decoded row look like my
format?) and `convert(obj, where) -> list[dict]` (native records, each with `kind`). Converted
dicts are validated by `records.parse_record` like native input, so every format gets the same
checks. A row the importer cannot map raises `FormatError` with the JSON path and a reason.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from replica.data.formats import (
    hh,
    llamafactory_pref,
    openai,
    replica_jsonl,
    sharegpt,
    trl_pref,
    ultrafeedback,
)
from replica.data.formats.common import FormatError, Where

__all__ = ["FORMATS", "FormatError", "Where", "detect_format", "get_format"]

# Detection order matters where layouts overlap: the native `kind` tag first, then the most
# specific layouts (HH's transcripts are a special case of TRL's implicit-prompt rows).
FORMATS: dict[str, ModuleType] = {
    module.NAME: module
    for module in (replica_jsonl, openai, llamafactory_pref, sharegpt, ultrafeedback, hh, trl_pref)
}


def get_format(name: str) -> ModuleType:
    """The importer registered under `name` (a config's `format:`)."""
    if name not in FORMATS:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def detect_format(obj: dict[str, Any]) -> ModuleType | None:
    """The first importer that recognises this decoded row, or None."""
    for module in FORMATS.values():
        if module.detect(obj):
            return module
    return None


def describe(obj: dict[str, Any]) -> str:
    """What a row looked like, for the error when no importer recognises it."""
    keys = ", ".join(sorted(obj)[:12])
    return f"an object with keys [{keys}]"

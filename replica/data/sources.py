"""Reading raw items out of input files, one at a time, with the position each came from.

JSONL is streamed line by line in binary (flat memory on any size; invalid UTF-8 and invalid
JSON become per-line errors, not crashes). JSON arrays, parquet, arrow files and `save_to_disk`
directories are read as a whole: they are not line formats and cannot be streamed by line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replica import safe_json


@dataclass
class RawItem:
    """One item of an input file: its decoded object, or the reason it could not be decoded."""

    file: str
    line: int  # 1-based line in the file (JSON, JSONL) or 1-based row (tables)
    raw: str  # the item verbatim, for rejected.jsonl
    obj: dict[str, Any] | None = None
    error: str | None = None


HF_SUFFIXES = (".parquet", ".arrow")


def is_table(path: Path) -> bool:
    """True for inputs read through `datasets` (parquet, arrow, a save_to_disk directory)."""
    return path.is_dir() or path.suffix in HF_SUFFIXES


def iter_items(path: str | Path) -> Iterator[RawItem]:
    """Every item of one input file, in order."""
    path = Path(path)
    if is_table(path):
        yield from _iter_table(path)
        return
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith(b"["):
        yield from _iter_json_array(path)
    elif head.split(b"\n", 1)[0].strip() == b"{":
        yield from _iter_json_object(path)  # one pretty-printed object, not JSON Lines
    else:
        yield from _iter_jsonl(path)


def _iter_jsonl(path: Path) -> Iterator[RawItem]:
    name = str(path)
    with open(path, "rb") as handle:
        for number, data in enumerate(handle, start=1):
            if not data.strip():
                continue  # blank lines hold no record
            complete = data.endswith(b"\n")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                raw = data.decode("utf-8", errors="replace").rstrip("\r\n")
                reason = f"invalid UTF-8: byte 0x{data[err.start]:02x} at column {err.start + 1}"
                yield RawItem(name, number, raw, error=reason)
                continue
            raw = text.rstrip("\r\n")
            yield _decode(name, number, raw, last_without_newline=not complete)


def _decode(name: str, number: int, raw: str, last_without_newline: bool = False) -> RawItem:
    try:
        obj = safe_json.loads(raw)
    except safe_json.TooDeep as err:
        return RawItem(name, number, raw, error=f"invalid JSON: {err}")
    except json.JSONDecodeError as err:
        if last_without_newline:
            reason = (
                f"truncated last line: no newline at end of file and not valid JSON ({err.msg} at column "
                f"{err.colno}); the file was probably cut off while being written"
            )
        else:
            reason = f"invalid JSON: {err.msg} at column {err.colno}"
        return RawItem(name, number, raw, error=reason)
    if not isinstance(obj, dict):
        return RawItem(
            name, number, raw, error=f"expected a JSON object per line, found {type(obj).__name__}"
        )
    return RawItem(name, number, raw, obj=obj)


def _iter_json_array(path: Path) -> Iterator[RawItem]:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        yield RawItem(
            name, 1, "", error=f"invalid UTF-8 at byte {err.start}: a JSON array file must be UTF-8"
        )
        return
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line = 1 + text.count("\n", 0, pos)
    while True:
        pos, line = _skip_space(text, pos, line)
        if pos >= len(text):
            yield RawItem(name, line, "", error="the JSON array is not closed: no ] at the end of the file")
            return
        if text[pos] == "]":
            if rest := text[pos + 1 :].strip():  # e.g. JSON Lines whose first line is an array
                reason = "text after the closing ] of the JSON array (a .json file holds one array; JSON Lines need an object per line)"
                yield RawItem(name, line, rest[:200], error=reason)
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            yield RawItem(name, err.lineno, text[pos : pos + 200], error=f"invalid JSON: {err.msg}")
            return  # the rest of the array cannot be located once one item is broken
        except RecursionError:  # nested far past MAX_DEPTH: the decoder gave up before the item's end
            depth = safe_json.nesting_depth(text[pos:])
            yield RawItem(
                name,
                line,
                text[pos : pos + 200],
                error=f"invalid JSON: {safe_json.TooDeep(depth, safe_json.MAX_DEPTH)}",
            )
            return
        raw = text[pos:end]
        if (depth := safe_json.nesting_depth(raw)) > safe_json.MAX_DEPTH:
            yield RawItem(
                name, line, raw, error=f"invalid JSON: {safe_json.TooDeep(depth, safe_json.MAX_DEPTH)}"
            )
        elif isinstance(obj, dict):
            yield RawItem(name, line, raw, obj=obj)
        else:
            yield RawItem(name, line, raw, error=f"expected a JSON object, found {type(obj).__name__}")
        line += raw.count("\n")
        pos, line = _skip_space(text, end, line)
        if pos < len(text) and text[pos] == ",":
            pos += 1


def _iter_json_object(path: Path) -> Iterator[RawItem]:
    text = path.read_text(encoding="utf-8", errors="replace")
    yield _decode(str(path), 1, text.strip())


def _skip_space(text: str, pos: int, line: int) -> tuple[int, int]:
    while pos < len(text) and text[pos] in " \t\r\n":
        line += text[pos] == "\n"
        pos += 1
    return pos, line


def _iter_table(path: Path) -> Iterator[RawItem]:
    """Rows of a parquet/arrow file or of every split of a `save_to_disk` directory."""
    import datasets

    name = str(path)
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    else:
        kind = "parquet" if path.suffix == ".parquet" else "arrow"
        parts = [("", datasets.load_dataset(kind, data_files=str(path), split="train"))]
    for split, table in parts:
        label = f"{name}[{split}]" if split else name
        for row_number, row in enumerate(table, start=1):
            row = dict(row)
            yield RawItem(label, row_number, json.dumps(row, ensure_ascii=False, default=str), obj=row)

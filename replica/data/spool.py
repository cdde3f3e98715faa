"""Spools: accepted rows wait on disk between reading the inputs and writing the splits.

`prepare` cannot write a split before it has read every input (which tasks a contributor holds
out depends on all of their tasks), and must not hold the rows in memory meanwhile: they go to
append-only JSONL files, one per contributor and kind, and are read back by byte offset. What
stays in memory is a row's offset and sort key while its contributor's splits are written.

A line is `<head JSON>\\t<row JSON>`: the head (id, task key...) is read without decoding the
row. JSON is written ASCII-only, so a line never holds a raw tab before the separator or a raw
newline, and any string (a lone surrogate included) survives the round trip.
"""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class Spools:
    """Append-only spool files under `root`, named by the caller (`alice.sft`, `alice.pref`...)."""

    def __init__(self, root: Path, max_open: int = 32) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_open = max_open  # appending handles kept open (one per name), least recent closed first
        self._writers: OrderedDict[str, IO[bytes]] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._reader: tuple[str, IO[bytes]] | None = None
        self._unflushed = False

    def append(self, name: str, head: list[Any], row: Any) -> int:
        """Append one row; returns its offset (for `read`)."""
        line = f"{json.dumps(head)}\t{json.dumps(row)}\n".encode("ascii")
        offset = self._sizes.get(name, 0)
        self._writer(name).write(line)
        self._sizes[name] = offset + len(line)
        self._unflushed = True
        return offset

    def scan(self, name: str) -> Iterator[tuple[list[Any], int]]:
        """(head, offset) of every row of `name`, in the order they were appended."""
        self.flush()
        if name not in self._sizes:
            return
        offset = 0
        with open(self._path(name), "rb") as handle:
            for line in handle:
                yield json.loads(line[: line.index(b"\t")]), offset
                offset += len(line)

    def read(self, name: str, offset: int) -> Any:
        """The row appended to `name` at `offset`."""
        self.flush()
        if self._reader is None or self._reader[0] != name:
            self._close_reader()
            self._reader = (name, open(self._path(name), "rb"))  # noqa: SIM115 (kept open across reads; closed in close())
        handle = self._reader[1]
        handle.seek(offset)
        line = handle.readline()
        return json.loads(line[line.index(b"\t") + 1 :])

    def flush(self) -> None:
        if self._unflushed:
            for handle in self._writers.values():
                handle.flush()
            self._unflushed = False

    def close(self) -> None:
        """Close every file and delete the spool directory."""
        for handle in self._writers.values():
            handle.close()
        self._writers.clear()
        self._close_reader()
        shutil.rmtree(self.root, ignore_errors=True)

    def _writer(self, name: str) -> IO[bytes]:
        handle = self._writers.get(name)
        if handle is not None:
            self._writers.move_to_end(name)
            return handle
        if len(self._writers) >= self.max_open:
            self._writers.popitem(last=False)[1].close()
        handle = open(self._path(name), "ab", buffering=1 << 16)  # noqa: SIM115 (kept open; closed in close())
        self._writers[name] = handle
        return handle

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader[1].close()
            self._reader = None

    def _path(self, name: str) -> Path:
        return self.root / f"{name}.jsonl"

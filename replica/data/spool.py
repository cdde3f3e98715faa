"""Spools: accepted rows wait on disk between reading the inputs and writing the splits.

`prepare` cannot write a split before it has read every input (which tasks a contributor holds
out depends on all of their tasks), and must not hold the rows in memory meanwhile: they go to
append-only files, one per contributor and kind, and are read back by byte offset. What stays
in memory is a row's offset and sort key while its contributor's splits are written.

An entry is two lengths, a small head (id, task key...) and the row, each pickled: the head is
read without decoding the row. Pickle, not JSON: it is 2-3x faster both ways, and these files
are written and read back by the same `prepare` call, inside its own temporary directory.
"""

from __future__ import annotations

import pickle
import shutil
import struct
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_LENGTHS = struct.Struct("<II")  # bytes of the head, bytes of the row


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

    def append(self, name: str, head: tuple, row: Any) -> int:
        """Append one row; returns its offset (for `read`)."""
        head_bytes = pickle.dumps(head, protocol=pickle.HIGHEST_PROTOCOL)
        row_bytes = pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
        offset = self._sizes.get(name, 0)
        writer = self._writer(name)
        writer.write(_LENGTHS.pack(len(head_bytes), len(row_bytes)))
        writer.write(head_bytes)
        writer.write(row_bytes)
        self._sizes[name] = offset + _LENGTHS.size + len(head_bytes) + len(row_bytes)
        self._unflushed = True
        return offset

    def scan(self, name: str) -> Iterator[tuple[tuple, int]]:
        """(head, offset) of every row of `name`, in the order they were appended."""
        self.flush()
        if name not in self._sizes:
            return
        offset = 0
        with open(self._path(name), "rb") as handle:
            while lengths := handle.read(_LENGTHS.size):
                head_size, row_size = _LENGTHS.unpack(lengths)
                yield pickle.loads(handle.read(head_size)), offset
                handle.seek(row_size, 1)
                offset += _LENGTHS.size + head_size + row_size

    def read(self, name: str, offset: int) -> Any:
        """The row appended to `name` at `offset`."""
        self.flush()
        if self._reader is None or self._reader[0] != name:
            self._close_reader()
            self._reader = (name, open(self._path(name), "rb"))  # noqa: SIM115 (kept open across reads; closed in close())
        handle = self._reader[1]
        handle.seek(offset)
        head_size, row_size = _LENGTHS.unpack(handle.read(_LENGTHS.size))
        handle.seek(head_size, 1)
        return pickle.loads(handle.read(row_size))

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
        return self.root / f"{name}.spool"

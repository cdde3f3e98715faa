"""Appending records to a contributor's JSONL file: whole lines only, on disk before we answer.

Two browser tabs (or two studio processes) may save at the same moment. Each save takes an
exclusive `flock` on the file, writes all its lines with one `write` call, and `fsync`s before
releasing the lock, so lines never interleave and a crash never leaves half a line that looks
complete. A file whose last line lacks its newline (an editor, an old crash) gets one first,
so the new record never glues onto it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def append_lines(path: str | Path, lines: list[str]) -> None:
    """Append `lines` (each one JSON record, no newline) to `path`, atomically with respect to other appenders."""
    if any("\n" in line or "\r" in line for line in lines):
        raise ValueError("a JSONL record must be one line")  # json.dumps never writes raw newlines
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(line + "\n" for line in lines).encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            payload = b"\n" + payload
        written = 0
        while written < len(payload):  # os.write may write less than asked (signals, full pipes)
            written += os.write(fd, payload[written:])
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock

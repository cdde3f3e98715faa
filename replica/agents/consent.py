"""Serve-time consent: may this contributor's replica answer a request right now?

Consent lives in the prepared data's `contributors.jsonl` (Contributor records). The file is
re-read whenever it changes on disk, so a contributor who revokes consent (or whose `serve`
scope becomes `not_allowed`) is refused from the next request on, without a restart.
Anything unreadable fails closed: no record, no service.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from pydantic import ValidationError

from replica.data.records import Contributor

log = logging.getLogger(__name__)


class ConsentBook:
    """Contributor consent records from a JSONL file, reloaded when the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._records: dict[str, Contributor] = {}
        self._error: str | None = None

    def refusal(self, contributor: str) -> str | None:
        """None when `contributor` currently allows serving; otherwise the reason they do not."""
        self._refresh()
        if self._error:
            return self._error
        record = self._records.get(contributor)
        if record is None:
            return f"no consent record for contributor {contributor!r} in {self.path}"
        consent = record.consent
        if consent.revoked_at is not None:
            return f"contributor {contributor!r} revoked consent at {consent.revoked_at.isoformat()}"
        if consent.serve != "allowed":
            return f"contributor {contributor!r} has not granted serve consent (serve: {consent.serve})"
        return None

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._records = None, {}
            self._error = f"consent records {self.path} not found; no replica may be served"
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)  # an atomic rename changes the inode
        with self._lock:
            if stamp == self._stamp:
                return
            self._records, self._error = self._read()
            self._stamp = stamp

    def _read(self) -> tuple[dict[str, Contributor], str | None]:
        records: dict[str, Contributor] = {}
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = Contributor.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as err:
                reason = f"{self.path}:{number}: unreadable consent record ({str(err).splitlines()[0]})"
                log.error("%s; refusing every replica until it is fixed", reason)
                return {}, reason
            records[record.id] = record
        return records, None

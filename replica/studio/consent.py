"""Consent in the studio: read a contributor's scopes, change them, revoke them.

A change rewrites every contributors file that must agree (the one `prepare` reads and the one
`replica serve` reads; see `StudioSite.consent_files`) with an atomic rename, each under an
exclusive lock so two changes never lose one another. Other contributors' lines are kept byte
for byte. The server re-reads its file on the next request, so a revoked replica is refused at once.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from replica.artifacts import atomic_write_text
from replica.data.records import Contributor, Scope, to_line
from replica.errors import UserError
from replica.studio.site import StudioSite

SCOPES = ("train", "serve", "share")


def read_contributors(path: str | Path) -> dict[str, Contributor]:
    """Every contributor record of a contributors file, by id (an unreadable line is an error)."""
    found: dict[str, Contributor] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = Contributor.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as err:
            raise UserError(
                f"{path}:{number}: not a contributor record ({str(err).splitlines()[0]})"
            ) from None
        found.setdefault(record.id, record)
    return found


def current(site: StudioSite, contributor: str) -> Contributor | None:
    """The contributor's record in the first consent file that has one (prepare's source first)."""
    for path in site.consent_files():
        record = read_contributors(path).get(contributor)
        if record is not None:
            return record
    return None


def change(
    site: StudioSite,
    contributor: str,
    scopes: dict[str, Scope] | None = None,
    action: Literal["grant", "revoke"] = "grant",
) -> Contributor:
    """Grant `scopes` anew (clears a revocation) or revoke all consent; returns the new record."""
    record = current(site, contributor)
    if record is None:
        raise UserError(f"no contributor record for {contributor!r} in {site.consent_files()}")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    if action == "revoke":
        consent = record.consent.model_copy(update={"revoked_at": now})
    else:
        consent = record.consent.model_copy(update={**(scopes or {}), "granted_at": now, "revoked_at": None})
    updated = Contributor.model_validate(record.model_copy(update={"consent": consent}).model_dump())
    for path in site.consent_files():
        _replace_line(path, updated)
    return updated


def _replace_line(path: Path, record: Contributor) -> None:
    """Swap `record`'s line in a contributors file (atomic rename under a lock); others stay verbatim."""
    lock = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lines = path.read_text(encoding="utf-8").splitlines()
        out, replaced = [], False
        for line in lines:
            try:
                same = json.loads(line).get("id") == record.id if line.strip() else False
            except (json.JSONDecodeError, AttributeError):
                same = False
            if same and not replaced:
                out.append(to_line(record))
                replaced = True
            elif not same:
                out.append(line)
        if replaced:  # a file without this contributor (say, not yet prepared) is left alone
            atomic_write_text(path, "".join(line + "\n" for line in out))
    finally:
        os.close(lock)

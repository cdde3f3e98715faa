"""API keys for the server: created once, shown once, stored only as a hash in SQLite.

Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them (there is nothing to
brute-force, unlike a password); a lookup by hash never compares secrets character by character.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from replica.artifacts import utc_now
from replica.errors import UserError

KEY_PREFIX = "rk-"
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)
"""


@dataclass(frozen=True)
class KeyInfo:
    name: str
    created_at: str
    revoked_at: str | None


def _connect(db_path: str | Path) -> sqlite3.Connection:
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(_SCHEMA)
    return connection


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(db_path: str | Path, name: str) -> str:
    """Create a key for consumer `name` and return it: the only time the plain key exists."""
    if not re.match(NAME_PATTERN, name):
        raise UserError(f"--name {name!r}: expected 1-64 letters, digits, '.', '_' or '-'")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with closing(_connect(db_path)) as connection, connection:
        try:
            connection.execute(
                "INSERT INTO api_keys (name, key_sha256, created_at) VALUES (?, ?, ?)",
                (name, _digest(key), utc_now()),
            )
        except sqlite3.IntegrityError:
            raise UserError(f"{db_path}: a key named {name!r} already exists (revoke it first)") from None
    return key


def revoke_key(db_path: str | Path, name: str) -> None:
    """Revoke a consumer's key; the server refuses it from the next request on."""
    with closing(_connect(db_path)) as connection, connection:
        cursor = connection.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (utc_now(), name)
        )
        if cursor.rowcount == 0:
            raise UserError(f"{db_path}: no active key named {name!r}")
        # A revoked name may be reused: keep the row for the record under a dated name (the rowid
        # keeps it unique when the same name is revoked twice within one second).
        connection.execute(
            "UPDATE api_keys SET name = name || '#revoked-' || revoked_at || '-' || rowid WHERE name = ?",
            (name,),
        )


def list_keys(db_path: str | Path) -> list[KeyInfo]:
    """Every key ever created (names and dates only; the keys themselves were never stored)."""
    with closing(_connect(db_path)) as connection:
        rows = connection.execute("SELECT name, created_at, revoked_at FROM api_keys ORDER BY created_at")
        return [KeyInfo(*row) for row in rows]


class KeyStore:
    """The server's view of the keys: `consumer(key)` gives the key's name, or None if unknown.

    It reads the database on every check, so keys created or revoked while the server runs take
    effect at once.
    """

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        with closing(_connect(self.db_path)):
            pass  # create the file and table up front, so a bad path fails at start-up

    def consumer(self, key: str) -> str | None:
        with closing(sqlite3.connect(self.db_path, timeout=30)) as connection:
            row = connection.execute(
                "SELECT name FROM api_keys WHERE key_sha256 = ? AND revoked_at IS NULL", (_digest(key),)
            ).fetchone()
        return row[0] if row else None


def keys_db_path(
    run_dir: str | Path | None, db: str | Path | None, config_path: str | Path | None = None
) -> Path:
    """The key database: `--db`, else the serve config's `keys_db` under the run directory."""
    if db is not None:
        return Path(db)
    if run_dir is None:
        raise UserError("pass --run DIR (the run the server serves) or --db PATH (a key database)")
    from replica.agents.serve_config import load_serve_config

    config = load_serve_config(config_path)
    return config.path(run_dir, config.keys_db)


def manage_keys(
    action: str,
    name: str | None = None,
    run_dir: str | Path | None = None,
    db: str | Path | None = None,
    config_path: str | Path | None = None,
) -> str:
    """`replica keys create|revoke|list`: the text to print (a new key is shown only here, once)."""
    path = keys_db_path(run_dir, db, config_path)
    if action == "list":
        rows = [
            f"{k.name}\tcreated {k.created_at}\t{'revoked ' + k.revoked_at if k.revoked_at else 'active'}"
            for k in list_keys(path)
        ]
        return "\n".join(rows) if rows else f"no keys in {path}"
    if not name:
        raise UserError(f"replica keys {action}: --name is required")
    if action == "create":
        key = create_key(path, name)
        return f"{key}\n(key for {name!r}, stored hashed in {path}; it is not shown again)"
    if action == "revoke":
        revoke_key(path, name)
        return f"revoked the key of {name!r} in {path}"
    raise UserError(f"replica keys: unknown action {action!r} (create, revoke, list)")

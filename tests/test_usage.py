"""The usage ledger (idempotent, durable, WAL), the usage report's arithmetic, and API keys."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from replica.agents.keys import KeyStore, create_key, list_keys, revoke_key
from replica.agents.usage import UsageLedger, UsageRow, render_report, usage_report
from replica.cli import app
from replica.errors import UserError


def row(rid, consumer, contributor, prompt, completion, status="ok", ts=""):
    return UsageRow(
        rid, consumer, contributor, contributor, "hash-" + contributor, prompt, completion, 12.5, status, ts
    )


@pytest.fixture
def ledger_db(tmp_path):
    ledger = UsageLedger(tmp_path / "usage.sqlite")
    rows = [
        row("r1", "acme", "alice", 100, 50, ts="2026-11-01T10:00:00.000000+00:00"),
        row("r2", "acme", "alice", 300, 50, ts="2026-11-20T10:00:00.000000+00:00"),
        row("r3", "globex", "alice", 1000, 0, ts="2026-11-21T10:00:00.000000+00:00"),
        row("r4", "globex", "bob", 200, 300, ts="2026-11-22T10:00:00.000000+00:00"),
        row("r5", "globex", "bob", 999, 999, status="error", ts="2026-11-22T11:00:00.000000+00:00"),
    ]
    assert all(ledger.record(r) for r in rows)
    ledger.close()
    return tmp_path / "usage.sqlite"


def test_a_request_id_is_counted_once_and_rows_survive_reopening(tmp_path):
    ledger = UsageLedger(tmp_path / "usage.sqlite")
    assert ledger.record(row("same", "acme", "alice", 10, 5)) is True
    assert ledger.record(row("same", "acme", "alice", 10, 5)) is False  # a retry
    assert ledger.count() == 1
    del ledger  # no close(): committed rows are on disk without a clean shutdown
    with sqlite3.connect(tmp_path / "usage.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT request_id, prompt_tokens FROM usage").fetchall() == [("same", 10)]


def test_report_arithmetic_per_contributor_and_consumer(ledger_db):
    report = usage_report(ledger_db, Decimal("0.002"), Decimal("70"))
    alice, bob = report["contributors"]
    # alice: 3 requests, 1400 prompt + 100 completion = 1500 tokens; 1.5 x 0.002 = 0.003; 70% = 0.0021
    assert (alice["id"], alice["requests"], alice["tokens"]) == ("alice", 3, 1500)
    assert (alice["amount"], alice["contributor_share"]) == ("0.003000", "0.002100")
    # bob: the error row is not billed: 1 request, 500 tokens -> 0.001, share 0.0007
    assert (bob["requests"], bob["tokens"], bob["amount"], bob["contributor_share"]) == (
        1,
        500,
        "0.001000",
        "0.000700",
    )
    acme, globex = report["consumers"]
    assert (acme["id"], acme["tokens"], acme["amount"]) == ("acme", 500, "0.001000")
    assert (globex["id"], globex["tokens"], globex["amount"]) == ("globex", 1500, "0.003000")
    assert report["total"]["tokens"] == 2000 and report["total"]["contributor_share"] == "0.002800"
    assert report["failed_requests"] == 1


def test_a_contributor_sees_only_their_rows_and_since_filters(ledger_db):
    mine = usage_report(ledger_db, Decimal("1"), Decimal("50"), contributor="bob")
    assert [line["id"] for line in mine["contributors"]] == ["bob"]
    assert [line["id"] for line in mine["consumers"]] == ["globex"]  # only consumers of bob's replica
    assert mine["total"]["tokens"] == 500 and mine["total"]["contributor_share"] == "0.250000"
    recent = usage_report(ledger_db, Decimal("1"), Decimal("50"), since="2026-11-20")
    assert recent["contributors"][0]["requests"] == 2  # r1 (Nov 1) falls before the date
    with pytest.raises(UserError, match="--since"):
        usage_report(ledger_db, Decimal("1"), Decimal("50"), since="last week")


def test_report_formats_and_cli(ledger_db, tmp_path):
    report = usage_report(ledger_db, Decimal("0.002"), Decimal("70"))
    csv_lines = render_report(report, "csv").splitlines()
    assert (
        csv_lines[0].startswith("group,id,requests")
        and "contributor,alice,3,1400,100,1500,0.003000,0.002100" in csv_lines
    )
    assert json.loads(render_report(report, "json"))["total"]["tokens"] == 2000
    table = render_report(report, "table")
    assert "per contributor" in table and "0.002100" in table
    result = CliRunner().invoke(
        app, ["usage", "--db", str(ledger_db), "--format", "json", "--contributor", "alice"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"]["requests"] == 3


def test_keys_are_stored_hashed_and_revocable(tmp_path):
    db = tmp_path / "keys.sqlite"
    key = create_key(db, "acme")
    store = KeyStore(db)
    assert store.consumer(key) == "acme" and store.consumer(key + "x") is None
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("keys.sqlite*"))
    assert key.encode() not in stored and hashlib.sha256(key.encode()).hexdigest().encode() in stored
    with pytest.raises(UserError, match="already exists"):
        create_key(db, "acme")
    revoke_key(db, "acme")
    assert store.consumer(key) is None
    assert create_key(db, "acme") != key  # the name can be issued again after revocation
    assert [k.revoked_at is None for k in list_keys(db)] == [False, True]


def test_keys_cli_prints_the_key_once(tmp_path):
    result = CliRunner().invoke(app, ["keys", "create", "--name", "acme", "--run", str(tmp_path)])
    assert result.exit_code == 0, result.output
    key = result.output.split()[0]
    assert KeyStore(tmp_path / "serve/keys.sqlite").consumer(key) == "acme"
    listed = CliRunner().invoke(app, ["keys", "list", "--run", str(tmp_path)])
    assert "acme" in listed.output and key not in listed.output

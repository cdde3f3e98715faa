"""Studio consent (read by prepare and by the live server), earnings from the ledger, and token commands."""
# ruff: noqa: F811  (pytest fixtures imported from the fixture modules)

from __future__ import annotations

import json
import sqlite3

import pytest
from fastapi.testclient import TestClient
from studio_fixtures import csrf_of, studio_run  # noqa: F401

from replica.agents.keys import create_key
from replica.agents.serve_config import ServeConfig
from replica.agents.server import build_state, create_app
from replica.agents.usage import UsageLedger, UsageRow, usage_report
from replica.cli import main
from replica.studio.app import create_app as create_studio
from replica.studio.review import Runner
from replica.studio.site import load_site

ASK = [{"role": "user", "content": "Where is my order?"}]


@pytest.fixture(scope="module")
def both(studio_run):
    """The studio and `replica serve` over the same run (default serve settings: ledger in <run>/serve/)."""
    site = load_site(studio_run)
    main(["studio", "token", "create", "--contributor", "alice", "--run", str(studio_run)])
    state = build_state(studio_run, ServeConfig(batch_wait_ms=0), device="cpu")
    key = create_key(studio_run / "serve" / "keys.sqlite", "acme")
    with (
        TestClient(create_studio(site, Runner(site, device="cpu"))) as studio,
        TestClient(create_app(state)) as server,
    ):
        server.headers["Authorization"] = f"Bearer {key}"
        yield site, studio, server
    state.close()


def ask(server, model: str):
    return server.post("/v1/chat/completions", json={"model": model, "messages": ASK, "max_tokens": 4})


def sign_in(studio, site, contributor: str = "alice") -> str:
    """Sign in through the page with a fresh token; returns the form token of the session."""
    from replica.agents.keys import revoke_key
    from replica.studio.auth import create_token

    revoke_key(site.tokens_db, contributor)
    token = create_token(site, contributor)
    page = studio.get("/signin")
    studio.post("/signin", data={"csrf_token": csrf_of(page.text), "token": token})
    return csrf_of(studio.get(f"/c/{contributor}/consent").text)


def test_token_commands_show_the_token_once_and_store_only_its_hash(studio_run, capsys):
    capsys.readouterr()
    main(["studio", "token", "create", "--contributor", "bob", "--run", str(studio_run)])
    token = capsys.readouterr().out.splitlines()[0]
    assert token.startswith("rk-")
    stored = (studio_run / "studio" / "tokens.sqlite").read_bytes()
    assert token.encode() not in stored
    main(["studio", "token", "list", "--run", str(studio_run)])
    listed = capsys.readouterr().out
    assert "bob\tcreated" in listed and token not in listed
    with pytest.raises(SystemExit) as exit_info:
        main(["studio", "token", "create", "--contributor", "zed", "--run", str(studio_run)])
    assert exit_info.value.code == 2 and "no contributor record with that id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["studio", "token", "create", "--contributor", "bob", "--run", str(studio_run)])
    assert "already has a token (revoke it first" in capsys.readouterr().err
    main(["studio", "token", "revoke", "--contributor", "bob", "--run", str(studio_run)])
    with sqlite3.connect(studio_run / "studio" / "tokens.sqlite") as db:
        assert (
            db.execute("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND name = 'bob'").fetchone()[
                0
            ]
            == 0
        )


def test_consent_changes_reach_prepare_and_the_live_server_at_once(both):
    site, studio, server = both
    assert ask(server, "alice").status_code == 200
    csrf = sign_in(studio, site)
    bob_line = next(line for line in site.consent_files()[0].read_text().splitlines() if '"bob"' in line)
    scopes = {"csrf_token": csrf, "train": "allowed", "serve": "not_allowed", "share": "not_allowed"}
    assert studio.post("/c/alice/consent", data=scopes, follow_redirects=False).status_code == 303
    refused = ask(server, "alice")
    assert (
        refused.status_code == 403 and "has not granted serve consent" in refused.json()["error"]["message"]
    )
    assert ask(server, "bob").status_code == 200
    for path in site.consent_files():  # prepare's file and the server's, both changed, bob's line verbatim
        lines = path.read_text().splitlines()
        alice = json.loads(next(line for line in lines if '"alice"' in line))
        assert alice["consent"]["serve"] == "not_allowed" and bob_line in lines
    page = studio.get("/c/alice/consent").text
    assert 'id="serve-not_allowed" checked' in page
    assert studio.post("/c/alice/consent", data=scopes | {"serve": "allowed"}).status_code == 200
    assert ask(server, "alice").status_code == 200
    assert studio.post("/c/alice/consent/revoke", data={"csrf_token": csrf}).status_code == 200
    refused = ask(server, "alice")
    assert refused.status_code == 403 and "revoked consent" in refused.json()["error"]["message"]
    assert 'id="revoked"' in studio.get("/c/alice/consent").text


def test_earnings_are_the_ledger_rows_of_the_contributor_per_day_and_consumer(both):
    site, studio, _ = both
    sign_in(studio, site)
    ledger = UsageLedger(site.ledger_db)
    for n, (who, consumer, day) in enumerate(
        [
            ("alice", "globex", "2026-11-01"),
            ("alice", "globex", "2026-11-01"),
            ("bob", "initech", "2026-11-02"),
        ]
    ):
        row = UsageRow(f"r{n}", consumer, who, who, "h", 500, 500, 1.0, "ok", f"{day}T10:00:00+00:00")
        ledger.record(row)
    ledger.close()
    report = usage_report(
        site.ledger_db,
        site.serve.rate_per_1k_tokens,
        site.serve.contributor_share_percent,
        contributor="alice",
        by_day=True,
    )
    assert [d["id"] for d in report["days"]][0] == "2026-11-01" and report["days"][0]["requests"] == 2
    page = studio.get("/c/alice/earnings").text
    assert "2026-11-01" in page and "globex" in page and "acme" in page  # acme: the server's requests
    assert "initech" not in page and "2026-11-02" not in page  # bob's rows are bob's
    assert report["total"]["contributor_share"] in page and report["days"][0]["contributor_share"] in page
    plot = studio.get("/c/alice/earnings.png")
    assert plot.headers["content-type"] == "image/png" and plot.content.startswith(b"\x89PNG")


def test_a_token_can_be_revoked_and_replaced_twice_within_a_second(studio_run):
    from replica.agents.keys import KeyStore, list_keys, revoke_key
    from replica.studio.auth import create_token

    site = load_site(studio_run)
    for _ in range(3):  # revoked names stay unique (the keys' rowid), even within one second
        token = create_token(site, "bob")
        assert KeyStore(site.tokens_db).consumer(token) == "bob"
        revoke_key(site.tokens_db, "bob")
        assert KeyStore(site.tokens_db).consumer(token) is None
    assert sum(k.name.startswith("bob#revoked-") for k in list_keys(site.tokens_db)) >= 3

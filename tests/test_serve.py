"""The OpenAI-compatible server: endpoints, streaming, errors, consent, concurrency, ledger."""
# ruff: noqa: F811  (pytest fixtures imported from test_serve_fixtures)

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from test_serve_fixtures import consent_record, serve_run, write_consent  # noqa: F401

from replica.agents.keys import create_key, revoke_key
from replica.agents.serve_config import ServeConfig
from replica.agents.server import build_state, create_app

ASK = [{"role": "user", "content": "Where is my order O-4821?"}]


@pytest.fixture(scope="module")
def served(serve_run, tmp_path_factory):
    """A live app over the three-replica run, with its own keys, ledger and consent file."""
    home = tmp_path_factory.mktemp("served")
    consent = write_consent(home, [consent_record(c) for c in ("alice", "bob", "carol")])
    config = ServeConfig(
        keys_db=str(home / "keys.sqlite"),
        usage_db=str(home / "usage.sqlite"),
        contributors_file=str(consent),
        max_body_bytes=20_000,
        batch_wait_ms=150,  # wide window, so concurrent requests reliably share a batch
    )
    state = build_state(serve_run, config, device="cpu")
    key = create_key(config.keys_db, "acme")
    with TestClient(create_app(state)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, state, home
    state.close()


def ask(client, model="alice", **extra):
    body = {"model": model, "messages": ASK, "max_tokens": 12, **extra}
    return client.post("/v1/chat/completions", json=body)


def ledger_rows(home) -> list[tuple]:
    with sqlite3.connect(home / "usage.sqlite") as db:
        return db.execute(
            "SELECT request_id, consumer, replica_id, completion_tokens, status FROM usage"
        ).fetchall()


def test_models_lists_every_replica_with_its_base(served, serve_run):
    client, state, _ = served
    body = client.get("/v1/models").json()
    assert [m["id"] for m in body["data"]] == ["alice", "bob", "carol"]
    assert {m["parent"] for m in body["data"]} == {state.replicas["alice"].base_model}
    health = client.get("/health").json()
    assert (health["status"], health["replicas"]) == ("ok", 3) and health["batches"] >= 0


def test_chat_completion_answers_and_is_metered(served):
    client, state, home = served
    before = len(ledger_rows(home))
    response = ask(client, "bob")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "bob"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] == 12 and body["choices"][0]["finish_reason"] == "length"
    rows = ledger_rows(home)
    assert len(rows) == before + 1
    request_id = response.headers["X-Request-Id"]
    assert (request_id, "acme", "bob", 12, "ok") in rows
    with sqlite3.connect(home / "usage.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_streaming_sends_the_same_reply_as_sse(served):
    client, _, home = served
    plain = ask(client, "carol").json()["choices"][0]["message"]["content"]
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "carol",
            "messages": ASK,
            "max_tokens": 12,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 12


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[]", 400, None),
        (json.dumps({"model": "alice"}).encode(), 400, "messages"),
        (
            json.dumps({"model": "alice", "messages": [{"role": "robot", "content": "x"}]}).encode(),
            400,
            "messages.0.role",
        ),
        (json.dumps({"model": "alice", "messages": ASK, "max_tokens": 0}).encode(), 400, "max_tokens"),
        (json.dumps({"model": "alice", "messages": ASK, "max_tokens": 99999}).encode(), 400, "max_tokens"),
        (json.dumps({"model": "zed", "messages": ASK}).encode(), 404, "model"),
        (json.dumps({"model": "alice", "messages": ASK, "n": 2}).encode(), 400, "n"),
        (json.dumps({"model": "alice", "messages": ASK, "stop": ["\n"]}).encode(), 400, "stop"),
        (b'{"model": "alice", "messages": ' + b"[" * 9_000 + b"]" * 9_000 + b"}", 400, None),
        (  # a tool result that answers no earlier tool call: refused as the data layer refuses it
            json.dumps(
                {
                    "model": "alice",
                    "messages": [*ASK, {"role": "tool", "tool_call_id": "c9", "content": "{}"}],
                }
            ).encode(),
            400,
            "messages.1.tool_call_id",
        ),
        (
            json.dumps(
                {"model": "alice", "messages": [*ASK, {"role": "assistant", "content": ""}, *ASK]}
            ).encode(),
            400,
            "messages.1.content",
        ),
        (
            json.dumps({"model": "alice", "messages": [{"role": "user", "content": "x" * 30_000}]}).encode(),
            413,
            None,
        ),
    ],
)
def test_bad_requests_get_the_right_status_and_field(served, body, status, param):
    client, _, _ = served
    response = client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"]


def test_requests_without_a_valid_key_get_401(served):
    client, state, _ = served
    anonymous = {"Authorization": ""}
    assert client.get("/v1/models", headers=anonymous).status_code == 401
    assert (
        client.post("/v1/chat/completions", json={}, headers={"Authorization": "Bearer rk-wrong"}).status_code
        == 401
    )
    key = create_key(state.keys.db_path, "leaver")
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    revoke_key(state.keys.db_path, "leaver")
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_consent_revocation_takes_effect_without_restart(served):
    client, _, home = served
    assert ask(client, "alice").status_code == 200
    write_consent(
        home,
        [
            consent_record("alice", revoked_at="2026-11-26T08:00:00Z"),
            consent_record("bob", serve="not_allowed"),
            consent_record("carol"),
        ],
    )
    try:
        refused = ask(client, "alice")
        assert refused.status_code == 403 and "revoked consent" in refused.json()["error"]["message"]
        assert "has not granted serve consent" in ask(client, "bob").json()["error"]["message"]
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["carol"]
        assert ask(client, "carol").status_code == 200
    finally:
        write_consent(home, [consent_record(c) for c in ("alice", "bob", "carol")])
    assert ask(client, "alice").status_code == 200


def test_concurrent_requests_to_two_replicas_answer_as_alone(served):
    client, state, _ = served
    alone = {m: ask(client, m).json()["choices"][0]["message"]["content"] for m in ("alice", "bob")}
    batches_before = state.batcher.engine.batches
    models = ["alice", "bob"] * 4
    with ThreadPoolExecutor(len(models)) as pool:
        answers = list(pool.map(lambda m: ask(client, m).json()["choices"][0]["message"]["content"], models))
    assert answers == [alone[m] for m in models]
    assert alone["alice"] != alone["bob"]
    assert state.batcher.engine.batches - batches_before < len(models)  # requests were batched together
    assert state.batcher.engine.largest_batch >= 2


def test_a_retried_request_id_is_counted_once(served):
    client, _, home = served
    headers = {"X-Request-Id": "retry-me-1"}
    first = client.post(
        "/v1/chat/completions", json={"model": "alice", "messages": ASK, "max_tokens": 4}, headers=headers
    )
    again = client.post(
        "/v1/chat/completions", json={"model": "alice", "messages": ASK, "max_tokens": 4}, headers=headers
    )
    assert first.status_code == again.status_code == 200
    assert [row[0] for row in ledger_rows(home)].count("retry-me-1") == 1


def test_a_failed_generation_is_a_500_recorded_as_error(served, monkeypatch):
    client, state, home = served

    def broken(requests):
        raise RuntimeError("device lost")

    monkeypatch.setattr(state.batcher.engine, "generate", broken)
    response = client.post(
        "/v1/chat/completions", json={"model": "bob", "messages": ASK}, headers={"X-Request-Id": "boom-1"}
    )
    assert response.status_code == 500 and "device lost" in response.json()["error"]["message"]
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "bob", "messages": ASK, "stream": True},
        headers={"X-Request-Id": "boom-2"},
    ) as streamed:
        events = [line for line in streamed.iter_lines() if line.startswith("data: ")]
    assert "device lost" in events[-1]
    statuses = {row[0]: row[4] for row in ledger_rows(home)}
    assert statuses["boom-1"] == statuses["boom-2"] == "error"


def test_sampling_requests_are_served(served):
    client, _, _ = served
    response = ask(client, "carol", temperature=0.9, top_p=0.9)
    assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] >= 1


def test_a_replica_published_while_serving_is_served_without_base_reload(tiny_base_dir, tmp_path):
    from test_serve_fixtures import make_run, write_adapter

    from replica.agents.batcher import BasePool

    run = make_run(tiny_base_dir, tmp_path / "run", ["erin"])
    config = ServeConfig(keys_db=str(tmp_path / "k.sqlite"), usage_db=str(tmp_path / "u.sqlite"))
    state = build_state(run, config, device="cpu")
    key = create_key(config.keys_db, "acme")
    loads = BasePool.loads
    with TestClient(create_app(state)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        assert ask(client, "frank").status_code == 404
        write_adapter(tiny_base_dir, run / "replicas/frank/sft", "frank", "sft", seed=7)
        write_consent(run, [consent_record("erin"), consent_record("frank")])
        state.scanned_at = 0.0  # skip the rescan throttle
        assert ask(client, "frank").status_code == 200
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["erin", "frank"]
    state.close()
    assert BasePool.loads == loads


def test_a_tool_round_trip_in_openai_form_is_accepted(served):
    client, _, _ = served
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_order",
                "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
            },
        }
    ]
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_order", "arguments": '{"order_id": "O-4821"}'},
    }
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
    ]
    body = {"model": "alice", "messages": messages, "tools": tools, "max_tokens": 4}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    call["function"]["arguments"] = "{broken"
    refused = client.post("/v1/chat/completions", json=body)
    error = refused.json()["error"]
    assert refused.status_code == 400 and "arguments string is not valid JSON" in error["message"]
    assert error["param"] == "messages.1.tool_calls.0.function.arguments"


def test_streamed_text_holds_back_a_tool_call_and_sends_it_structured():
    from replica.agents.wire import ContentHoldback, openai_message

    holdback = ContentHoldback("<tool_call>")
    out = [holdback.push(p) for p in ["Let me check", " <tool", '_call>\n{"name": ', '"get_order"}']]
    assert out == ["Let me check", " ", "", ""]  # "<tool" waited until it was known to start a call
    assert holdback.rest("Let me check ") == ""
    plain = ContentHoldback("<tool_call>")
    assert [plain.push(p) for p in ["a <", "b"]] == ["a ", "<b"] and plain.rest("a <b!") == "!"
    message = {"content": "", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"x": 1}}}]}
    assert openai_message(message) == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}],
    }


def test_twenty_replicas_are_served_from_one_base(tiny_base_dir, tmp_path):
    from test_serve_fixtures import make_run

    from replica.agents.batcher import BasePool

    names = [f"r{i:02d}" for i in range(20)]
    run = make_run(tiny_base_dir, tmp_path / "run", names)
    loads = BasePool.loads
    state = build_state(
        run,
        ServeConfig(keys_db=str(tmp_path / "k.sqlite"), usage_db=str(tmp_path / "u.sqlite")),
        device="cpu",
    )
    key = create_key(tmp_path / "k.sqlite", "acme")
    with TestClient(create_app(state)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == names
        replies = {
            ask(client, name).json()["choices"][0]["message"]["content"] for name in (names[0], names[-1])
        }
    state.close()
    assert BasePool.loads - loads <= 1 and len({r.pool for r in state.replicas.values()}) == 1
    assert len(replies) == 2

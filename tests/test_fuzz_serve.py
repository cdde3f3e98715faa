"""Fuzzing `replica serve` over real HTTP: hostile bodies, headers and raw bytes, abandoned streams,
concurrent retries. After each: no 5xx, the server still answers, and the ledger holds exactly one
row per answered request (none for a refused one).

The server runs in a thread (uvicorn, loopback, a free port) over the three tiny replicas of
test_serve_fixtures, with a small token budget so every accepted request generates quickly.
"""
# ruff: noqa: F811  (pytest fixtures imported from test_serve_fixtures)

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fuzz_support import JSON, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serve_fixtures import consent_record, serve_run, write_consent  # noqa: F401

from replica.agents.keys import create_key
from replica.agents.serve_config import ServeConfig
from replica.agents.server import build_state, create_app

ASK = [{"role": "user", "content": "Where is my order O-4821?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_order", "arguments": '{"order_id": "O-1"}'},
}
VALID = [
    {"model": "alice", "messages": ASK, "max_tokens": 4},
    {"model": "bob", "messages": ASK, "max_tokens": 3, "temperature": 0.7, "top_p": 0.9, "stream": True},
    {
        "model": "carol",
        "tools": TOOLS,
        "max_completion_tokens": 4,
        "messages": [
            {"role": "system", "content": "Be brief."},
            *ASK,
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
        ],
    },
]


@dataclass
class Live:
    url: str
    port: int
    key: str
    usage_db: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60)

    def rows(self, request_id: str | None = None) -> list[tuple]:
        with sqlite3.connect(self.usage_db) as db:
            if request_id is None:
                return db.execute("SELECT request_id, status FROM usage").fetchall()
            return db.execute(
                "SELECT request_id, status FROM usage WHERE request_id = ?", (request_id,)
            ).fetchall()

    def alive(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=30).status_code == 200


@pytest.fixture(scope="module")
def live(serve_run, tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz-serve")
    consent = write_consent(home, [consent_record(c) for c in ("alice", "bob", "carol")])
    config = ServeConfig(
        keys_db=str(home / "keys.sqlite"),
        usage_db=str(home / "usage.sqlite"),
        contributors_file=str(consent),
        max_body_bytes=20_000,
        max_tokens_limit=8,
        default_max_tokens=4,
    )
    state = build_state(serve_run, config, device="cpu")
    key = create_key(config.keys_db, "acme")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="critical")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield Live(f"http://127.0.0.1:{port}", port, key, home / "usage.sqlite")
    server.should_exit = True
    thread.join(timeout=30)
    state.close()


def post_counted(live: Live, client: httpx.Client, content: bytes, headers: dict | None = None) -> int:
    """POST a body; assert no 5xx, and that the ledger gained one row exactly when it was answered
    (none when its request id was already counted: a retry)."""
    headers = {
        "Content-Type": "application/json",
        "X-Request-Id": f"fz-{uuid.uuid4().hex}",
        **{name: value.encode("latin-1") for name, value in (headers or {}).items()},
    }
    request_id = headers["X-Request-Id"]
    request_id = request_id.decode("latin-1") if isinstance(request_id, bytes) else request_id
    seen_before = bool(live.rows(request_id))
    before = len(live.rows())
    response = client.post("/v1/chat/completions", content=content, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        assert live.rows(request_id) == [(request_id, "ok")]
        assert len(live.rows()) - before == (not seen_before)
    else:
        assert response.json()["error"]["message"] and len(live.rows()) == before
    return response.status_code


BODIES = st.one_of(
    mutated(VALID, max_edits=3).map(lambda v: json.dumps(v).encode()),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


def fuzz_bodies(live: Live, cases: int) -> None:
    seen = set()
    with live.client() as client:

        @settings(max_examples=cases, deadline=None, suppress_health_check=list(HealthCheck))
        @given(body=BODIES)
        def check(body):
            seen.add(post_counted(live, client, body))

        check()
    assert {200, 400} <= seen  # the cases reached generation as well as refusal
    assert live.alive()


def test_hostile_bodies_get_4xx_and_are_never_billed(live):
    fuzz_bodies(live, 60)


@pytest.mark.slow
def test_hostile_bodies_get_4xx_and_are_never_billed_long(live):
    fuzz_bodies(live, 2000)


HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=140
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Authorization": st.sampled_from(["Bearer ", "Bearer", "bearer rk-x", "Basic abc"]) | HEADER_TEXT,
        "X-Request-Id": HEADER_TEXT,
        "Content-Type": HEADER_TEXT,
        "Accept": HEADER_TEXT,
        "Content-Encoding": st.sampled_from(["gzip", "br", "identity"]) | HEADER_TEXT,
    },
)


def test_hostile_headers_get_4xx_or_an_answer(live):
    with live.client() as client:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(headers=HEADERS, body=st.sampled_from(VALID))
        def check(headers, body):
            post_counted(live, client, json.dumps(body).encode(), {k: v.strip() for k, v in headers.items()})

        check()
    assert live.alive()


def raw_exchange(live: Live, data: bytes, read_until: bytes | None = None, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; read until `read_until` appears, EOF or the timeout."""
    received = b""
    with socket.create_connection(("127.0.0.1", live.port), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(4096):
                received += chunk
                if read_until and read_until in received:
                    break
        except TimeoutError:
            pass
        except ConnectionResetError:
            # A server that refuses a request before reading all of it (a 70 kB header line gets
            # its 431 at once) closes with bytes unread, and the kernel answers with a reset that
            # may arrive before the reply is read: what arrived is all there is.
            pass
    return received


def request_bytes(live: Live, body: bytes, extra: str = "", request_id: str = "raw") -> bytes:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.key}\r\n"
        f"X-Request-Id: {request_id}\r\nContent-Type: application/json\r\n{extra}"
    )
    return head.encode("latin-1") + body


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"GET /" + b"../" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model"',  # then hangs up
    ],
)
def test_malformed_http_never_gets_a_5xx(live, data):
    reply = raw_exchange(live, data, timeout=2.0)
    assert not reply.startswith(b"HTTP/1.1 5"), reply[:200]
    assert live.alive()


def test_a_chunked_body_over_the_limit_is_413_and_a_short_one_is_answered(live):
    body = json.dumps({"model": "alice", "messages": ASK, "max_tokens": 2}).encode()
    chunked = b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    reply = raw_exchange(live, request_bytes(live, b"", chunked.decode("latin-1"), "chunk-ok"), b"}}")
    assert reply.startswith(b"HTTP/1.1 200") and live.rows("chunk-ok") == [("chunk-ok", "ok")]
    big = b"a" * 30_000
    flood = b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
    reply = raw_exchange(live, request_bytes(live, b"", flood.decode("latin-1"), "chunk-big"), b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413") and live.rows("chunk-big") == []


def test_clients_that_leave_mid_stream_are_recorded_once_and_not_billed(live):
    body = json.dumps({"model": "bob", "messages": ASK, "max_tokens": 8, "stream": True}).encode()
    ids = [f"leave-{n}" for n in range(6)]
    for request_id in ids:
        data = request_bytes(live, body, f"Content-Length: {len(body)}\r\n\r\n", request_id)
        reply = raw_exchange(live, data, read_until=b"data: ")  # the first event, then hang up
        assert reply.startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(not live.rows(r) for r in ids):
        time.sleep(0.1)
    for request_id in ids:
        [(_, status)] = live.rows(request_id)  # exactly one row each
        assert status in ("cancelled", "ok")  # ok: the 8 tokens were done before the hang-up was seen
    assert live.alive()


def test_concurrent_retries_of_one_request_id_are_counted_once(live):
    body = {"model": "alice", "messages": ASK, "max_tokens": 4}
    with live.client() as client, ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda _: (
                    client.post(
                        "/v1/chat/completions", json=body, headers={"X-Request-Id": "same-id"}
                    ).status_code
                ),
                range(8),
            )
        )
    assert statuses == [200] * 8
    assert live.rows("same-id") == [("same-id", "ok")]
    assert live.alive()


@pytest.mark.parametrize(
    "sampling",
    [
        {"temperature": 1e-300},
        {"temperature": 5e-324, "top_p": 5e-324},
        {"temperature": 2.0, "top_p": 1e-12},
        {"temperature": 2.0, "top_p": 1.0, "max_tokens": 8},
    ],
)
def test_extreme_sampling_values_are_answered_or_refused_never_a_5xx(live, sampling):
    body = {"model": "carol", "messages": ASK, "max_tokens": 4, **sampling}
    with live.client() as client:
        status = post_counted(live, client, json.dumps(body).encode())
    assert status in (200, 400)

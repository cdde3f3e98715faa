"""`replica serve` as a real process: answers over HTTP on loopback, and a SIGKILL loses no ledger row."""
# ruff: noqa: F811  (pytest fixtures imported from test_serve_fixtures)

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import yaml
from test_serve_fixtures import serve_run  # noqa: F401

from replica.agents.keys import create_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_killed_server_keeps_every_answered_request_in_the_ledger(serve_run, tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text(
        yaml.safe_dump(
            {"kind": "serve", "keys_db": str(tmp_path / "k.sqlite"), "usage_db": str(tmp_path / "u.sqlite")}
        )
    )
    key = create_key(tmp_path / "k.sqlite", "acme")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "replica", "serve", "--run", str(serve_run), "--port", str(port)]
    server = subprocess.Popen([*command, "--config", str(config), "--device", "cpu"], env=env)
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert server.poll() is None, "server exited during start-up"
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        answered = []
        for index in range(3):
            body = {
                "model": ["alice", "bob", "carol"][index],
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4,
            }
            response = client.post(
                "/v1/chat/completions", json=body, headers={"X-Request-Id": f"kill-{index}"}
            )
            assert response.status_code == 200
            answered.append(response.headers["X-Request-Id"])
    finally:
        server.send_signal(signal.SIGKILL)  # no shutdown handler runs: only committed rows survive
        server.wait(timeout=30)
    with sqlite3.connect(tmp_path / "u.sqlite") as db:
        rows = db.execute("SELECT request_id, status FROM usage ORDER BY request_id").fetchall()
    assert rows == [(rid, "ok") for rid in sorted(answered)]

"""Load test of `replica serve`: many concurrent clients, several replicas, one base.

    python scripts/load_serve.py --run runs/demo              # the demo's replicas (make demo first)
    python scripts/load_serve.py --synthetic                  # 3 random adapters on the tiny test base

Starts the server on loopback in a subprocess (its own key and ledger in a temporary directory,
so the run's real ledger is untouched), sends `--requests` chat completions from `--clients`
concurrent clients spread over `--replicas` replicas (every 4th one streamed), then prints p50/p95
latency, throughput and errors, and checks that the ledger holds exactly one row per answered
request. Exit code 0 only with zero errors and an exact ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "Where is my order O-{n:04d}?",
    "Please refund order O-{n:04d}, it arrived broken.",
    "I moved; update the address of customer C-{n:03d}.",
    "Can you close ticket T-{n:04d}?",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", type=Path, default=ROOT / "runs" / "demo", help="Run directory with replicas/."
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="Serve 3 random adapters on the tiny test base."
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--time-limit", type=float, default=900, help="Give up after this many seconds.")
    return parser.parse_args()


# --------------------------------------------------------------------------- set-up


def synthetic_run(work: Path) -> Path:
    """A run with three random LoRA adapters on the tiny test base (for when no demo run exists)."""
    import yaml

    from replica.bases.tiny import ensure_base

    fixtures = ROOT / "tests" / "fixtures"
    raw = yaml.safe_load((fixtures / "tiny_base.yaml").read_text())
    raw["corpus"] = [str(fixtures / c) for c in raw["corpus"]]
    raw["cache_dir"] = str(ROOT / ".cache" / "bases")
    (work / "base.yaml").write_text(yaml.safe_dump(raw))
    base = ensure_base(work / "base.yaml")
    sys.path.insert(0, str(ROOT / "tests"))
    from test_serve_fixtures import make_run

    return make_run(base, work / "run", ["alice", "bob", "carol"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run: Path, work: Path, device: str) -> tuple[subprocess.Popen, str, str]:
    """Start `replica serve` with a private key and ledger; return (process, base url, key)."""
    import yaml

    from replica.agents.keys import create_key

    settings = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    settings |= {"keys_db": str(work / "keys.sqlite"), "usage_db": str(work / "usage.sqlite")}
    (work / "serve.yaml").write_text(yaml.safe_dump(settings))
    key = create_key(work / "keys.sqlite", "load-test")
    port = free_port()
    command = [sys.executable, "-m", "replica", "serve", "--run", str(run), "--port", str(port)]
    command += ["--config", str(work / "serve.yaml"), "--device", device]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url, key
        except httpx.HTTPError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("server did not become ready within 300 s")


# --------------------------------------------------------------------------- load


def one_request(client: httpx.Client, index: int, model: str, max_tokens: int) -> dict:
    """Send request `index`; return its status, latency and completion tokens."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)].format(n=index)}],
        "max_tokens": max_tokens,
        "stream": index % 4 == 3,
        "stream_options": {"include_usage": True},
    }
    headers = {"X-Request-Id": f"load-{index}"}
    started = time.monotonic()
    try:
        if body["stream"]:
            with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
                lines = [line for line in response.iter_lines() if line.startswith("data: ")]
                ok = response.status_code == 200 and lines and lines[-1] == "data: [DONE]"
                status = response.status_code if ok else f"{response.status_code}-incomplete"
                usage = [json.loads(line[6:])["usage"] for line in lines if '"usage"' in line]
                tokens = usage[-1]["completion_tokens"] if usage else 0
        else:
            response = client.post("/v1/chat/completions", json=body, headers=headers)
            status = response.status_code
            tokens = response.json().get("usage", {}).get("completion_tokens", 0) if status == 200 else 0
    except httpx.HTTPError as err:
        status, tokens = type(err).__name__, 0
    return {
        "status": status,
        "latency": time.monotonic() - started,
        "tokens": tokens,
        "stream": body["stream"],
    }


def run_load(url: str, key: str, models: list[str], args: argparse.Namespace) -> tuple[list[dict], float]:
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300)
        return local.client

    started = time.monotonic()
    with ThreadPoolExecutor(args.clients) as pool:
        futures = [
            pool.submit(one_request, client(), i, models[i % len(models)], args.max_tokens)
            for i in range(args.requests)
        ]
        results = [
            f.result(timeout=max(1.0, args.time_limit - (time.monotonic() - started))) for f in futures
        ]
    return results, time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ledger_rows(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT COUNT(*) FROM usage WHERE request_id LIKE 'load-%' AND status = 'ok'"
        ).fetchone()[0]


# --------------------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="replica-load-"))
    run = synthetic_run(work) if args.synthetic else args.run
    if not (run / "replicas").is_dir():
        raise SystemExit(f"{run}: no replicas/ (run `make demo` first, or pass --synthetic)")
    process, url, key = start_server(run, work, args.device)
    try:
        listed = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]
        models = [m["id"] for m in listed][: args.replicas]
        print(
            f"serving {len(listed)} replicas; loading {models} with {args.requests} requests from {args.clients} clients"
        )
        results, elapsed = run_load(url, key, models, args)
        health = httpx.get(f"{url}/health").json()
    finally:
        process.terminate()
        process.wait(timeout=60)
    answered = [r for r in results if r["status"] == 200]
    errors = [r for r in results if r["status"] != 200]
    latencies = [r["latency"] for r in answered]
    rows = ledger_rows(work / "usage.sqlite")
    summary = {
        "requests": len(results),
        "answered": len(answered),
        "errors": len(errors),
        "error_kinds": sorted({str(r["status"]) for r in errors}),
        "p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "p95_s": round(percentile(latencies, 95), 3) if latencies else None,
        "throughput_rps": round(len(answered) / elapsed, 2),
        "completion_tokens_per_s": round(sum(r["tokens"] for r in answered) / elapsed, 1),
        "elapsed_s": round(elapsed, 1),
        "ledger_rows": rows,
        "ledger_exact": rows == len(answered),
        "generate_batches": health["batches"],
        "largest_batch": health["largest_batch"],
        "max_tokens": args.max_tokens,
        "device": args.device,
    }
    print(json.dumps(summary, indent=2))
    return 0 if not errors and summary["ledger_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())

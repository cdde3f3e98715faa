"""Benchmark the data layer: records/s and peak memory of `prepare` (or `validate`) on N synthetic demos.

    .venv/bin/python scripts/bench_data.py --n 20000              # prepare (tiny tokenizer, max_length check)
    .venv/bin/python scripts/bench_data.py --n 20000 --validate   # streaming validation only
    .venv/bin/python scripts/bench_data.py --n 20000 --profile    # also print where prepare's CPU time goes

Each demonstration is a 7-message support conversation with two tool calls and tool results,
spread over 10 contributors and N/4 tasks. Peak RSS is the largest resident set size while the
timed command runs (the RSS before it, mostly imported libraries, is printed next to it).
Rates are given per wall-clock second and per CPU-second (process time): on a shared machine
the wall-clock rate depends on the other work, the CPU rate much less.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look up an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "refund",
            "description": "Refund an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
                "required": ["order_id", "amount"],
            },
        },
    },
]


# --------------------------------------------------------------------------- synthetic corpus


def demonstration(i: int, contributors: int) -> dict:
    """One synthetic demonstration; every record is distinct (no duplicates to skip)."""
    order, amount, task = f"O-{i}", 10 + i % 490, i % max(1, i // 4 + 1)
    return {
        "kind": "demonstration",
        "id": f"d{i}",
        "contributor_id": f"c{i % contributors}",
        "task_id": f"task-{task}",
        "tools": TOOLS,
        "messages": [
            {"role": "system", "content": "You are a support agent."},
            {"role": "user", "content": f"Please refund order {order}, it arrived broken."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_order", "arguments": {"order_id": order}},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "c1",
                "content": json.dumps({"order_id": order, "total": amount}),
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "refund", "arguments": {"order_id": order, "amount": amount}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c2", "content": '{"ok": true}'},
            {"role": "assistant", "content": f"Done: {order} is refunded, {amount} EUR back in 3-5 days."},
        ],
    }


def write_corpus(root: Path, n: int, contributors: int) -> tuple[Path, Path]:
    consent = {
        "train": "allowed",
        "serve": "allowed",
        "share": "not_allowed",
        "license": "CC-BY-4.0",
        "granted_at": "2026-01-01T00:00:00Z",
    }
    people = root / "contributors.jsonl"
    people.write_text(
        "".join(
            json.dumps({"kind": "contributor", "id": f"c{k}", "name": f"C{k}", "consent": consent}) + "\n"
            for k in range(contributors)
        )
    )
    demos = root / "demos.jsonl"
    with open(demos, "w") as handle:
        for i in range(n):
            handle.write(json.dumps(demonstration(i, contributors)) + "\n")
    return people, demos


# --------------------------------------------------------------------------- runs


def run_prepare(
    root: Path, people: Path, demos: Path, base_build: Path, max_length: int, profile: bool
) -> None:
    import datasets
    import yaml

    from replica.bases.tiny import ensure_base
    from replica.config import load_config
    from replica.data.prepare import prepare
    from replica.model import load_tokenizer

    datasets.disable_progress_bars()  # datasets' own bars would bury the result
    base = ensure_base(base_build)
    tokenizer = load_tokenizer(str(base))
    raw = {
        "run_name": "bench",
        "output_dir": str(root / "runs"),
        "model": {"name_or_path": str(base)},
        "data": {
            "contributors_file": str(people),
            "inputs": [{"path": str(demos)}],
            "max_length": max_length,
        },
    }
    (root / "bench.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(root / "bench.yaml")
    profiler = cProfile.Profile() if profile else None
    rss_before = reset_peak_rss()
    start, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    result = prepare(config, tokenizer)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    report(time.perf_counter() - start, time.process_time() - cpu, result.manifest["summary"], rss_before)


def run_validate(demos: Path, people: Path) -> None:
    from replica.data.validate import validate_paths

    rss_before = reset_peak_rss()
    start, cpu = time.perf_counter(), time.process_time()
    result = validate_paths([people, demos])
    report(time.perf_counter() - start, time.process_time() - cpu, result.counts.summary(), rss_before)


def reset_peak_rss() -> float:
    """Start measuring peak RSS from now (Linux: clear_refs resets VmHWM); returns the RSS now, MiB.

    Without it the peak would be the process's lifetime peak, building the tiny base included.
    """
    with contextlib.suppress(OSError):  # not Linux: ru_maxrss (lifetime peak) is reported instead
        Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS") or 0.0


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def report(seconds: float, cpu_seconds: float, summary: str, rss_before: float) -> None:
    """Wall-clock rate, the rate per CPU-second (steadier when other work shares the cores), peak RSS."""
    read = int(summary.split()[1])
    peak_mib = _status_mib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{summary}\n{read} records in {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU = "
        f"{read / seconds:,.0f} records/s wall, {read / cpu_seconds:,.0f} per CPU-second; "
        f"peak RSS {peak_mib:,.0f} MiB ({rss_before:,.0f} MiB before the run)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="synthetic demonstrations")
    parser.add_argument("--contributors", type=int, default=10)
    parser.add_argument(
        "--max-length", type=int, default=2048, help="data.max_length (1024 forces exact counts here)"
    )
    parser.add_argument(
        "--validate", action="store_true", help="time streaming validation instead of prepare"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile prepare (slower; top 30 by cumulative time)"
    )
    parser.add_argument(
        "--base-build",
        type=Path,
        default=REPO / "tests" / "fixtures" / "tiny_base.yaml",
        help="base-build YAML whose tokenizer templates the records",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        people, demos = write_corpus(root, args.n, args.contributors)
        print(f"corpus: {args.n} demonstrations, {demos.stat().st_size / 2**20:.1f} MiB")
        if args.validate:
            run_validate(demos, people)
        else:
            run_prepare(root, people, demos, args.base_build, args.max_length, args.profile)


if __name__ == "__main__":
    main()

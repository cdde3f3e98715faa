"""The demo base's first gate: can it copy what a task needs copied? (replica/eval/copy_gate.py)

Teacher-forced on fresh neutral conversations (never trained on), per kind of value: each id's
digits by position, street names, order statuses and amounts, wherever the value already appeared
earlier in the conversation; plus the mean cosine similarity of each kind's input embeddings.

    .venv/bin/python scripts/base_copy_gate.py                                  # the committed base
    .venv/bin/python scripts/base_copy_gate.py --base .cache/bases/demo-base-<key> --json

`replica demo` prints the same report for the base it uses (`eval.copy_gate` in configs/demo.yaml).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from replica.eval.copy_gate import format_report, gate_base  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=str(ROOT / "data" / "demo" / "base"), help="a base model folder")
    parser.add_argument(
        "--conversations",
        default=str(ROOT / "data" / "demo" / "copy_gate.jsonl.gz"),
        help="JSONL(.gz) of fresh {messages, tools} conversations (default: the committed 100)",
    )
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args(argv)
    report = gate_base(args.base, args.conversations)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    raise SystemExit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()

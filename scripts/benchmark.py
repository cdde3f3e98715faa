"""The evaluator's entry point: several runs or configs, one leaderboard.

    python scripts/benchmark.py configs/demo.yaml                        # evaluate, then rank
    python scripts/benchmark.py runs/demo runs/demo-r8 --out runs/benchmark  # rank existing reports
    python scripts/benchmark.py configs/demo.yaml --set eval.k=4 --set eval.temperature=0.7

Each argument is a run config (evaluated with `replica eval` unless --reuse finds its report) or a
run directory holding eval/report.json. Writes leaderboard.md, leaderboard.csv and leaderboard.json
under --out and prints the table: one row per run × contributor × stage, best success first.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from replica.artifacts import atomic_write_json, atomic_write_text, read_json
from replica.config import load_config
from replica.eval.report import COLUMNS, leaderboard_rows
from replica.eval.run import run_eval

# --------------------------------------------------------------------------- arguments

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("sources", nargs="+", type=Path, help="run configs (YAML) or run directories")
parser.add_argument("--set", dest="overrides", action="append", default=[], help="override for every config")
parser.add_argument("--stages", default=None, help="comma-separated subset of base,sft,dpo")
parser.add_argument("--reuse", action="store_true", help="use a config's existing eval/report.json")
parser.add_argument("--out", type=Path, default=Path("runs/benchmark"))
args = parser.parse_args()

# --------------------------------------------------------------------------- one report per source

reports = []
for source in args.sources:
    if source.is_dir():
        reports.append(read_json(source / "eval" / "report.json"))
        continue
    config = load_config(source, args.overrides)
    existing = config.run_dir / "eval" / "report.json"
    if args.reuse and existing.exists():
        reports.append(read_json(existing))
    else:
        stages = args.stages.split(",") if args.stages else None
        reports.append(run_eval(config, stages=stages, quiet=True))

# --------------------------------------------------------------------------- one leaderboard

headers = ["run"] + [h for h, _, _ in COLUMNS] + ["attribution"]
rows = []
for report in reports:
    attribution = ((report.get("fidelity") or {}).get("attribution") or {}).get("accuracy")
    for cells in leaderboard_rows(report, COLUMNS):  # every column: runs may differ in k
        rows.append([report["run_name"], *cells, "-" if attribution is None else f"{attribution:.3f}"])
success_column = headers.index("success")
rows.sort(key=lambda r: (-(float(r[success_column]) if r[success_column] != "-" else -1.0), r[0], r[1], r[2]))

args.out.mkdir(parents=True, exist_ok=True)
markdown = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
markdown += ["| " + " | ".join(row) + " |" for row in rows]
atomic_write_text(args.out / "leaderboard.md", "# Leaderboard\n\n" + "\n".join(markdown) + "\n")
with open(args.out / "leaderboard.csv", "w", newline="") as handle:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
atomic_write_json(args.out / "leaderboard.json", {"headers": headers, "rows": rows, "reports": reports})

table = Table(title="replica benchmark")
for header in headers:
    table.add_column(header, justify="left" if header in ("run", "contributor", "stage") else "right")
for row in rows:
    table.add_row(*row)
console = Console()
(console if console.is_terminal else Console(width=180)).print(table)
print(f"wrote {args.out}/leaderboard.md, leaderboard.csv, leaderboard.json")
print(json.dumps({"runs": len(reports), "rows": len(rows)}))

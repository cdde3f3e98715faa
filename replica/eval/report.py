"""Write what an evaluation found: report.json (every number), report.md (leaderboard tables),
results.csv (one row per episode), and the leaderboard printed in the terminal.

Nothing time-dependent goes into these files, so the same command twice writes the same bytes.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from replica.artifacts import atomic_write_json, atomic_write_text

# Leaderboard columns: (header, key in a result entry, format).
COLUMNS = (
    ("contributor", "contributor", "{}"),
    ("stage", "stage", "{}"),
    ("success", "success", "{:.3f}"),
    ("95% CI", "success_ci95", "[{:.2f}, {:.2f}]"),
    ("pass^1", "pass^1", "{:.3f}"),
    ("pass^k", "pass^k", "{:.3f}"),
    ("tool-call acc", "tool_call_accuracy", "{:.3f}"),
    ("step agree", "step_agreement", "{:.3f}"),
    ("NLL", "nll", "{:.3f}"),
    ("PPL", "perplexity", "{:.2f}"),
    ("pref acc", "pref_accuracy", "{:.3f}"),
)


def clean_numbers(value: Any) -> Any:
    """NaN and infinity are not JSON: they become null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_numbers(v) for v in value]
    return value


def write_report(out_dir: Path, report: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Path]:
    """Write report.json, report.md and results.csv into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = clean_numbers(report)
    paths = {
        "json": atomic_write_json(out_dir / "report.json", report),
        "md": atomic_write_text(out_dir / "report.md", render_markdown(report)),
        "csv": atomic_write_text(out_dir / "results.csv", render_csv(rows)),
    }
    return paths


def render_csv(rows: list[dict[str, Any]]) -> str:
    """One row per episode, columns in the order the first row has them."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def columns(report: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """The leaderboard's columns for this report: pass^k only when k > 1 (else it is pass^1 again)."""
    if report["settings"]["k"] > 1:
        return COLUMNS
    return tuple(column for column in COLUMNS if column[1] != "pass^k")


def leaderboard_rows(
    report: dict[str, Any], selected: tuple[tuple[str, str, str], ...] | None = None
) -> list[list[str]]:
    """The leaderboard as text cells, one row per contributor × stage (`selected` columns, or all
    that apply to the report)."""
    selected = selected or columns(report)
    return [[_cell(entry, key, fmt, report) for _, key, fmt in selected] for entry in report["results"]]


def render_markdown(report: dict[str, Any]) -> str:
    """Leaderboard, fidelity matrix and the provenance a reader needs to trust the numbers."""
    k = report["settings"]["k"]
    headers = [h.replace("pass^k", f"pass^{k}") for h, _, _ in columns(report)]
    lines = [f"# Evaluation: {report['run_name']}", "", "## Leaderboard", ""]
    lines += _md_table(headers, leaderboard_rows(report))
    fidelity = report.get("fidelity") or {}
    if fidelity.get("matrix"):
        replicas = fidelity["replicas"]
        lines += ["", "## Fidelity (held-out demonstration NLL: rows = contributors, columns = replicas)", ""]
        body = [[c] + [_fmt(row.get(r), "{:.3f}") for r in replicas] for c, row in fidelity["matrix"].items()]
        lines += _md_table(["contributor"] + replicas, body)
        accuracy = fidelity["attribution"]["accuracy"]
        lines += ["", f"Attribution accuracy: {_fmt(accuracy, '{:.3f}')} (own replica fits best)"]
    cross = report.get("cross_success") or {}
    if cross.get("matrix"):
        replicas = cross["replicas"]
        lines += ["", "## Success on each contributor's tasks (rows = task owners, columns = replicas)", ""]
        body = [
            [owner] + [_fmt(row.get(r), "{:.3f}") for r in replicas] for owner, row in cross["matrix"].items()
        ]
        lines += _md_table(["tasks of"] + replicas, body)
        best = [r for r, ok in cross["own_tasks_best"].items() if ok]
        lines += ["", f"Replicas best on their own contributor's tasks: {len(best)}/{len(replicas)}"]
    lines += ["", "## Provenance", ""]
    overrides = "".join(f" --set {item}" for item in report.get("config_overrides") or [])
    lines += [f"- config: `{report['config_source']}{overrides}` (sha256 `{report['config_hash'][:16]}`)"]
    lines += [f"- base: `{report['base']['path']}`"]
    for label, adapter in report["adapters"].items():
        lines += [f"- {label}: `{adapter['path']}` (sha256 `{adapter['sha256'][:16]}`)"]
    settings = report["settings"]
    lines += [
        f"- decoding: temperature {settings['temperature']}, seed {settings['seed']}, k {k}, "
        f"max_turns {settings['max_turns']}, max_new_tokens {settings['max_new_tokens']}"
    ]
    return "\n".join(lines) + "\n"


def print_leaderboard(report: dict[str, Any], console: Console | None = None) -> None:
    """The leaderboard as a rich table in the terminal."""
    k = report["settings"]["k"]
    table = Table(title=f"replica eval: {report['run_name']}")
    for header, _, _ in columns(report):
        table.add_column(
            header.replace("pass^k", f"pass^{k}"),
            justify="left" if header in ("contributor", "stage") else "right",
        )
    for row in leaderboard_rows(report):
        table.add_row(*row)
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or logged: don't squeeze the table to 80 columns
            console = Console(width=160)
    console.print(table)
    accuracy = (report.get("fidelity") or {}).get("attribution", {}).get("accuracy")
    if accuracy is not None:
        console.print(f"fidelity attribution accuracy: {accuracy:.3f}")


def _cell(entry: dict[str, Any], key: str, fmt: str, report: dict[str, Any]) -> str:
    if key == "pass^k":
        key = f"pass^{report['settings']['k']}"
    return _fmt(entry.get(key), fmt)


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(*value) if isinstance(value, list | tuple) else fmt.format(value)


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]

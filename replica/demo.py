"""`replica demo CONFIG`: the whole product on the embedded default, offline, on CPU.

Reads top to bottom as the demo runs: base model (built or reused) → prepare the contributors'
data → SFT then DPO per contributor → evaluate base, SFT and DPO on each contributor's held-out
tasks → leaderboard and the paths of the report and plots. Each step is the public function of its
stage, exactly what `replica base build`, `replica data prepare`, `replica train` and `replica eval`
run, so the demo is also the project's integration test.

The base is settled before `prepare` (the issue lists prepare first) because prepare measures
every record in the base's tokens (`data.max_length`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from replica.artifacts import atomic_write_json, utc_now
from replica.config import RunConfig, load_config


@dataclass
class DemoResult:
    """What the demo produced: the run directory, the eval report and seconds spent per step."""

    run_dir: Path
    report: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    report_md: Path | None = None
    plots: list[Path] = field(default_factory=list)


def run_demo(
    config_path: str | Path,
    rebuild_base: bool = False,
    overrides: list[str] | None = None,
    console: Console | None = None,
) -> DemoResult:
    """Run the demo end to end; returns the report (also written under `<run_dir>/eval/`)."""
    console = console or Console()
    config = load_config(config_path, overrides)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    with _step(console, "1/4 base model", timings):
        base_dir = _ensure_base(config, rebuild_base)
        console.print(f"base: {base_dir}")
        _print_copy_gate(config, base_dir, console)
    with _step(console, "2/4 prepare", timings):
        _prepare(config, base_dir, console)
    with _step(console, "3/4 train (SFT, then DPO, per contributor)", timings):
        _train(config, console)
    with _step(console, "4/4 evaluate base / sft / dpo on held-out tasks", timings):
        from replica.eval.run import run_eval

        report = run_eval(config)  # with eval.cross: each final replica on the others' tasks too
        _print_cross(console, report.get("cross_success") or {})
    timings["total"] = round(time.perf_counter() - started, 1)

    result = _result(config, report, timings)
    _write_summary(config, result)
    _print_paths(console, result)
    return result


class _step:
    """Context manager: a banner before a step and its duration after (kept in `timings`)."""

    def __init__(self, console: Console, title: str, timings: dict[str, float]) -> None:
        self.console, self.title, self.timings = console, title, timings

    def __enter__(self) -> None:
        self.console.rule(f"[bold]{self.title}")
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        seconds = round(time.perf_counter() - self.started, 1)
        self.timings[self.title.split(" ", 1)[1]] = seconds
        if exc[0] is None:
            self.console.print(f"[dim]{self.title}: {seconds:.1f} s")


def _ensure_base(config: RunConfig, rebuild: bool) -> Path:
    """The tiny base is built (or rebuilt); any other base comes from its provider (`replica.bases`)."""
    if not config.model.build:
        from replica.bases import provide_base

        return Path(provide_base(config.model))
    from replica.bases.tiny import ensure_base

    return ensure_base(config.model.build, rebuild=rebuild)


def _print_copy_gate(config: RunConfig, base_dir: Path, console: Console) -> None:
    """What the base copies before any training (`eval.copy_gate`); measured once per base and
    gate file, then read from `<run_dir>/copy_gate.json`."""
    if not config.eval.copy_gate:
        return
    from replica.eval.copy_gate import format_report, gate_base

    report = gate_base(base_dir, config.eval.copy_gate, config.run_dir / "copy_gate.json")
    console.print(format_report(report), highlight=False)


def _prepare(config: RunConfig, base_dir: Path, console: Console) -> None:
    """Prepare prints accepted / rejected (with reasons) / duplicates / consent-excluded."""
    from replica.data.prepare import prepare
    from replica.model import load_tokenizer

    result = prepare(config, load_tokenizer(str(base_dir), config.model.revision, config.model.chat_template))
    console.print(result.summary(), soft_wrap=True)
    rejected = config.prepared_dir / "rejected.jsonl"
    if rejected.is_file():
        console.print(f"rejected records and their reasons: {rejected}")


def _train(config: RunConfig, console: Console) -> None:
    from replica.train.pipeline import run_training

    # The demo shows what its config trains now: a stage made with other settings is replaced.
    summary = run_training(config, retrain=True)
    for item in summary.outcomes:
        console.print(f"{item.contributor:<12} {item.stage:<4} {item.status:<18} {item.detail}")


def _result(config: RunConfig, report: dict[str, Any], timings: dict[str, float]) -> DemoResult:
    eval_dir = config.run_dir / "eval"
    report_md = eval_dir / "report.md"
    return DemoResult(
        run_dir=config.run_dir,
        report=report,
        timings=timings,
        report_md=report_md if report_md.is_file() else None,
        plots=sorted(eval_dir.glob("*.png")),
    )


def _write_summary(config: RunConfig, result: DemoResult) -> None:
    """`<run_dir>/demo.json`: seconds per step and the cross-contributor success matrix
    ({replica: {task owner: success}}, from the evaluation's `cross_success`)."""
    cross = result.report.get("cross_success") or {}
    atomic_write_json(
        config.run_dir / "demo.json",
        {
            "config": config.source,
            "overrides": config.overrides,  # --set: the figures are of the config as overridden
            "finished_at": utc_now(),
            "seconds": result.timings,
            "cross_success": _by_replica(cross),
            "own_beats_others": cross.get("own_tasks_best", {}),
        },
    )


def _by_replica(cross: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The evaluation's matrix[task owner][replica], turned to rows per replica."""
    matrix = cross.get("matrix") or {}
    return {
        r: {owner: row[r] for owner, row in matrix.items() if r in row} for r in cross.get("replicas", [])
    }


def _print_cross(console: Console, cross: dict[str, Any]) -> None:
    from rich.table import Table

    rows = _by_replica(cross)
    if not rows:
        return
    table = Table(title="success of each replica (rows) on each contributor's held-out tasks (columns)")
    owners = list(cross["matrix"])
    for header in ["replica", *owners]:
        table.add_column(header)
    for replica, row in rows.items():
        table.add_row(replica, *(f"{row.get(o, float('nan')):.2f}" for o in owners))
    console.print(table)


def _print_paths(console: Console, result: DemoResult) -> None:
    console.rule("[bold]done")
    console.print(f"total: {result.timings['total']:.0f} s")
    if result.report_md:
        console.print(f"report: {result.report_md}")
    for plot in result.plots:
        console.print(f"plot:   {plot}")

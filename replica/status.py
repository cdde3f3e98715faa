"""`replica status RUN`: a run at a glance, read from what its stages wrote.

What is prepared (counts and fingerprint), which stage of which contributor is published,
resumable (a whole checkpoint is waiting) or missing, the last evaluation's leaderboard, and where
the reports and plots are. It only reads files: nothing is loaded, nothing is changed, so it is
safe to run while a stage is running. Like demo.py it sits beside the CLI, over every stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from replica.artifacts import REPLICA_STAGES, is_published, read_json, read_manifest, replica_dir
from replica.errors import UserError
from replica.train.checkpoints import last_complete_checkpoint


@dataclass
class StageState:
    """One contributor's stage: published, resumable, missing, or not to be trained (and why)."""

    state: str
    detail: str = ""


def prepared_dir(run_dir: Path) -> Path:
    """The run's prepared data: data.prepared_dir of its saved config, else <run>/prepared."""
    config = run_dir / "config.yaml"
    if config.is_file():
        data = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data") or {}
        if data.get("prepared_dir"):
            return Path(data["prepared_dir"])
    return run_dir / "prepared"


def stage_state(run_dir: Path, contributor: str, stage: str, info: dict[str, Any] | None) -> StageState:
    """Where one contributor's stage stands."""
    path = replica_dir(run_dir, contributor, stage)
    if is_published(path):
        manifest = read_manifest(path)
        metrics = manifest.get("metrics") or {}
        steps = metrics.get("global_step")
        loss = metrics.get("train_loss_last", metrics.get("train_loss_mean"))
        detail = ", ".join(
            part
            for part in (
                f"{int(steps)} steps" if steps is not None else "",
                f"loss {loss:.3f}" if loss is not None else "",
            )
            if part
        )
        return StageState("published", detail)
    checkpoint = last_complete_checkpoint(run_dir / "checkpoints" / contributor / stage)
    if checkpoint:
        return StageState("resumable", Path(checkpoint).name)
    if info is not None and info.get("train_excluded"):
        return StageState("not trained", info["train_excluded"])
    splits = (info or {}).get("splits") or {}
    needed = "sft/train" if stage == "sft" else "pref/train"
    if info is not None and not splits.get(needed):
        return StageState("not trained", f"no {needed} records")
    return StageState("missing")


def run_status(run_dir: str | Path) -> dict[str, Any]:
    """Everything `replica status` shows, as plain data (see module docstring)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory (runs live in <output_dir>/<run_name>)")
    prepared = prepared_dir(run_dir)
    manifest = read_json(prepared / "manifest.json") if (prepared / "manifest.json").is_file() else None
    infos: dict[str, Any] = (manifest or {}).get("contributors", {})
    found = {p.name for p in (run_dir / "replicas").glob("*") if p.is_dir()}
    found |= {p.name for p in (run_dir / "checkpoints").glob("*") if p.is_dir()}
    contributors = sorted(set(infos) | found)
    stages = {c: {s: stage_state(run_dir, c, s, infos.get(c)) for s in REPLICA_STAGES} for c in contributors}
    eval_dir = run_dir / "eval"
    report = read_json(eval_dir / "report.json") if (eval_dir / "report.json").is_file() else None
    return {
        "run_dir": run_dir,
        "prepared_dir": prepared,
        "prepared": manifest,
        "stages": stages,
        "report": report,
        "files": _files(run_dir, eval_dir),
    }


def _files(run_dir: Path, eval_dir: Path) -> list[tuple[str, str]]:
    found = []
    for name in ("report.md", "report.json", "results.csv"):
        if (eval_dir / name).is_file():
            found.append(("eval report" if name == "report.md" else "", str(eval_dir / name)))
    plots = sorted(eval_dir.glob("*.png"))
    if plots:
        found.append(("eval plots", ", ".join(str(p) for p in plots)))
    curves = sorted(run_dir.glob("replicas/*/*/training_curves.png"))
    if curves:
        found.append(
            (
                "training curves",
                f"{run_dir}/replicas/<contributor>/<stage>/training_curves.png ({len(curves)})",
            )
        )
    if (run_dir / "tensorboard").is_dir():
        found.append(("tensorboard", f"tensorboard --logdir {run_dir / 'tensorboard'}"))
    return found


def print_status(run_dir: str | Path, console: Console) -> None:
    """`replica status RUN` on the console."""
    status = run_status(run_dir)
    if not console.is_terminal:  # piped or logged: don't squeeze the tables to 80 columns
        console = Console(file=console.file, width=160)
    console.print(f"run {status['run_dir']}", style="bold")
    manifest = status["prepared"]
    if manifest is None:
        console.print(
            f"prepared: no ({status['prepared_dir']}/manifest.json missing: run `replica data prepare`)"
        )
    else:
        console.print(
            f"prepared: {status['prepared_dir']}  {manifest.get('summary', '')}  "
            f"fingerprint {str(manifest.get('fingerprint'))[:16]}",
            soft_wrap=True,
            markup=False,
        )
    if status["stages"]:
        table = Table(title="replicas", title_justify="left")
        table.add_column("contributor")
        for stage in REPLICA_STAGES:
            table.add_column(stage)
        for contributor, stages in status["stages"].items():
            table.add_row(contributor, *(_cell(stages[s]) for s in REPLICA_STAGES))
        console.print(table)
        if any(v.state == "resumable" for stages in status["stages"].values() for v in stages.values()):
            console.print("resumable: `replica train CONFIG` goes on from the last whole checkpoint")
    if status["report"] is None:
        console.print("eval: not run yet (`replica eval CONFIG`)")
    else:
        from replica.eval.report import print_leaderboard

        print_leaderboard(status["report"], console)
    for label, where in status["files"]:
        console.print(f"{label + ':' if label else '':<16} {where}", soft_wrap=True, markup=False)


_STYLE = {"published": "green", "resumable": "yellow", "missing": "red", "not trained": "dim"}


def _cell(state: StageState) -> str:
    detail = f" ({state.detail})" if state.detail else ""
    return f"[{_STYLE[state.state]}]{state.state}[/]{_escape(detail)}"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)

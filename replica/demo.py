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
from replica.errors import UserError


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
    if not config.model.build:
        raise UserError(f"{config_path}: model.build: the demo builds its own base; set a base-build YAML")
    timings: dict[str, float] = {}
    started = time.perf_counter()

    with _step(console, "1/4 base model", timings):
        base_dir = _ensure_base(config, rebuild_base)
        console.print(f"base: {base_dir}")
    with _step(console, "2/4 prepare", timings):
        _prepare(config, base_dir, console)
    with _step(console, "3/4 train (SFT, then DPO, per contributor)", timings):
        _train(config, console)
    with _step(console, "4/4 evaluate base / sft / dpo on held-out tasks", timings):
        from replica.eval.run import run_eval

        report = run_eval(config)
        report["cross_success"] = cross_success(config, report)
        _print_cross(console, report["cross_success"])
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
    from replica.train.base import ensure_base

    return ensure_base(config.model.build, rebuild=rebuild)


def _prepare(config: RunConfig, base_dir: Path, console: Console) -> None:
    """Prepare prints accepted / rejected (with reasons) / duplicates / consent-excluded."""
    from replica.data.prepare import prepare
    from replica.model import load_tokenizer

    result = prepare(config, load_tokenizer(str(base_dir)))
    console.print(result.summary(), soft_wrap=True)
    rejected = config.prepared_dir / "rejected.jsonl"
    if rejected.is_file():
        console.print(f"rejected records and their reasons: {rejected}")


def _train(config: RunConfig, console: Console) -> None:
    from replica.train.pipeline import run_training

    summary = run_training(config)
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
    """`<run_dir>/demo.json`: seconds per step and the cross-contributor success matrix."""
    cross = result.report.get("cross_success") or {}
    atomic_write_json(
        config.run_dir / "demo.json",
        {
            "config": config.source,
            "finished_at": utc_now(),
            "seconds": result.timings,
            "cross_success": cross,
            "own_beats_others": own_beats_others(cross),
        },
    )


def _print_cross(console: Console, matrix: dict[str, dict[str, float]]) -> None:
    from rich.table import Table

    if not matrix:
        return
    table = Table(title="success of each replica (rows) on each contributor's held-out tasks (columns)")
    owners = list(matrix)
    for header in ["replica", *owners]:
        table.add_column(header)
    for replica, row in matrix.items():
        table.add_row(replica, *(f"{row.get(o, float('nan')):.2f}" for o in owners))
    console.print(table)


def _print_paths(console: Console, result: DemoResult) -> None:
    console.rule("[bold]done")
    console.print(f"total: {result.timings['total']:.0f} s")
    if result.report_md:
        console.print(f"report: {result.report_md}")
    for plot in result.plots:
        console.print(f"plot:   {plot}")


# --------------------------------------------------------------------------- fidelity on tasks
# Each replica on every contributor's held-out tasks: a replica that learned its contributor's way
# passes its own contributor's checks more often than another's (same requests, another way).
# Rolled out with the evaluation's own rollout and scoring; the diagonal comes from the report.


def cross_success(config: RunConfig, report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{replica's contributor: {tasks' contributor: success rate}} for every final replica."""
    import torch

    from replica.agents.adapters import adapter_name, load_adapters
    from replica.agents.loop import GenerationSettings
    from replica.eval import inputs
    from replica.eval.rollout import Target, build_episodes, roll_out
    from replica.model import load_base_model, load_tokenizer, resolve_base_path, resolve_device

    final = _final_stages(report)
    if len(final) < 2:
        return {}
    base_path = resolve_base_path(config.model)
    tokenizer = load_tokenizer(base_path, config.model.revision)
    base = load_base_model(config.model, resolve_device(config.model), base_path)
    adapters = {adapter_name(c, s): inputs.published_adapter(config.run_dir, c, s) for c, s in final.items()}
    model = load_adapters(base, adapters)
    tasks = {c: inputs.load_rows(config.prepared_dir, c, "tasks/heldout") for c in final}
    episodes = []
    for replica, stage in final.items():
        target = Target(replica, stage, adapter_name(replica, stage))
        for owner in final:
            if owner != replica:
                for episode in build_episodes(
                    tasks[owner], target, 1, config.eval.max_turns, config.eval.env
                ):
                    episode.meta["owner"] = owner
                    episodes.append(episode)
    torch.manual_seed(config.seed)
    settings = GenerationSettings(max_new_tokens=config.eval.max_new_tokens, seed=config.seed)
    rows = roll_out(model, tokenizer, episodes, settings, config.eval.batch_size)
    return _matrix(final, report, episodes, rows)


def _final_stages(report: dict[str, Any]) -> dict[str, str]:
    """Each contributor's last evaluated trained stage (dpo over sft)."""
    final: dict[str, str] = {}
    for entry in report.get("results", []):
        if entry["stage"] in ("sft", "dpo") and final.get(entry["contributor"]) != "dpo":
            final[entry["contributor"]] = entry["stage"]
    return final


def _matrix(
    final: dict[str, str], report: dict, episodes: list, rows: list[dict]
) -> dict[str, dict[str, float]]:
    matrix: dict[str, dict[str, list[float]]] = {c: {o: [] for o in final} for c in final}
    for episode, row in zip(episodes, rows, strict=True):
        matrix[row["contributor"]][episode.meta["owner"]].append(row["reward"])
    own = {(e["contributor"], e["stage"]): e.get("success") for e in report.get("results", [])}
    result: dict[str, dict[str, float]] = {}
    for replica, row in matrix.items():
        result[replica] = {o: sum(v) / len(v) for o, v in row.items() if v}
        result[replica][replica] = own.get((replica, final[replica]), float("nan"))
    return result


def own_beats_others(matrix: dict[str, dict[str, float]]) -> dict[str, bool]:
    """Per replica: is its success on its own contributor's tasks above every other column?"""
    return {r: all(row[r] > v for o, v in row.items() if o != r) for r, row in matrix.items()}

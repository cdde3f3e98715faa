"""`replica train`: for every selected contributor, SFT then DPO, skipping what is already published.

Rerunning the same command after a crash resumes: published stages are skipped, a stage with
checkpoints resumes from the last whole one, and the rest start fresh. Both only while they were
made with the config's settings (stale.py): otherwise it is an error, or `--retrain` replaces them. Under
`accelerate launch` every rank runs this same loop; only the main process writes.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from replica.artifacts import is_published, prepare_run_dir, replica_dir
from replica.config import RunConfig, dump_config
from replica.errors import UserError
from replica.train.context import TrainContext, build_context
from replica.train.data import list_contributors
from replica.train.distributed import barrier, is_main_process, rank, shutdown, world_size
from replica.train.dpo import has_preferences, train_dpo
from replica.train.registry import rebuild_registry
from replica.train.sft import train_sft
from replica.train.shard import Shard, select_shard
from replica.train.stale import check_published
from replica.verbosity import apply_to_libraries

log = logging.getLogger(__name__)

Stage = Literal["sft", "dpo", "all"]


@dataclass
class StageOutcome:
    contributor: str
    stage: str
    status: str  # trained | skipped | already published
    detail: str = ""
    seconds: float = 0.0


@dataclass
class TrainSummary:
    run_dir: Path
    contributors: list[str]
    outcomes: list[StageOutcome] = field(default_factory=list)
    registry: Path | None = None


def run_training(
    config: RunConfig,
    contributors: list[str] | None = None,
    stage: Stage = "all",
    shard: Shard | None = None,
    retrain: bool = False,
) -> TrainSummary:
    """Train the selected contributors' replicas; returns what was trained, skipped and why.

    A stage published (or checkpointed) with other settings than the config's is an error, or is
    replaced with `retrain` (replica/train/stale.py)."""
    if stage not in ("sft", "dpo", "all"):
        raise UserError(f"--stage: expected sft, dpo or all, found {stage!r}")
    selected = select_contributors(config, contributors, shard)
    apply_to_libraries()  # quiet unless -v: no map bars or library warnings between progress lines
    if is_main_process():
        prepare_run_dir(config.run_dir, dump_config(config))
    summary = TrainSummary(run_dir=config.run_dir, contributors=selected)
    try:
        ctx = build_context(config)
        ctx.retrain = retrain
        for contributor in selected:
            summary.outcomes.extend(train_contributor(ctx, contributor, stage))
        if is_main_process():
            summary.registry = rebuild_registry(config.run_dir)
    finally:
        shutdown()
    return summary


def select_contributors(config: RunConfig, requested: list[str] | None, shard: Shard | None) -> list[str]:
    """Contributors with prepared SFT data, narrowed by `data.contributors`, `--contributor`, `--shard`."""
    available = list_contributors(config.prepared_dir)
    chosen = available
    for source, wanted in (("data.contributors", config.data.contributors), ("--contributor", requested)):
        if not wanted:
            continue
        missing = sorted(set(wanted) - set(available))
        if missing:
            raise UserError(
                f"{source}: no prepared SFT data for {missing} under {config.prepared_dir} "
                f"(available: {', '.join(available) or 'none'})"
            )
        chosen = [c for c in chosen if c in wanted]
    return select_shard(chosen, shard)


def train_contributor(ctx: TrainContext, contributor: str, stage: Stage) -> list[StageOutcome]:
    """Run the requested stages of one contributor in order, skipping published ones."""
    refused = ctx.prepared.training_refused(contributor)
    if refused:
        log.warning("%s: not trained: %s", contributor, refused)
        return [StageOutcome(contributor, stage, "skipped", refused)]
    outcomes = []
    if stage in ("sft", "all"):
        outcomes.append(_run_stage(ctx, contributor, "sft", train_sft))
    if stage in ("dpo", "all"):
        reason = _dpo_skip_reason(ctx, contributor)
        if reason:
            log.info("%s: DPO skipped: %s; the replica is the SFT adapter", contributor, reason)
            outcomes.append(StageOutcome(contributor, "dpo", "skipped", reason))
        else:
            outcomes.append(_run_stage(ctx, contributor, "dpo", train_dpo))
    return outcomes


def _dpo_skip_reason(ctx: TrainContext, contributor: str) -> str | None:
    if not ctx.config.dpo.enabled:
        return "dpo.enabled is false"
    if not has_preferences(ctx, contributor):
        return "no preference pairs in pref/train"
    return None


def _run_stage(ctx: TrainContext, contributor: str, stage: str, train_fn) -> StageOutcome:
    final = replica_dir(ctx.run_dir, contributor, stage)
    if is_published(final) and check_published(ctx, contributor, stage, final):
        return StageOutcome(contributor, stage, "already published", str(final))
    if is_main_process():
        _remove_stale_temporaries(final)
    barrier()
    started = time.perf_counter()
    path = train_fn(ctx, contributor)
    seconds = time.perf_counter() - started
    # Every rank says it trained (the published files come from rank 0 alone).
    log.info("rank %d/%d trained %s/%s in %.1fs", rank(), world_size(), contributor, stage, seconds)
    return StageOutcome(contributor, stage, "trained", str(path), seconds)


def _remove_stale_temporaries(final: Path) -> None:
    """A killed publish leaves `.tmp-<stage>-<pid>`: never complete, safe to drop before retrying."""
    for stale in final.parent.glob(f".tmp-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)

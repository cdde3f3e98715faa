"""`replica.json`: the provenance manifest every published adapter carries.

It answers "what exactly trained this adapter?" without this package: base identity, tokenizer
and chat-template hashes, prepared-data fingerprint, the hashes of the records used, every
hyperparameter, metrics, consent scope, timestamps and library versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from replica.artifacts import library_versions, utc_now
from replica.train.context import TrainContext
from replica.train.distributed import world_size

MANIFEST_VERSION = 1


@dataclass
class StageRecord:
    """What a finished stage reports for its manifest (filled in by sft.py / dpo.py)."""

    contributor: str
    stage: str
    started_at: str
    hyperparameters: dict[str, Any]
    train_hashes: list[str]
    heldout_hashes: list[str]
    counts: dict[str, int]
    metrics: dict[str, float] = field(default_factory=dict)
    parent: dict[str, Any] | None = None
    resumed_from: str | None = None


def record_hashes(dataset: Dataset | None) -> list[str]:
    """Sorted record hashes of a split (order-free, so a reshuffle does not change provenance)."""
    if dataset is None or "record_hash" not in dataset.column_names:
        return []
    return sorted(dataset["record_hash"])


def build_manifest(ctx: TrainContext, record: StageRecord) -> dict[str, Any]:
    """The full replica.json document for one published stage."""
    config = ctx.config
    return {
        "manifest_version": MANIFEST_VERSION,
        "contributor": record.contributor,
        "stage": record.stage,
        "run_name": config.run_name,
        "base_model": ctx.base_info,
        "prepared": {"dir": str(config.prepared_dir), "fingerprint": ctx.prepared.fingerprint},
        "records": {"train": record.train_hashes, "heldout": record.heldout_hashes},
        "counts": record.counts,
        "hyperparameters": record.hyperparameters,
        "metrics": record.metrics,
        "consent": ctx.prepared.consent(record.contributor),
        "parent": record.parent,
        "resumed_from": record.resumed_from,
        "device": {
            "device": ctx.choice.device,
            "dtype": str(ctx.choice.dtype).removeprefix("torch."),
            "precision": ctx.choice.precision,
            "world_size": world_size(),
        },
        "started_at": record.started_at,
        "finished_at": utc_now(),
        "library_versions": library_versions(),
    }

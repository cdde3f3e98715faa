"""Publishing a trained stage: save, check adapter rules, write replica.json and the model card,
then rename the whole directory into place in one step.

Every rank calls `publish_stage` (saving may need all ranks, e.g. FSDP gathers weights); only the
main process writes the published directory.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from transformers import Trainer

from replica.artifacts import (
    MANIFEST_NAME,
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    replica_dir,
)
from replica.train.adapter_rules import check_adapter
from replica.train.checkpoints import remove_checkpoints
from replica.train.context import TrainContext
from replica.train.curves import CURVES_NAME, plot_training_curves
from replica.train.distributed import barrier, is_main_process
from replica.train.manifest import StageRecord, build_manifest
from replica.train.model_card import render_model_card

log = logging.getLogger(__name__)


def publish_stage(ctx: TrainContext, trainer: Trainer, record: StageRecord) -> Path:
    """Write `<run>/replicas/<contributor>/<stage>/` complete, or not at all; return its path."""
    final = replica_dir(ctx.run_dir, record.contributor, record.stage)
    staging = ctx.checkpoint_dir(record.contributor, record.stage) / "final"
    trainer.save_model(str(staging))  # collective under FSDP/ZeRO-3; writes on the main process only
    barrier()
    if is_main_process():
        with atomic_directory(final) as tmp:
            # Top-level files only: DPO's frozen "ref" adapter copy (a subfolder) is not part of the replica.
            for item in staging.iterdir():
                if item.is_file() and item.name != "training_args.bin":
                    shutil.copy2(item, tmp / item.name)
            ctx.tokenizer.save_pretrained(str(tmp))
            title = f"{record.contributor} / {record.stage}"
            plot_training_curves(trainer.state.log_history, title, tmp / CURVES_NAME)
            check_adapter(tmp, ctx.base_model().config.vocab_size, len(ctx.tokenizer))
            manifest = build_manifest(ctx, record)
            atomic_write_text(tmp / "README.md", render_model_card(manifest))
            atomic_write_json(tmp / MANIFEST_NAME, manifest)
        remove_checkpoints(ctx.checkpoint_dir(record.contributor, record.stage))
        log.info("published %s", final)
    barrier()
    return final

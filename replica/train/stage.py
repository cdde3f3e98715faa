"""Running one trained stage to the end: train (resuming from the last whole checkpoint), record
metrics, publish, and hand the shared base back clean for the next stage. SFT and DPO share it."""

from __future__ import annotations

import logging
from pathlib import Path

from peft import PeftModel
from transformers import PrinterCallback, Trainer

from replica.train.checkpoints import last_complete_checkpoint
from replica.train.context import TrainContext
from replica.train.manifest import StageRecord
from replica.train.metrics import stage_metrics
from replica.train.progress import TrainProgress
from replica.train.publish import publish_stage
from replica.train.stale import check_checkpoints
from replica.verbosity import is_verbose

log = logging.getLogger(__name__)


def train_and_publish(
    ctx: TrainContext, contributor: str, stage: str, trainer: Trainer, record: StageRecord
) -> Path:
    """Train `trainer` (resuming if a checkpoint exists), publish the stage, release the base."""
    check_checkpoints(ctx, contributor, stage, Path(trainer.args.output_dir))
    resume = last_complete_checkpoint(trainer.args.output_dir)
    if resume:
        log.info("%s/%s: resuming from %s", contributor, stage, resume)
    if not is_verbose():  # the progress line shows the loss; the raw log dicts only with -v
        trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainProgress(f"train {contributor}/{stage}"))
    keep_tensorboard_logs(trainer, ctx.run_dir / "tensorboard" / contributor / stage)
    trainer.train(resume_from_checkpoint=resume)
    record.metrics = stage_metrics(trainer, trainer.eval_dataset is not None)
    record.resumed_from = Path(resume).name if resume else None
    path = publish_stage(ctx, trainer, record)
    release_base(ctx, trainer)
    return path


def keep_tensorboard_logs(trainer: Trainer, where: Path) -> None:
    """`report_to: tensorboard` writes into `where` (`<run>/tensorboard/<contributor>/<stage>`).

    transformers' default is under the trainer's output_dir, which is the stage's checkpoint
    directory: publishing deletes it, and the event files with it.
    """
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(where)  # TENSORBOARD_LOGGING_DIR, when set, still wins


def release_base(ctx: TrainContext, trainer) -> None:
    """Strip the stage's LoRA layers off the shared base so the next stage starts clean."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(model, PeftModel):
        model = model.unload()
    if model.is_activation_checkpointing:
        model.activation_checkpointing_disable()  # the next stage decides for itself
    if getattr(model, "_require_grads_hooks", None):
        model.disable_input_require_grads()  # set by TRL with checkpointing; costs backward work otherwise
    ctx.return_base(model)
    trainer.accelerator.free_memory()

"""SFT stage: a LoRA adapter trained on one contributor's demonstrations with TRL's SFTTrainer.

Reads top to bottom: config -> data -> trainer -> train (resuming) -> save + manifest.
Loss falls on assistant turns only (`assistant_only_loss` with the training chat template's
generation markers, end-of-turn token included); tool results and user turns carry none.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import set_seed
from trl import SFTConfig, SFTTrainer

from replica.artifacts import utc_now
from replica.errors import UserError
from replica.train.args import common_args
from replica.train.context import TrainContext
from replica.train.data import check_one_contributor, load_split
from replica.train.lora import peft_lora_config
from replica.train.manifest import StageRecord, record_hashes
from replica.train.sampler import resumable_sampler
from replica.train.stage import train_and_publish

log = logging.getLogger(__name__)


class ReplicaSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with one change: length-grouped batches that resume exactly.

    Why subclass: the Trainer picks its train sampler internally and the default length-grouped
    one reorders an interrupted epoch after a resume (see replica/train/sampler.py).
    """

    def _get_train_sampler(self, train_dataset=None):
        return resumable_sampler(super()._get_train_sampler(train_dataset), self.args.data_seed or 0)


def sft_args(ctx: TrainContext, contributor: str, has_eval: bool) -> SFTConfig:
    """TRL's SFTConfig for one contributor, from the run config's `sft:` section."""
    sft = ctx.config.sft
    if sft.padding_free and not sft.packing:
        # TRL enforces max_length on padding-free batches only when it packs them.
        raise UserError("sft.padding_free: true needs sft.packing: true (padding-free packing, best-fit)")
    return SFTConfig(
        **common_args(sft, ctx.choice, ctx.checkpoint_dir(contributor, "sft"), ctx.config.seed, has_eval),
        assistant_only_loss=True,
        # Packing and padding-free see one contributor's dataset only: no block mixes two contributors.
        packing=sft.packing,
        padding_free=sft.padding_free,
        train_sampling_strategy="group_by_length" if sft.group_by_length else "random",
        warmup_steps=sft.warmup_ratio,  # transformers 5: a float < 1 is a fraction of all steps
        lr_scheduler_type=sft.lr_scheduler_type,
    )


def build_sft_trainer(ctx: TrainContext, contributor: str) -> tuple[ReplicaSFTTrainer, StageRecord]:
    """The SFTTrainer over a fresh LoRA on the shared base, and the stage's manifest record."""
    started = utc_now()
    prepared = ctx.config.prepared_dir
    train = load_split(prepared, contributor, "sft/train")
    if train is None or len(train) == 0:
        raise UserError(f"{prepared}/{contributor}/sft/train: no demonstrations to train on")
    heldout = load_split(prepared, contributor, "sft/heldout")
    heldout = heldout if heldout is not None and len(heldout) else None
    for name, split in (("sft/train", train), ("sft/heldout", heldout)):
        if split is not None:
            check_one_contributor(split, contributor, f"{prepared}/{contributor}/{name}")

    set_seed(ctx.config.seed)  # the LoRA init draws from it: same seed, same starting adapter
    trainer = ReplicaSFTTrainer(
        model=ctx.base_model(),
        args=sft_args(ctx, contributor, heldout is not None),
        train_dataset=train,
        eval_dataset=heldout,
        processing_class=ctx.tokenizer,
        peft_config=peft_lora_config(ctx.config.lora),
    )
    if len(trainer.train_dataset) == 0:
        raise UserError(
            f"{prepared}/{contributor}/sft/train: all {len(train)} demonstrations lost every assistant "
            f"token to truncation at sft.max_length={ctx.config.sft.max_length}; raise sft.max_length"
        )
    record = StageRecord(
        contributor=contributor,
        stage="sft",
        started_at=started,
        hyperparameters={
            "seed": ctx.config.seed,
            "lora": ctx.config.lora.model_dump(mode="json"),
            "sft": ctx.config.sft.model_dump(mode="json"),
        },
        train_hashes=record_hashes(train),
        heldout_hashes=record_hashes(heldout),
        counts={"sft/train": len(train), "sft/heldout": len(heldout) if heldout is not None else 0},
    )
    return trainer, record


def train_sft(ctx: TrainContext, contributor: str) -> Path:
    """Train, checkpoint (resuming from the last whole checkpoint) and publish the SFT adapter."""
    trainer, record = build_sft_trainer(ctx, contributor)
    return train_and_publish(ctx, contributor, "sft", trainer, record)

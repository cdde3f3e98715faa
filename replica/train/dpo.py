"""DPO stage: the contributor's SFT adapter trained further on their preference pairs (TRL DPOTrainer).

Reads top to bottom: config -> model -> data -> trainer -> train (resuming) -> save + manifest.
The reference policy is the SFT adapter: the trainer receives a PeftModel whose trainable
"default" adapter is loaded from sft/, and TRL copies it into a frozen "ref" adapter on the
same base. No second copy of the base is loaded, and the bare base is never the reference.
"""

from __future__ import annotations

import logging
from pathlib import Path

from peft import PeftModel
from transformers import Trainer, set_seed
from trl import DPOConfig, DPOTrainer

from replica.artifacts import read_manifest, replica_dir, sha256_file, utc_now
from replica.errors import UserError
from replica.train.args import common_args
from replica.train.context import TrainContext
from replica.train.data import check_one_contributor, load_split
from replica.train.manifest import StageRecord, record_hashes
from replica.train.shared_suffix import trim_shared_suffix
from replica.train.simpo import build_simpo_trainer
from replica.train.stage import train_and_publish

log = logging.getLogger(__name__)

# The adapter TRL creates as the frozen reference when given a PeftModel without ref_model.
REFERENCE_ADAPTER = "ref"


def dpo_args(ctx: TrainContext, contributor: str, has_eval: bool) -> DPOConfig:
    """TRL's DPOConfig for one contributor, from the run config's `dpo:` section."""
    dpo = ctx.config.dpo
    output_dir = ctx.checkpoint_dir(contributor, "dpo")
    losses, weights = [dpo.loss_type], [1.0]
    if dpo.sft_loss_weight:  # RPO: the preference loss plus an NLL term on the chosen answers
        losses, weights = [dpo.loss_type, "sft"], [1.0, dpo.sft_loss_weight]
    return DPOConfig(
        **common_args(dpo, ctx.choice, output_dir, ctx.config.seed, has_eval and dpo.eval_heldout),
        beta=dpo.beta,
        loss_type=losses,
        loss_weights=weights,
        precompute_ref_log_probs=dpo.precompute_ref_log_probs,
    )


def has_preferences(ctx: TrainContext, contributor: str) -> bool:
    """Whether the contributor has any preference pairs to train DPO on."""
    train = load_split(ctx.config.prepared_dir, contributor, "pref/train")
    return train is not None and len(train) > 0


def build_dpo_trainer(ctx: TrainContext, contributor: str) -> tuple[Trainer, StageRecord]:
    """The DPOTrainer over the SFT adapter (policy and reference), and the stage's manifest record."""
    sft_dir = replica_dir(ctx.run_dir, contributor, "sft")
    if not (sft_dir / "adapter_config.json").exists():
        raise UserError(
            f"{sft_dir}: DPO starts from the SFT adapter, which is not published (run --stage sft)"
        )
    prepared = ctx.config.prepared_dir
    train = load_split(prepared, contributor, "pref/train")
    heldout = load_split(prepared, contributor, "pref/heldout")
    heldout = heldout if heldout is not None and len(heldout) else None
    for name, split in (("pref/train", train), ("pref/heldout", heldout)):
        if split is not None:
            check_one_contributor(split, contributor, f"{prepared}/{contributor}/{name}")

    set_seed(ctx.config.seed)
    model = PeftModel.from_pretrained(ctx.base_model(), str(sft_dir), is_trainable=True)
    reference_free = ctx.config.dpo.loss_type == "simpo"
    if reference_free:
        trainer = build_simpo_trainer(ctx, model, contributor, train, heldout)
    else:
        trainer = DPOTrainer(
            model=model,
            args=dpo_args(ctx, contributor, heldout is not None),
            train_dataset=train,
            eval_dataset=heldout if ctx.config.dpo.eval_heldout else None,
            processing_class=ctx.tokenizer,
        )
        if REFERENCE_ADAPTER not in model.peft_config:
            raise RuntimeError(
                "TRL did not create the frozen SFT reference adapter; refusing to use the bare base"
            )
    counts = {"pref/train": len(train), "pref/heldout": len(heldout) if heldout is not None else 0}
    if ctx.config.dpo.trim_shared_suffix and not reference_free:
        counts.update(_trim_pairs(trainer))
    record = StageRecord(
        contributor=contributor,
        stage="dpo",
        started_at=utc_now(),
        hyperparameters={
            "seed": ctx.config.seed,
            "lora": read_manifest(sft_dir)["hyperparameters"]["lora"],
            "dpo": ctx.config.dpo.model_dump(mode="json"),
            "reference": "none (reference-free SimPO)" if reference_free else "sft adapter (frozen copy)",
        },
        train_hashes=record_hashes(train),
        heldout_hashes=record_hashes(heldout),
        counts=counts,
        parent={"stage": "sft", "adapter_sha256": sha256_file(sft_dir / "adapter_model.safetensors")},
    )
    return trainer, record


def _trim_pairs(trainer: DPOTrainer) -> dict[str, int]:
    """Cut the shared answer tails of the trainer's tokenized pairs; what was cut, for the manifest."""
    trainer.train_dataset, stats = trim_shared_suffix(trainer.train_dataset)
    if trainer.eval_dataset is not None:
        trainer.eval_dataset, _ = trim_shared_suffix(trainer.eval_dataset)
    log.info(
        "dpo.trim_shared_suffix: %d of %d training pairs lost a shared tail (%d completion tokens)",
        stats.trimmed,
        stats.pairs,
        stats.tokens,
    )
    return {"pref/train pairs trimmed": stats.trimmed, "pref/train tokens trimmed": stats.tokens}


def train_dpo(ctx: TrainContext, contributor: str) -> Path:
    """Train, checkpoint (resuming from the last whole checkpoint) and publish the DPO adapter."""
    trainer, record = build_dpo_trainer(ctx, contributor)
    return train_and_publish(ctx, contributor, "dpo", trainer, record)

"""Trainer arguments both stages share: device/precision, checkpoints for resume, logging, seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replica.config import DpoConfig, SftConfig
from replica.model import DeviceChoice

# Two checkpoints on disk: a kill while the newest one is being written still leaves one whole.
SAVE_TOTAL_LIMIT = 2


def common_args(
    stage: SftConfig | DpoConfig, choice: DeviceChoice, output_dir: Path, seed: int, has_eval: bool
) -> dict[str, Any]:
    """Keyword arguments for TRL's SFTConfig / DPOConfig that do not depend on the method."""
    eval_steps = getattr(stage, "eval_steps", None)
    return {
        "output_dir": str(output_dir),
        "learning_rate": stage.learning_rate,
        "num_train_epochs": stage.epochs,
        "max_steps": stage.max_steps,
        "per_device_train_batch_size": stage.batch_size,
        "per_device_eval_batch_size": stage.batch_size,
        "gradient_accumulation_steps": stage.gradient_accumulation_steps,
        "max_length": stage.max_length,
        "logging_steps": stage.logging_steps,
        "save_strategy": "steps",
        "save_steps": stage.save_steps,
        "save_total_limit": SAVE_TOTAL_LIMIT,
        "eval_strategy": ("steps" if eval_steps else "epoch") if has_eval else "no",
        "eval_steps": eval_steps,
        "report_to": stage.report_to,
        "seed": seed,
        "data_seed": seed,
        "bf16": choice.bf16,
        "fp16": choice.fp16,
        "use_cpu": choice.device == "cpu",
        # Explicit: TRL's own default is True, which costs speed a LoRA on a small base rarely needs.
        "gradient_checkpointing": stage.gradient_checkpointing,
        "disable_tqdm": True,  # replica's own progress line instead (train/progress.py)
        "include_num_input_tokens_seen": "non_padding",  # for its tokens per second
        "dataloader_num_workers": 0,
        # Stage datasets are small per contributor; never spawn map workers per stage.
        "dataset_num_proc": None,
    }

"""What every stage of a run shares, loaded once: device, tokenizer, base model, provenance facts.

Training N contributors loads the base and the tokenizer once; each stage wraps the same base
in a fresh LoRA and unwraps it afterwards (LoRA never changes base weights), so nothing is
reloaded between contributors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from replica.artifacts import canonical_json, sha256_dir, sha256_text
from replica.bases import provide_base
from replica.config import RunConfig
from replica.model import DeviceChoice, confirm_precision, load_base_model, load_tokenizer, resolve_device
from replica.templates import template_hash, training_chat_template
from replica.train.data import PreparedInfo, read_prepared_info

log = logging.getLogger(__name__)


@dataclass
class TrainContext:
    """The run-wide state the SFT and DPO stages read (built by `build_context`)."""

    config: RunConfig
    choice: DeviceChoice
    base_path: str
    tokenizer: PreTrainedTokenizerBase
    prepared: PreparedInfo
    base_info: dict[str, Any]
    retrain: bool = False  # replace stages (published or checkpointed) made with other settings
    _model: PreTrainedModel | None = field(default=None, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    def base_model(self) -> PreTrainedModel:
        """The base model, loaded on first use and reused by every stage afterwards."""
        if self._model is None:
            self._model = load_base_model(self.config.model, self.choice, self.base_path)
            # Trainers turn caching off while training; generation is not needed here.
            self._model.config.use_cache = False
        return self._model

    def return_base(self, model: PreTrainedModel) -> None:
        """Take the base back after a stage unwrapped its LoRA, for the next stage to reuse."""
        self._model = model

    def checkpoint_dir(self, contributor: str, stage: str) -> Path:
        return self.run_dir / "checkpoints" / contributor / stage


def build_context(config: RunConfig) -> TrainContext:
    """Provide the base (built, converted or checked by its provider), device and tokenizer."""
    base_path = provide_base(config.model)
    choice = resolve_device(config.model)
    tokenizer = load_tokenizer(base_path, config.model.revision, config.model.chat_template)
    # Train (and ship) the template with generation markers, so loss falls on assistant turns only.
    tokenizer.chat_template = training_chat_template(tokenizer)
    ctx = TrainContext(
        config=config,
        choice=choice,
        base_path=base_path,
        tokenizer=tokenizer,
        prepared=read_prepared_info(config.prepared_dir),
        base_info=describe_base(config, base_path, tokenizer),
    )
    if choice.autocast:
        # bf16 autocast is kept only if this model's loss agrees with fp32, which needs the model:
        # load it now, before any stage builds its trainer arguments from `ctx.choice`.
        ctx.choice = confirm_precision(ctx.base_model(), choice)
    return ctx


def describe_base(config: RunConfig, base_path: str, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Base model identity for replica.json: hub id + revision, or a content hash of a local dir."""
    local = Path(base_path)
    content_hash = sha256_dir(local, "*.safetensors") if local.is_dir() else None
    return {
        "name_or_path": config.model.name_or_path or base_path,
        "path": base_path,
        "revision": config.model.revision,
        "content_hash": content_hash,
        "build": config.model.build,
        "chat_template": config.model.chat_template,
        "tokenizer_hash": sha256_text(canonical_json(tokenizer.get_vocab())),
        "chat_template_hash": template_hash(tokenizer),
    }

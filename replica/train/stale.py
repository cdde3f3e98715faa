"""Is a published stage (or a stage's checkpoints) still what the config asks for?

`replica train` skips a published stage and resumes a checkpointed one. Both are right only when
they were made with the settings the config has now: another learning rate, LoRA shape, base,
chat template, set of training records or (for DPO) SFT adapter makes them stale. A stale stage
is an error that lists what changed, unless `--retrain` asks to replace it, so a rerun never
reports an old adapter under a new config's name.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from replica.artifacts import MANIFEST_NAME, canonical_json, read_json, replica_dir, sha256_file
from replica.errors import UserError
from replica.train.context import TrainContext
from replica.train.data import load_split
from replica.train.distributed import barrier, is_main_process

log = logging.getLogger(__name__)

# Stage keys that change no weight: how often to log, save and evaluate, where to report, whether TRL
# scores the held-out pairs at the end.
BOOKKEEPING = frozenset({"logging_steps", "save_steps", "eval_steps", "report_to", "eval_heldout"})
TRAIN_SPLIT = {"sft": "sft/train", "dpo": "pref/train"}
SETTINGS_NAME = "settings.json"  # written beside a stage's checkpoints


def stage_settings(ctx: TrainContext, contributor: str, stage: str) -> dict[str, Any]:
    """What decides a stage's weights, as the config and the prepared data say now."""
    config = ctx.config
    train = load_split(config.prepared_dir, contributor, TRAIN_SPLIT[stage])
    hashes = train["record_hash"] if train is not None and "record_hash" in train.column_names else []
    sft_adapter = replica_dir(ctx.run_dir, contributor, "sft") / "adapter_model.safetensors"
    return _settings(
        stage,
        seed=config.seed,
        section=getattr(config, stage).model_dump(mode="json"),
        base=ctx.base_info,
        train_hashes=hashes,
        lora=config.lora.model_dump(mode="json"),
        parent=sha256_file(sft_adapter) if stage == "dpo" and sft_adapter.exists() else None,
    )


def recorded_settings(manifest: dict[str, Any], stage: str) -> dict[str, Any]:
    """The same settings, as a published stage's replica.json recorded them."""
    hyper = manifest.get("hyperparameters") or {}
    return _settings(
        stage,
        seed=hyper.get("seed"),
        section=hyper.get(stage) or {},
        base=manifest.get("base_model") or {},
        train_hashes=(manifest.get("records") or {}).get("train") or [],
        lora=hyper.get("lora") or {},
        parent=(manifest.get("parent") or {}).get("adapter_sha256"),
    )


def _settings(
    stage: str,
    *,
    seed: Any,
    section: dict[str, Any],
    base: dict[str, Any],
    train_hashes: list[str],
    lora: dict[str, Any],
    parent: str | None,
) -> dict[str, Any]:
    """One shape for both sides: SFT is decided by its LoRA, DPO by the SFT adapter it starts from."""
    settings: dict[str, Any] = {
        "seed": seed,
        stage: {key: value for key, value in section.items() if key not in BOOKKEEPING},
        "base": base.get("content_hash"),
        "chat_template": base.get("chat_template_hash"),
        "records": _digest(train_hashes),
    }
    if stage == "sft":
        settings["lora"] = lora
    else:
        settings["parent"] = parent
    return settings


def changes(recorded: dict[str, Any], wanted: dict[str, Any], ctx: TrainContext) -> list[str]:
    """`key: recorded -> wanted` for every setting that differs. A key an older manifest lacks
    counts as its default (the behaviour before the key existed)."""
    found = []
    for key, value in wanted.items():
        old = recorded.get(key)
        if isinstance(value, dict):
            defaults = _defaults(getattr(ctx.config, key, None))
            for inner, new in value.items():
                before = (old or {}).get(inner, defaults.get(inner))
                if before != new:
                    found.append(f"{key}.{inner}: {before!r} -> {new!r}")
        elif old != value:
            found.append(f"{key}: {_short(old)} -> {_short(value)}")
    return found


def check_published(ctx: TrainContext, contributor: str, stage: str, final: Path) -> bool:
    """True when the published stage can be kept; a stale one is removed under `retrain`, an error otherwise."""
    manifest = read_json(final / MANIFEST_NAME)
    found = changes(recorded_settings(manifest, stage), stage_settings(ctx, contributor, stage), ctx)
    if not found:
        return True
    _refuse_unless_retrain(ctx, f"{final} was published with other settings", found)
    log.warning("%s/%s: replacing the published adapter (%s)", contributor, stage, "; ".join(found))
    if is_main_process():
        shutil.rmtree(final)
        shutil.rmtree(ctx.checkpoint_dir(contributor, stage), ignore_errors=True)
    barrier()
    return False


def check_checkpoints(ctx: TrainContext, contributor: str, stage: str, folder: Path) -> None:
    """Before training: drop (under `retrain`) or refuse checkpoints made with other settings, then
    record the settings the checkpoints about to be written are made with."""
    wanted = stage_settings(ctx, contributor, stage)
    path = folder / SETTINGS_NAME
    if path.exists():
        found = changes(read_json(path), wanted, ctx)
        if found:
            _refuse_unless_retrain(ctx, f"{folder} holds checkpoints of other settings", found)
            log.warning(
                "%s/%s: dropping checkpoints of other settings (%s)", contributor, stage, "; ".join(found)
            )
            if is_main_process():
                shutil.rmtree(folder)
            barrier()
    if is_main_process():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(canonical_json(wanted), encoding="utf-8")
    barrier()


def _refuse_unless_retrain(ctx: TrainContext, what: str, found: list[str]) -> None:
    if not ctx.retrain:
        raise UserError(
            f"{what}: {'; '.join(found)}. Rerun with --retrain to replace it, or set another "
            "run_name to keep both"
        )


def _defaults(section: Any) -> dict[str, Any]:
    if not isinstance(section, BaseModel):
        return {}
    return {name: field.default for name, field in type(section).model_fields.items()}


def _digest(hashes: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:16]


def _short(value: Any) -> str:
    return repr(value[:12]) if isinstance(value, str) and len(value) > 12 else repr(value)

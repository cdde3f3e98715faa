"""Several LoRA adapters on one loaded base: load them, pick one, or mix them in one batch.

The base is loaded once; each replica is a PEFT adapter attached to it under its own name. A
forward or `generate` call then runs either one adapter (`use_adapter`), the bare base
(`use_adapter(model, None)`), or a different adapter per batch row (PEFT's `adapter_names=`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from peft import PeftModel
from transformers import PreTrainedModel

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


def adapter_name(contributor: str, stage: str) -> str:
    """The name a replica's adapter gets on the shared base (PEFT names may not contain dots)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{contributor}--{stage}")


def load_adapters(base: PreTrainedModel, adapters: dict[str, str | Path]) -> PreTrainedModel:
    """Attach every adapter directory to `base` under its name; returns the PeftModel (eval mode).

    With no adapters the base is returned unchanged.
    """
    model: PreTrainedModel = base
    for name, path in adapters.items():
        if isinstance(model, PeftModel):
            model.load_adapter(str(path), adapter_name=name, is_trainable=False)
        else:
            model = PeftModel.from_pretrained(base, str(path), adapter_name=name, is_trainable=False)
    return model.eval()


@contextlib.contextmanager
def use_adapter(model: PreTrainedModel, name: str | None) -> Iterator[None]:
    """Run the block with one adapter active, or the bare base when `name` is None."""
    if not isinstance(model, PeftModel):
        if name is not None:
            raise ValueError(f"adapter {name!r} requested but the model has no adapters loaded")
        yield
        return
    if name is None:
        with model.disable_adapter():
            yield
        return
    previous = model.active_adapter
    model.set_adapter(name)
    try:
        yield
    finally:
        model.set_adapter(previous)

"""The PEFT LoRA config every replica is trained with, built from the run config's `lora:` section."""

from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig

from replica.config import LoraConfig


def peft_lora_config(lora: LoraConfig) -> PeftLoraConfig:
    """A causal-LM LoRA config that multi-LoRA servers accept (no bias, no DoRA, no extra modules)."""
    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        use_rslora=lora.use_rslora,
        bias="none",
        use_dora=False,
        task_type="CAUSAL_LM",
    )

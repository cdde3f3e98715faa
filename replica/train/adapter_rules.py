"""Rules an adapter must pass before it is published, so vLLM and other multi-LoRA servers load it.

Servers that switch adapters per request hold one base in memory and add only the low-rank
factors: anything that replaces or extends base weights (modules_to_save, trained biases,
DoRA magnitudes, resized embeddings for added tokens) cannot be served that way.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from replica.errors import UserError


class AdapterRuleError(UserError):
    """An adapter that a multi-LoRA server could not load; the message names the rule."""


def check_adapter(adapter_dir: str | Path, base_vocab_size: int, tokenizer_size: int) -> None:
    """Raise AdapterRuleError naming the first broken rule; return None when the adapter is servable."""
    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file() or not (adapter_dir / "adapter_model.safetensors").is_file():
        raise AdapterRuleError(
            f"{adapter_dir}: rule 'plain PEFT files': adapter_config.json or "
            "adapter_model.safetensors is missing"
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    where = f"{config_path}"
    if config.get("modules_to_save"):
        raise AdapterRuleError(f"{where}: rule 'no modules_to_save': found {config['modules_to_save']}")
    if config.get("use_dora"):
        raise AdapterRuleError(f"{where}: rule 'no DoRA': use_dora is true")
    if config.get("bias", "none") != "none":
        raise AdapterRuleError(f"{where}: rule 'bias: none': found bias={config['bias']!r}")
    if tokenizer_size > base_vocab_size:
        raise AdapterRuleError(
            f"{adapter_dir}: rule 'no added tokens': tokenizer has {tokenizer_size} tokens, "
            f"the base model's vocabulary {base_vocab_size}"
        )
    _check_tensors(adapter_dir / "adapter_model.safetensors")


def _check_tensors(weights: Path) -> None:
    """Only LoRA A/B factors may be stored; anything else is a base weight in disguise."""
    with safe_open(str(weights), framework="pt") as handle:
        names = list(handle.keys())
    if not names:
        raise AdapterRuleError(f"{weights}: rule 'LoRA factors only': the file holds no tensors")
    for name in names:
        if "lora_magnitude_vector" in name:
            raise AdapterRuleError(f"{weights}: rule 'no DoRA': found tensor {name}")
        if "lora_A" not in name and "lora_B" not in name:
            raise AdapterRuleError(f"{weights}: rule 'LoRA factors only': found tensor {name}")

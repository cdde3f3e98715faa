"""README.md model card for a published adapter (Hugging Face card format: YAML header + body)."""

from __future__ import annotations

from typing import Any

import yaml


def render_model_card(manifest: dict[str, Any]) -> str:
    """A model card whose header hubs read (base_model, library_name, relation, license)."""
    base = manifest["base_model"]
    consent = manifest.get("consent") or {}
    header = {
        "base_model": base.get("name_or_path"),
        "library_name": "peft",
        "base_model_relation": "adapter",
        "license": consent.get("license") or "other",
        "tags": ["replica", f"contributor:{manifest['contributor']}", manifest["stage"], "lora"],
    }
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).rstrip(),
        "---",
        "",
        f"# Replica of `{manifest['contributor']}` ({manifest['stage'].upper()})",
        "",
        f"A LoRA adapter on `{base.get('name_or_path')}` trained by replica "
        f"({_method(manifest['stage'])}). Load it with plain PEFT:",
        "",
        "```python",
        "from peft import PeftModel",
        "model = PeftModel.from_pretrained(base_model, 'path/to/this/directory')",
        "```",
        "",
        "## Data",
        "",
        "| split | records |",
        "| --- | --- |",
        *[f"| {name} | {count} |" for name, count in sorted(manifest["counts"].items())],
        "",
        f"Prepared-data fingerprint: `{manifest['prepared'].get('fingerprint')}`.",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {name} | {value:.4g} |" for name, value in sorted(manifest["metrics"].items())],
        "",
        "## Consent",
        "",
        f"`{consent}`" if consent else "No consent record was provided with the prepared data.",
        "",
        "Full provenance (record hashes, hyperparameters, library versions): `replica.json`.",
        "",
    ]
    return "\n".join(lines)


def _method(stage: str) -> str:
    return "supervised fine-tuning on demonstrations" if stage == "sft" else "DPO on preferences, from SFT"

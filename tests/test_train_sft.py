"""SFT stage: real steps on the tiny base; adapter weights move; the published stage is complete."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from train_fixtures import write_config, write_prepared

from replica.artifacts import final_stage, read_manifest, replica_dir
from replica.config import load_config
from replica.train.context import build_context
from replica.train.sft import train_sft


def test_sft_trains_and_publishes_a_complete_adapter(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 8}})
    config = load_config(write_config(tmp_path, tiny_base_dir, prepared))
    ctx = build_context(config)

    path = train_sft(ctx, "alice")

    assert path == replica_dir(config.run_dir, "alice", "sft")
    names = {p.name for p in path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "replica.json", "README.md"} <= names
    assert "tokenizer_config.json" in names or "tokenizer.json" in names
    weights = load_file(str(path / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    # PEFT initialises B to zero: any non-zero B means training moved the adapter.
    assert lora_b and any(torch.count_nonzero(t) > 0 for t in lora_b)

    manifest = read_manifest(path)
    assert manifest["contributor"] == "alice" and manifest["stage"] == "sft"
    assert manifest["prepared"]["fingerprint"] == "fp-test"
    assert len(manifest["records"]["train"]) == 6 and len(manifest["records"]["heldout"]) == 2
    assert manifest["base_model"]["content_hash"] and manifest["base_model"]["chat_template_hash"]
    assert manifest["hyperparameters"]["lora"]["r"] == 4
    assert manifest["metrics"]["global_step"] == 4.0
    assert "eval_loss" in manifest["metrics"] and "train_loss_last" in manifest["metrics"]
    assert manifest["consent"]["license"] == "cc-by-4.0"
    assert manifest["library_versions"]["trl"]
    card = (path / "README.md").read_text()
    assert "library_name: peft" in card and "base_model_relation: adapter" in card and "cc-by-4.0" in card
    assert json.loads((path / "adapter_config.json").read_text())["r"] == 4
    assert final_stage(config.run_dir, "alice") == "sft"
    # Checkpoints are only for resuming: gone once the stage is published.
    assert not ctx.checkpoint_dir("alice", "sft").exists()

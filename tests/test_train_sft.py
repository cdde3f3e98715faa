"""SFT stage: real steps on the tiny base; adapter weights move; the published stage is complete."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from train_fixtures import write_config, write_prepared

from replica.artifacts import final_stage, read_manifest, replica_dir
from replica.config import load_config
from replica.train.context import build_context
from replica.train.sft import build_sft_trainer, train_sft


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


def test_loss_falls_on_assistant_turns_only_end_of_turn_included(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"hana": {"sft": 4}})
    ctx = build_context(load_config(write_config(tmp_path, tiny_base_dir, prepared)))
    trainer, _ = build_sft_trainer(ctx, "hana")
    row = trainer.train_dataset[0]
    tokenizer = ctx.tokenizer
    ids, labels = row["input_ids"], row["labels"]
    im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    # Split the sequence into turns at <|im_start|>; the role name follows it.
    starts = [i for i, t in enumerate(ids) if t == im_start] + [len(ids)]
    seen = {"assistant": 0, "other": 0}
    for begin, end in zip(starts, starts[1:], strict=False):
        role = tokenizer.decode(ids[begin + 1 : begin + 4]).strip().split("\n")[0]
        trained = [i for i in range(begin, end) if labels[i] != -100]
        if role.startswith("assistant"):
            assert trained, "an assistant turn carries no loss"
            close = [i for i in range(begin, end) if ids[i] == im_end]
            assert close and close[0] in trained, "the assistant's end-of-turn token is not trained"
            seen["assistant"] += 1
        else:  # system, user and tool turns (tool results arrive as user turns in Qwen's template)
            assert not trained, f"{role!r} turn carries loss"
            seen["other"] += 1
    assert seen["assistant"] >= 2 and seen["other"] >= 3

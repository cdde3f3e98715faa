"""load_replica on an adapter published by the real training stage (not a hand-made one)."""

from __future__ import annotations

from train_fixtures import write_config, write_prepared

from replica.agents.replica import load_replica, recorded_template_hash
from replica.artifacts import read_manifest, sha256_file
from replica.config import load_config
from replica.templates import template_hash
from replica.train.context import build_context
from replica.train.sft import train_sft


def test_a_trained_replica_loads_with_its_recorded_template_and_answers(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 4}})
    config = load_config(write_config(tmp_path, tiny_base_dir, prepared, sft={"max_steps": 2}))
    published = train_sft(build_context(config), "alice")

    replica = load_replica(config.run_dir, "alice", device="cpu")

    assert replica.path == published and replica.stage == "sft"
    manifest = read_manifest(published)
    assert template_hash(replica.tokenizer) == recorded_template_hash(manifest) is not None
    assert replica.adapter_hash == sha256_file(published / "adapter_model.safetensors")
    reply = replica.complete([{"role": "user", "content": "Where is my order O-4821?"}], max_new_tokens=6)
    assert reply.message["role"] == "assistant" and reply.completion_tokens >= 1

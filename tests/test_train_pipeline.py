"""The whole `replica train` path: contributors, skips, registry, CLI, and PEFT-only loading."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import torch
from peft import PeftModel
from train_fixtures import write_config, write_prepared
from transformers import AutoModelForCausalLM, AutoTokenizer

from replica.artifacts import final_stage, read_manifest, replica_dir
from replica.config import load_config
from replica.train.context import build_context
from replica.train.pipeline import run_training
from replica.train.publish import publish_stage
from replica.train.registry import list_replicas
from replica.train.sft import build_sft_trainer


def test_pipeline_trains_each_contributor_and_skips_dpo_without_pairs(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 8, "pref": 8}, "bob": {"sft": 4}})
    config_path = write_config(tmp_path, tiny_base_dir, prepared, dpo={"loss_type": "ipo"})
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "replica", "train", str(config_path), "--set", "sft.max_steps=2"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no preference pairs" in done.stderr

    run_dir = tmp_path / "runs" / "t"
    assert (run_dir / "config.yaml").exists() and "max_steps: 2" in (run_dir / "config.yaml").read_text()
    assert final_stage(run_dir, "alice") == "dpo" and final_stage(run_dir, "bob") == "sft"
    assert not replica_dir(run_dir, "bob", "dpo").exists()
    assert read_manifest(replica_dir(run_dir, "alice", "dpo"))["hyperparameters"]["dpo"]["loss_type"] == "ipo"
    assert read_manifest(replica_dir(run_dir, "alice", "sft"))["metrics"]["global_step"] == 2.0
    with sqlite3.connect(run_dir / "registry.sqlite") as db:
        rows = db.execute("SELECT contributor, stage, is_final FROM replicas ORDER BY 1, 2").fetchall()
    assert rows == [("alice", "dpo", 1), ("alice", "sft", 0), ("bob", "sft", 1)]

    # A rerun finds everything published and trains nothing.
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already published") == 3
    listed = subprocess.run(
        [sys.executable, "-m", "replica", "list", str(run_dir)], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0 and "alice" in listed.stdout and "dpo*" in listed.stdout


def test_published_adapter_loads_with_plain_peft_and_gives_the_trained_logits(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"carol": {"sft": 6}})
    # fp32: under bf16 autocast accelerate wraps the trained model's forward in it, and the plain
    # PEFT model below runs fp32; compared bit for bit, the two must run the same precision.
    config = load_config(
        write_config(
            tmp_path, tiny_base_dir, prepared, sft={"learning_rate": 2e-2}, model={"dtype": "float32"}
        )
    )
    ctx = build_context(config)
    trainer, record = build_sft_trainer(ctx, "carol")
    trainer.train()
    ids = ctx.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Refund order O-12"}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    trained = trainer.model.eval()
    with torch.no_grad():
        live = trained(input_ids=ids).logits
        with trained.disable_adapter():
            bare = trained(input_ids=ids).logits
    path = publish_stage(ctx, trainer, record)

    # No replica code from here on: transformers + peft only, as a serving stack would do it.
    base = AutoModelForCausalLM.from_pretrained(str(tiny_base_dir))
    loaded = PeftModel.from_pretrained(base, str(path)).eval()
    with torch.no_grad():
        logits = loaded(input_ids=ids).logits
    assert torch.allclose(logits, live, atol=1e-5)
    assert not torch.allclose(logits, bare, atol=1e-3), "the adapter changed nothing"
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    assert tokenizer.chat_template == ctx.tokenizer.chat_template
    assert json.loads((path / "adapter_config.json").read_text())["bias"] == "none"


def test_list_reports_interrupted_publish(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "replicas" / "dave" / ".tmp-sft-123").mkdir(parents=True)
    rows = list_replicas(run_dir)
    assert [(r["contributor"], r["status"]) for r in rows] == [("dave", "interrupted")]
    with sqlite3.connect(run_dir / "registry.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM replicas").fetchone() == (0,)


def test_a_contributor_whose_consent_refuses_training_gets_no_replica(tmp_path, tiny_base_dir):
    refused = {"train": "not_allowed"}
    prepared = write_prepared(tmp_path / "prepared", {"frank": {"sft": 4}}, consent={"frank": refused})
    config = load_config(write_config(tmp_path, tiny_base_dir, prepared))
    summary = run_training(config)
    assert [(o.contributor, o.status) for o in summary.outcomes] == [("frank", "skipped")]
    assert "not_allowed" in summary.outcomes[0].detail
    assert final_stage(config.run_dir, "frank") is None
    assert not (config.run_dir / "replicas" / "frank").exists()

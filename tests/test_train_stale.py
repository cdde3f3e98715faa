"""A rerun of `replica train` with other settings never keeps an adapter those settings did not train."""

from __future__ import annotations

import json

import pytest
from train_fixtures import write_config, write_prepared

from replica.artifacts import read_manifest, replica_dir
from replica.config import load_config
from replica.errors import UserError
from replica.train.context import build_context
from replica.train.pipeline import run_training
from replica.train.stale import SETTINGS_NAME, changes, stage_settings


def statuses(summary) -> list[tuple[str, str]]:
    return [(o.stage, o.status) for o in summary.outcomes]


def test_changed_settings_refuse_the_published_stage_until_retrain(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 6, "pref": 6}})
    config_path = write_config(tmp_path, tiny_base_dir, prepared)
    steps = ["sft.max_steps=1", "dpo.max_steps=1"]
    assert statuses(run_training(load_config(config_path, steps))) == [("sft", "trained"), ("dpo", "trained")]
    run_dir = load_config(config_path).run_dir

    # Bookkeeping keys change no weight: both stages are kept.
    kept = run_training(load_config(config_path, [*steps, "sft.logging_steps=7", "dpo.eval_heldout=false"]))
    assert statuses(kept) == [("sft", "already published"), ("dpo", "already published")]

    # Another DPO rate: DPO is stale (SFT is not), named with both values.
    with pytest.raises(UserError) as refused:
        run_training(load_config(config_path, [*steps, "dpo.learning_rate=1e-5"]), stage="dpo")
    message = str(refused.value)
    assert "dpo.learning_rate" in message and "1e-05" in message and "--retrain" in message
    assert str(replica_dir(run_dir, "alice", "dpo")) in message
    replaced = run_training(load_config(config_path, [*steps, "dpo.learning_rate=1e-5"]), retrain=True)
    assert statuses(replaced) == [("sft", "already published"), ("dpo", "trained")]
    assert (
        read_manifest(replica_dir(run_dir, "alice", "dpo"))["hyperparameters"]["dpo"]["learning_rate"] == 1e-5
    )

    # Retraining SFT makes the DPO adapter trained from the old one stale through its parent.
    new_sft = [*steps, "dpo.learning_rate=1e-5", "lora.r=8"]
    with pytest.raises(UserError, match=r"lora\.r: 4 -> 8"):
        run_training(load_config(config_path, new_sft))
    run_training(load_config(config_path, new_sft), stage="sft", retrain=True)
    with pytest.raises(UserError, match="parent"):
        run_training(load_config(config_path, new_sft), stage="dpo")


def test_checkpoints_of_other_settings_are_refused_then_dropped_under_retrain(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"bob": {"sft": 6}})
    config = load_config(write_config(tmp_path, tiny_base_dir, prepared), ["sft.max_steps=1"])
    ctx = build_context(config)
    folder = ctx.checkpoint_dir("bob", "sft")
    folder.mkdir(parents=True)
    recorded = stage_settings(ctx, "bob", "sft")
    recorded["sft"]["learning_rate"] = 0.5
    (folder / SETTINGS_NAME).write_text(json.dumps(recorded))
    (folder / "checkpoint-1").mkdir()
    with pytest.raises(UserError, match=r"holds checkpoints of other settings: sft\.learning_rate: 0\.5 ->"):
        run_training(config)
    assert (folder / "checkpoint-1").is_dir()  # refused: nothing was deleted
    assert statuses(run_training(config, retrain=True)) == [("sft", "trained"), ("dpo", "skipped")]
    assert read_manifest(replica_dir(config.run_dir, "bob", "sft"))["resumed_from"] is None


def test_a_key_an_older_manifest_lacks_counts_as_its_default(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"carol": {"sft": 4}})
    ctx = build_context(load_config(write_config(tmp_path, tiny_base_dir, prepared)))
    wanted = stage_settings(ctx, "carol", "sft")
    older = json.loads(json.dumps(wanted))
    del older["sft"]["padding_free"]  # a key added after this adapter was trained
    assert changes(older, wanted, ctx) == []
    older["records"] = "0" * 16
    assert changes(older, wanted, ctx) == [f"records: '{'0' * 12}' -> '{wanted['records'][:12]}'"]

"""Crash safety: SIGKILL a real training run mid-stage, rerun the same command, get the same replica."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file
from train_fixtures import write_config, write_prepared

from replica.artifacts import is_published, read_manifest, replica_dir

ENV = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}


def _command(config_path, run_name):
    return [
        sys.executable, "-m", "replica", "train", str(config_path),
        "--set", f"run_name={run_name}", "--set", "sft.max_steps=12", "--set", "sft.save_steps=3",
    ]  # fmt: skip


def _files(path):
    return sorted(p.name for p in path.iterdir())


# ~60 s of CPU (three `replica train` processes): over the default tier's per-test bound.
@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_resumes_to_the_same_artifacts(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 8, "pref": 4}})
    config_path = write_config(tmp_path, tiny_base_dir, prepared)
    runs = tmp_path / "runs"

    # Kill the run as soon as a checkpoint exists: SFT is mid-way, nothing is published.
    process = subprocess.Popen(_command(config_path, "killed"), env=ENV, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoints = runs / "killed" / "checkpoints" / "alice" / "sft"
    deadline = time.monotonic() + 240
    while not (checkpoints / "checkpoint-3" / "trainer_state.json").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not is_published(replica_dir(runs / "killed", "alice", "sft"))
    assert not replica_dir(runs / "killed", "alice", "sft").exists()

    resumed = subprocess.run(
        _command(config_path, "killed"), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    clean = subprocess.run(
        _command(config_path, "clean"), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert clean.returncode == 0, clean.stderr[-3000:]

    for stage in ("sft", "dpo"):
        a, b = replica_dir(runs / "killed", "alice", stage), replica_dir(runs / "clean", "alice", stage)
        assert _files(a) == _files(b)
        wa, wb = (
            load_file(str(a / "adapter_model.safetensors")),
            load_file(str(b / "adapter_model.safetensors")),
        )
        assert wa.keys() == wb.keys()
        # Resuming restores optimizer, scheduler, RNG and the epoch's batch order (seeded per
        # epoch): the adapters agree to float noise, not merely "roughly".
        for name in wa:
            drift = (wa[name] - wb[name]).norm() / wb[name].norm().clamp(min=1e-8)
            assert drift < 1e-4, (name, float(drift))
        ma, mb = read_manifest(a), read_manifest(b)
        assert ma["records"] == mb["records"] and ma["hyperparameters"] == mb["hyperparameters"]
        assert abs(ma["metrics"]["eval_loss"] - mb["metrics"]["eval_loss"]) < 1e-4
        assert ma["metrics"]["global_step"] == mb["metrics"]["global_step"]
    assert read_manifest(replica_dir(runs / "killed", "alice", "sft"))["resumed_from"].startswith(
        "checkpoint-"
    )
    assert not (runs / "killed" / "checkpoints" / "alice" / "sft").exists()

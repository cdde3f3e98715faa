"""`accelerate launch --num_processes 2` on CPU (gloo): both ranks train, rank 0 alone writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from train_fixtures import write_config, write_prepared

from replica.artifacts import read_manifest, replica_dir


@pytest.mark.distributed  # in the default tier too: only `slow` and `gpu` are deselected
def test_two_process_cpu_run_trains_on_both_ranks_and_publishes_once(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 8, "pref": 8}})
    config_path = write_config(tmp_path, tiny_base_dir, prepared)
    accelerate = Path(sys.executable).with_name("accelerate")
    # No GPU visible: torch.distributed.run starts 2 CPU processes and the Trainer uses gloo.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
        "-m", "replica", "train", str(config_path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    for stage in ("sft", "dpo"):
        for rank in (0, 1):
            assert f"rank {rank}/2 trained alice/{stage}" in log
        manifest = read_manifest(replica_dir(tmp_path / "runs" / "t", "alice", stage))
        assert manifest["device"]["world_size"] == 2
    # Publishing (and its log line) happens on rank 0 only: exactly once per stage.
    assert len(re.findall(r"INFO\s+published ", log)) == 2, log[-4000:]
    contributor_dir = tmp_path / "runs" / "t" / "replicas" / "alice"
    assert sorted(p.name for p in contributor_dir.iterdir()) == ["dpo", "sft"]  # no stray temporaries
    assert (tmp_path / "runs" / "t" / "registry.sqlite").exists()
    # A clean exit: the process group was destroyed, nothing aborted at interpreter shutdown.
    for bad in ("Abort", "terminate called", "ProcessGroup", "destroy_process_group() was not called"):
        assert bad not in log, bad

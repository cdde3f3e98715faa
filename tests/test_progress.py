"""What a user sees: plain progress lines when output is not a terminal, quiet libraries unless -v."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from train_fixtures import write_config, write_prepared

from replica.config import load_config
from replica.eval.progress import EpisodeProgress
from replica.progress import StageProgress
from replica.train.context import build_context
from replica.train.sft import train_sft


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_every_period_with_count_percent_and_time_left():
    stream, clock = io.StringIO(), Clock()
    with StageProgress("train alice/sft", 40, "step", stream=stream, every_s=10, clock=clock) as bar:
        for step in range(1, 41):
            clock.now += 1.0  # one step a second
            bar.update(step, f"loss {2 / step:.3f}")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "train alice/sft: step 1/40 (2%)  loss 2.000  elapsed 0:00:01  left 0:00:39"
    assert lines[1] == "train alice/sft: step 11/40 (27%)  loss 0.182  elapsed 0:00:11  left 0:00:29"
    assert lines[-1] == "train alice/sft: step 40/40 (100%)  loss 0.050  elapsed 0:00:40"
    assert len(lines) == 5  # steps 1, 11, 21, 31 and the last: one line per 10 s, not per step
    stalled = io.StringIO()
    bar = StageProgress("eval", 9, "episode", stream=stalled, every_s=10, clock=clock)
    for _ in range(5):
        clock.now += 10
        bar.update(3)  # no progress for 50 s: one line, not five identical ones
    assert len(stalled.getvalue().splitlines()) == 1


def test_a_resumed_stage_estimates_time_left_from_its_own_steps():
    stream, clock = io.StringIO(), Clock()
    bar = StageProgress("train bob/dpo", 100, stream=stream, every_s=0, clock=clock, start=90)
    clock.now += 5  # resumed at step 90: 5 steps in 5 s
    bar.update(95)
    assert bar.line().endswith("left 0:00:05")


def test_time_left_follows_the_recent_pace_after_a_pause():
    """A run suspended for an hour (Ctrl-Z, a machine busy elsewhere) or slow to set up does not
    keep promising days: within ten steps the estimate is the pace of the steps being made now."""
    stream, clock = io.StringIO(), Clock()
    bar = StageProgress("train alice/sft", 40, stream=stream, every_s=0, clock=clock)
    clock.now += 3600  # loading, or a pause, before the first step ends
    bar.update(1)
    assert bar.line().endswith("left 1 day, 15:00:00")  # one sample: the only pace known
    for step in range(2, 21):
        clock.now += 2.0  # then a step every 2 s
        bar.update(step)
    assert bar.line().endswith("left 0:00:40")


def test_updates_that_finish_nothing_do_not_crowd_out_the_pace():
    """Evaluation reports after every generation batch, most of which finish no episode: the
    estimate stays the pace of the episodes that did finish, and stays shown."""
    stream, clock = io.StringIO(), Clock()
    bar = StageProgress("eval", 30, "episode", stream=stream, every_s=0, clock=clock)
    for episode in range(1, 11):
        for _ in range(20):  # twenty batches a second, an episode done every 4 s
            clock.now += 0.2
            bar.update(episode - 1)
        bar.update(episode)
    assert bar.line().endswith("left 0:01:20")
    assert bar.time_left() == "left 0:01:20"


def test_evaluation_shows_episodes_done_per_stage():
    from replica.agents.loop import Episode
    from replica.eval.rollout import Target

    episodes = [
        Episode(messages=[], meta={"target": Target("alice", stage, None)})
        for stage in ("base", "sft", "sft")
    ]
    stream = io.StringIO()
    with EpisodeProgress(episodes, stream=stream, every_s=0) as progress:
        episodes[1].done = True
        progress.update(episodes)  # what the agent loop's on_progress hook does after a batch
        episodes[0].done = episodes[2].done = True
    lines = stream.getvalue().splitlines()
    assert any("episode 1/3 (33%)  base 0/1  sft 1/2" in line for line in lines)
    assert lines[-1].startswith("eval: episode 3/3 (100%)  base 1/1  sft 2/2  elapsed")


def test_training_prints_progress_lines_and_no_trainer_dicts_unless_verbose(
    tmp_path, tiny_base_dir, capsys, monkeypatch
):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 8}})
    (tmp_path / "quiet").mkdir()
    (tmp_path / "verbose").mkdir()
    config = load_config(write_config(tmp_path / "quiet", tiny_base_dir, prepared))
    monkeypatch.setenv("REPLICA_VERBOSE", "0")
    train_sft(build_context(config), "alice")
    quiet = capsys.readouterr()
    progress = [line for line in quiet.err.splitlines() if line.startswith("train alice/sft: step")]
    assert progress[0].startswith("train alice/sft: step 1/4 (25%)") and "tok/s" in progress[0]
    assert progress[-1].startswith("train alice/sft: step 4/4 (100%)  loss ") and "tok/s" in progress[-1]
    assert len(progress) == 2  # the first step and the last: plain lines come every 30 s
    assert "{'loss'" not in quiet.out

    monkeypatch.setenv("REPLICA_VERBOSE", "1")
    config = load_config(write_config(tmp_path / "verbose", tiny_base_dir, prepared))
    train_sft(build_context(config), "alice")
    assert "{'loss'" in capsys.readouterr().out  # -v: the Trainer's own log dicts are back


LIBRARY_NOISE = """
import warnings, sys
import replica.verbosity as v
v.set_verbose(sys.argv[1] == "1")
import datasets
v.apply_to_libraries()
warnings.warn("a library FutureWarning", FutureWarning)
datasets.Dataset.from_dict({"x": list(range(3))}).map(lambda r: r, desc="Tokenizing train dataset")
"""


def test_library_warnings_and_map_bars_are_off_by_default_and_back_with_verbose():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("REPLICA_VERBOSE", None)
    runs = {
        flag: subprocess.run(
            [sys.executable, "-c", LIBRARY_NOISE, flag], capture_output=True, text=True, env=env, timeout=120
        )
        for flag in ("0", "1")
    }
    assert runs["0"].returncode == runs["1"].returncode == 0, runs["0"].stderr
    assert "FutureWarning" not in runs["0"].stderr and "Tokenizing train dataset" not in runs["0"].stderr
    assert "FutureWarning: a library FutureWarning" in runs["1"].stderr
    assert "Tokenizing train dataset" in runs["1"].stderr

"""`replica status RUN`: prepared, published / resumable / missing stages, the last eval, the files."""

from __future__ import annotations

import json

import yaml
from train_fixtures import write_config, write_prepared
from typer.testing import CliRunner

from replica.cli import app
from replica.config import load_config
from replica.status import run_status
from replica.train.context import build_context
from replica.train.sft import train_sft


def test_status_shows_each_stage_and_the_last_eval(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 8, "pref": 8}, "bob": {"sft": 4}})
    config = load_config(write_config(tmp_path, tiny_base_dir, prepared))
    run = config.run_dir
    train_sft(build_context(config), "alice")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"prepared_dir": str(prepared)}}))
    checkpoint = run / "checkpoints" / "bob" / "sft" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")

    status = run_status(run)
    assert status["prepared_dir"] == prepared
    states = {c: {s: v.state for s, v in stages.items()} for c, stages in status["stages"].items()}
    assert states == {
        "alice": {"sft": "published", "dpo": "missing"},
        "bob": {"sft": "resumable", "dpo": "missing"},
    }
    assert status["stages"]["alice"]["sft"].detail.startswith("4 steps, loss ")

    result = CliRunner().invoke(app, ["status", str(run)])
    assert result.exit_code == 0, result.output
    assert "resumable (checkpoint-2)" in result.output and "goes on from the last whole" in result.output
    assert "eval: not run yet" in result.output and "training curves:" in result.output

    (run / "eval").mkdir()
    report = {
        "run_name": "t",
        "settings": {"k": 1},
        "results": [{"contributor": "alice", "stage": "sft", "success": 0.75, "n_tasks": 4}],
    }
    (run / "eval" / "report.json").write_text(json.dumps(report))
    (run / "eval" / "report.md").write_text("# Evaluation: t\n")
    result = CliRunner().invoke(app, ["status", str(run)])
    assert "replica eval: t" in result.output and "0.75" in result.output
    assert f"eval report:     {run / 'eval' / 'report.md'}" in result.output


def test_status_of_a_missing_run_is_a_one_line_error(tmp_path):
    import pytest

    from replica.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["status", str(tmp_path / "nope")])
    assert exit_info.value.code == 2

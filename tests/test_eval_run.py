"""`replica eval` end to end on a prepared directory and published adapters built here:
the report files exist, hold the numbers the metrics compute, and a rerun gives the same bytes."""

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset, Features, Json, List, Value
from test_agents_loop import AGENT_DEMOS, agent_base
from test_sandbox import LedgerEnv

from replica.cli import main
from replica.config import load_config
from replica.eval.run import run_eval

_S = Value("string")
FEATURES = {
    "tasks/heldout": Features(
        {
            "id": _S,
            "contributor_id": _S,
            "instruction": _S,
            "system": _S,
            "tools": Json(),
            "env": _S,
            "initial_state": Json(),
            "check": Json(),
            "reference_messages": List(Json()),
            "tags": List(_S),
        }
    ),
    "sft/heldout": Features(
        {
            "id": _S,
            "contributor_id": _S,
            "task_id": _S,
            "messages": List(Json()),
            "tools": Json(),
            "record_hash": _S,
        }
    ),
    "pref/heldout": Features(
        {
            "id": _S,
            "contributor_id": _S,
            "task_id": _S,
            "prompt": List(Json()),
            "chosen": List(Json()),
            "rejected": List(Json()),
            "tools": Json(),
            "source": _S,
            "record_hash": _S,
        }
    ),
}
TOOLS = LedgerEnv().tool_schemas()
PUT, FREEZE = AGENT_DEMOS[0], AGENT_DEMOS[1]


def _task(contributor: str, task_id: str, demo: list[dict], check: dict) -> dict:
    return {
        "id": task_id,
        "contributor_id": contributor,
        "instruction": demo[0]["content"],
        "system": None,
        "tools": TOOLS,
        "env": "test_ledger",
        "initial_state": None,
        "check": check,
        "reference_messages": demo,
        "tags": [],
    }


def _demo(contributor: str, task_id: str, demo: list[dict]) -> dict:
    return {
        "id": f"{contributor}-{task_id}",
        "contributor_id": contributor,
        "task_id": task_id,
        "messages": demo,
        "tools": TOOLS,
        "record_hash": task_id,
    }


def _pair(contributor: str, demo: list[dict]) -> dict:
    wrong = [{"role": "assistant", "content": "I cannot help with that."}]
    return {
        "id": f"{contributor}-pair",
        "contributor_id": contributor,
        "task_id": "",
        "prompt": demo[:1],
        "chosen": demo[1:2],
        "rejected": wrong,
        "tools": TOOLS,
        "source": "pairwise",
        "record_hash": "p",
    }


def _write_prepared(prepared: Path) -> None:
    splits = {
        "ann": {
            "tasks/heldout": [
                _task("ann", "put-a", PUT, {"answer_contains": ["15"]}),
                _task("ann", "freeze-b", FREEZE, {"state": {"accounts.B.status": "frozen"}}),
            ],
            "sft/heldout": [_demo("ann", "put-a", PUT), _demo("ann", "freeze-b", FREEZE)],
            "pref/heldout": [_pair("ann", PUT), _pair("ann", FREEZE)],
        },
        "bob": {
            "tasks/heldout": [_task("bob", "freeze-b2", FREEZE, {"answer_contains": ["frozen"]})],
            "sft/heldout": [_demo("bob", "freeze-b2", FREEZE)],
            "pref/heldout": [],
        },
    }
    for contributor, by_split in splits.items():
        for split, rows in by_split.items():
            if rows:
                Dataset.from_list(rows, features=FEATURES[split]).save_to_disk(
                    str(prepared / contributor / split)
                )


def _publish_adapters(base_dir: Path, run_dir: Path) -> None:
    """Small random LoRA adapters at <run_dir>/replicas/<c>/<stage>/, as training publishes them."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    for seed, (contributor, stage) in enumerate([("ann", "sft"), ("ann", "dpo"), ("bob", "sft")]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        lora = LoraConfig(r=2, lora_alpha=1, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(model, lora).save_pretrained(run_dir / "replicas" / contributor / stage)


@pytest.fixture(scope="module")
def eval_run(tiny_base_dir, tmp_path_factory):
    base_dir = agent_base(tiny_base_dir)
    root = tmp_path_factory.mktemp("eval_run")
    config_path = root / "eval.yaml"
    raw = {
        "run_name": "evaltest",
        "output_dir": str(root / "runs"),
        "model": {"name_or_path": str(base_dir), "device": "cpu"},
        "eval": {"max_new_tokens": 64, "max_turns": 2, "k": 2, "batch_size": 8, "cross": True},
    }
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    _write_prepared(config.prepared_dir)
    _publish_adapters(base_dir, config.run_dir)
    report = run_eval(config, quiet=True)
    return config, report, config_path


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_files_hold_the_numbers_the_metrics_computed(eval_run):
    config, report, _ = eval_run
    out = config.run_dir / "eval"
    on_disk = json.loads((out / "report.json").read_text())
    entries = {(e["contributor"], e["stage"]): e for e in on_disk["results"]}
    assert set(entries) == {("ann", "base"), ("ann", "sft"), ("ann", "dpo"), ("bob", "base"), ("bob", "sft")}
    rows = _csv_rows(out / "results.csv")
    # k=2 samples per task and target; cross: ann's dpo on bob's task, bob's sft on ann's two tasks.
    assert len(rows) == on_disk["episodes"] == 2 * (3 * 2 + 2 * 1) + 2 * (1 + 2)
    for (contributor, stage), entry in entries.items():
        mine = [r for r in rows if r["contributor"] == r["replica"] == contributor and r["stage"] == stage]
        assert entry["episodes"] == len(mine)
        assert entry["success"] == pytest.approx(sum(float(r["reward"]) for r in mine) / len(mine))
        assert entry["success_ci95"][0] <= entry["success"] <= entry["success_ci95"][1]
        assert entry["nll"] > 0 and entry["perplexity"] > 1
    # The agent model memorized these tasks: the base stage solves them, checked on the end state.
    assert entries[("ann", "base")]["success"] == 1.0 and entries[("ann", "base")]["pass^2"] == 1.0
    assert entries[("ann", "base")]["tool_call_accuracy"] == 1.0
    assert entries[("ann", "base")]["step_agreement"] == 1.0
    # Preference accuracy: DPO's reference is ann's SFT adapter, SFT's is the base.
    assert entries[("ann", "dpo")]["pref_reference"] == "ann--sft"
    assert entries[("ann", "sft")]["pref_reference"] == "base" and entries[("ann", "sft")]["pref_pairs"] == 2
    assert "pref_accuracy" not in entries[("bob", "sft")]  # bob has no held-out pairs
    assert report["results"][0]["success"] == on_disk["results"][0]["success"]


def test_fidelity_and_provenance_are_in_the_report(eval_run):
    config, report, _ = eval_run
    fidelity = report["fidelity"]
    assert fidelity["replicas"] == ["ann", "bob", "base"]
    assert fidelity["stages"] == {"ann": "ann--dpo", "bob": "bob--sft"}
    assert set(fidelity["matrix"]) == {"ann", "bob"} and fidelity["attribution"]["contributors"] == 2
    assert set(report["adapters"]) == {"ann/sft", "ann/dpo", "bob/sft"}
    assert all(len(a["sha256"]) == 64 for a in report["adapters"].values())
    assert report["config_hash"] and report["settings"]["k"] == 2
    out = config.run_dir / "eval"
    markdown = (out / "report.md").read_text()
    assert "| ann | base | 1.000 |" in markdown and "Attribution accuracy" in markdown
    cross = report["cross_success"]
    assert cross["replicas"] == ["ann", "bob"] and cross["stages"] == {"ann": "dpo", "bob": "sft"}
    rows = _csv_rows(out / "results.csv")
    bob_on_ann = [float(r["reward"]) for r in rows if r["contributor"] == "ann" and r["replica"] == "bob"]
    assert len(bob_on_ann) == 4 and cross["matrix"]["ann"]["bob"] == sum(bob_on_ann) / 4
    own = next(e for e in report["results"] if (e["contributor"], e["stage"]) == ("ann", "dpo"))
    assert cross["matrix"]["ann"]["ann"] == own["success"]
    assert "Success on each contributor's tasks" in markdown
    # A run made with --set says so where its config is named.
    assert report["config_overrides"] == [] and "--set" not in markdown
    from replica.eval.report import render_markdown

    overridden = render_markdown(report | {"config_overrides": ["sft.epochs=3"]})
    assert f"- config: `{report['config_source']} --set sft.epochs=3`" in overridden
    for name in ("success.png", "fidelity.png", "cross_success.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_command_twice_gives_the_same_report(eval_run):
    config, _, _ = eval_run
    out = config.run_dir / "eval"
    files = ("report.json", "results.csv", "report.md", "success.png", "fidelity.png")
    run_eval(config, "bob", ["base", "sft"], quiet=True)  # one contributor keeps the rerun cheap
    first = {name: (out / name).read_bytes() for name in files}
    run_eval(config, "bob", ["base", "sft"], quiet=True)
    assert {name: (out / name).read_bytes() for name in files} == first


def test_the_rollout_caches_change_no_result(eval_run, monkeypatch):
    """`eval.turn_cache` / `eval.prefix_cache` reach the agent loop, and turning them off gives the
    same episodes, so the same results.csv, byte for byte."""
    import replica.eval.run as run_module

    config, _, _ = eval_run
    out = config.run_dir / "eval"
    used = []
    roll_out = run_module.roll_out
    monkeypatch.setattr(
        run_module,
        "roll_out",
        lambda m, t, e, settings, b: used.append(settings) or roll_out(m, t, e, settings, b),
    )
    run_eval(config, "bob", ["base", "sft"], quiet=True)
    cached = (out / "results.csv").read_bytes()
    off = config.eval.model_copy(update={"turn_cache": False, "prefix_cache": False})
    run_eval(config.model_copy(update={"eval": off}), "bob", ["base", "sft"], quiet=True)
    assert [(s.turn_cache, s.prefix_cache) for s in used] == [(True, True), (False, False)]
    assert (out / "results.csv").read_bytes() == cached


def test_cli_eval_filters_and_reports_user_mistakes(eval_run, capsys):
    config, _, config_path = eval_run
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(config_path), "--contributor", "nobody"])
    assert exit_info.value.code == 2
    assert "no held-out data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(config_path), "--stages", "base,rlhf"])
    assert exit_info.value.code == 2
    main(["eval", str(config_path), "--contributor", "bob", "--stages", "base,sft"])
    report = json.loads((config.run_dir / "eval" / "report.json").read_text())
    assert [(e["contributor"], e["stage"]) for e in report["results"]] == [("bob", "base"), ("bob", "sft")]
    assert "bob" in capsys.readouterr().out  # the leaderboard was printed

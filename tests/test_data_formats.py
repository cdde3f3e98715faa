"""Importers on real samples (tests/fixtures/external, copied from shared/data/external) and fixtures."""

import json
from pathlib import Path

import pytest
from datasets import Dataset

from replica.config import InputConfig
from replica.data.validate import Registry, Validator

EXTERNAL = Path(__file__).parent / "fixtures" / "external"
DATA = Path(__file__).parent / "fixtures" / "data"


def _import(path: Path, fmt: str = "auto"):
    validator = Validator(Registry(), check_contributors=False)
    outcomes = list(validator.outcomes([InputConfig(path=str(path), format=fmt, contributor="alice")]))
    return validator, outcomes


def _accepted(outcomes):
    return [o.record for o in outcomes if o.status == "accepted"]


def test_openai_cookbook_drone_tool_calls_and_double_encoded_arguments():
    validator, outcomes = _import(EXTERNAL / "openai-cookbook" / "drone_training_first9.jsonl")
    assert validator.formats[str(EXTERNAL / "openai-cookbook" / "drone_training_first9.jsonl")] == "openai"
    rejected = [o for o in outcomes if o.status == "rejected"]
    # Lines 3-8 encode `arguments` twice (see SOURCE.md): rejected with the reason, never guessed.
    assert [o.item.line for o in rejected] == [3, 4, 5, 6, 7, 8]
    assert all(o.path == "messages[2].tool_calls[0].function.arguments" for o in rejected)
    assert all("must decode to a JSON object, found str" in o.reason for o in rejected)
    first = _accepted(outcomes)[0]
    raw = json.loads(
        (EXTERNAL / "openai-cookbook" / "drone_training_first9.jsonl").read_text().splitlines()[0]
    )
    recorded = json.loads(raw["messages"][2]["tool_calls"][0]["function"]["arguments"])
    assert first.messages[2].tool_calls[0].function.arguments == recorded
    assert len(first.tools) == 16 and first.contributor_id == "alice"


def test_tau_bench_trajectories_keep_successful_runs_only():
    _, outcomes = _import(EXTERNAL / "tau-bench" / "airline_historical_trajectories_gpt-4o_sample5.json")
    rejected = [o for o in outcomes if o.status == "rejected"]
    assert len(rejected) == 3 and all("failed its task (reward 0.0)" in o.reason for o in rejected)
    demos = _accepted(outcomes)
    assert len(demos) == 2
    for demo in demos:
        assert demo.task_id.startswith("tau-") and demo.messages[-1].role == "assistant"
        assert "###STOP###" not in (demo.messages[-1].content or "")
        calls = [c for m in demo.messages for c in m.tool_calls or []]
        assert calls and all(isinstance(c.function.arguments, dict) for c in calls)


def test_glaive_sharegpt_function_calls_and_observations():
    path = EXTERNAL / "llama-factory" / "glaive_toolcall_en_demo_first50.json"
    validator, outcomes = _import(path)
    assert validator.formats[str(path)] == "sharegpt"
    assert {o.status for o in outcomes} <= {"accepted", "duplicate"} and len(outcomes) == 50
    source = json.loads(path.read_text())
    index = next(
        i for i, row in enumerate(source) if any(t["from"] == "function_call" for t in row["conversations"])
    )
    demo = outcomes[index].record
    turn = next(t for t in source[index]["conversations"] if t["from"] == "function_call")
    call_message = next(m for m in demo.messages if m.tool_calls)
    assert call_message.tool_calls[0].function.model_dump() == json.loads(turn["value"])
    result = demo.messages[demo.messages.index(call_message) + 1]
    assert result.role == "tool" and result.tool_call_id == call_message.tool_calls[0].id
    assert (
        demo.tools[0].type == "function" and demo.tools[0].function == json.loads(source[index]["tools"])[0]
    )
    lines = path.read_text().splitlines()  # every item's line is where its object opens
    assert outcomes[0].item.line == 2 and all(lines[o.item.line - 1] == "  {" for o in outcomes)


def test_llamafactory_preference_rows():
    path = EXTERNAL / "llama-factory" / "dpo_en_demo_first50.json"
    validator, outcomes = _import(path)
    assert validator.formats[str(path)] == "llamafactory_pref"
    pairs = _accepted(outcomes)
    assert len(pairs) == 50
    source = json.loads(path.read_text())
    assert (
        sum(p.prompt[0].role == "system" for p in pairs)
        == sum(r["conversations"][0]["from"] == "system" for r in source)
        == 16
    )
    assert pairs[0].chosen[0].content == source[0]["chosen"]["value"]
    assert pairs[0].rejected[0].content == source[0]["rejected"]["value"]
    assert all(p.prompt[-1].role == "user" for p in pairs)


def test_hh_rlhf_transcripts():
    validator, outcomes = _import(EXTERNAL / "hh-rlhf" / "harmless-base_test_first50.jsonl")
    assert set(validator.formats.values()) == {"hh"}
    row = json.loads((EXTERNAL / "hh-rlhf" / "harmless-base_test_first50.jsonl").read_text().splitlines()[0])
    first = outcomes[0].record
    assert first.prompt[0].role == "user" and first.prompt[-1].role == "user"
    assert row["chosen"].endswith(first.chosen[0].content) and row["rejected"].endswith(
        first.rejected[0].content
    )
    assert [o.status for o in outcomes] == ["accepted"] * 50
    # Multi-turn histories become alternating user/assistant prompts ending with the user.
    longest = max((o.record for o in outcomes), key=lambda r: len(r.prompt))
    assert len(longest.prompt) == 9
    assert [m.role for m in longest.prompt] == ["user", "assistant"] * 4 + ["user"]


def test_ultrafeedback_ratings_from_the_published_layout():
    _, outcomes = _import(DATA / "ultrafeedback_sample.jsonl")
    ratings = _accepted(outcomes)
    assert len(ratings) == 5  # one Rating per completion
    falcon = ratings[2]
    assert falcon.aspects == {"helpfulness": 4, "instruction_following": 4, "truthfulness": 4}
    assert falcon.source["not_rated"] == ["honesty"] and falcon.source["overall_score"] == 8.0
    assert ratings[1].value == pytest.approx((2 + 3 + 2 + 2) / 4)
    assert ratings[0].task_id == ratings[1].task_id != ratings[3].task_id


def test_trl_preference_rows_explicit_and_implicit():
    _, outcomes = _import(DATA / "trl_pref_sample.jsonl")
    pairs = _accepted(outcomes)
    assert len(pairs) == 4
    assert pairs[1].prompt[0].content == "What is 2+2?" and pairs[1].chosen[0].content == "4."
    assert (
        pairs[2].prompt[0].content == "The capital of France is" and pairs[2].rejected[0].content == " Lyon."
    )
    assert pairs[3].prompt[0].content == "The sky is" and pairs[3].chosen[0].content == " blue."


def test_local_hf_datasets_on_disk_and_parquet(tmp_path):
    rows = [
        json.loads(line)
        for line in (EXTERNAL / "openai-cookbook" / "drone_training_first9.jsonl")
        .read_text()
        .splitlines()[:2]
    ]
    table = Dataset.from_list([{"messages": json.dumps(r["messages"]), "note": "x"} for r in rows])
    table = table.map(lambda row: {"messages": json.loads(row["messages"])}, remove_columns=["messages"])
    table.save_to_disk(str(tmp_path / "disk"))
    table.to_parquet(str(tmp_path / "rows.parquet"))
    for path in (tmp_path / "disk", tmp_path / "rows.parquet"):
        _, outcomes = _import(path, "hf_disk")
        demos = _accepted(outcomes)
        assert [d.messages[1].content for d in demos] == [r["messages"][1]["content"] for r in rows]
        assert [o.item.line for o in outcomes] == [1, 2]


def test_openai_turn_excluded_by_weight_zero_is_rejected_not_trained_on(tmp_path):
    row = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "draft", "weight": 0},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": "final", "weight": 1},
        ]
    }
    path = tmp_path / "weighted.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({"messages": row["messages"][2:]}) + "\n")
    _, outcomes = _import(path)
    assert [o.status for o in outcomes] == ["rejected", "accepted"]
    assert outcomes[0].path == "messages[1].weight" and "weight 0" in outcomes[0].reason

"""Fuzzing the data layer: every importer and the record checks under generated input.

Each input is a real fixture row mutated by hypothesis (parts deleted, retyped, replaced, nested
hundreds deep) or plain generated JSON or bytes. Whatever it is, validation must end in outcomes
that reconcile with the lines read, and every rejection must say where (file, line, JSON path)
and why: never a traceback. The fast tier runs a few dozen cases per format; `-m slow` runs
thousands.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fuzz_support import JSON, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replica.config import InputConfig
from replica.data.sources import iter_items
from replica.data.validate import STATUSES, Registry, Validator, collect_registry

FIXTURES = Path(__file__).parent / "fixtures"
SEEDS = {
    "replica": ["data/alice.jsonl", "data/tasks.jsonl", "data/contributors.jsonl"],
    "openai": ["external/openai-cookbook/drone_training_first9.jsonl"],
    "sharegpt": ["external/llama-factory/glaive_toolcall_en_demo_first50.json"],
    "llamafactory_pref": ["external/llama-factory/dpo_en_demo_first50.json"],
    "hh": ["external/hh-rlhf/harmless-base_test_first50.jsonl"],
    "trl_pref": ["data/trl_pref_sample.jsonl"],
    "ultrafeedback": ["data/ultrafeedback_sample.jsonl"],
}
EXAMPLES = {
    fmt: [item.obj for name in files for item in iter_items(FIXTURES / name) if item.obj][:30]
    for fmt, files in SEEDS.items()
}
# Registered contributors and tasks, so mutated native records reach the conversation checks.
REGISTRY = collect_registry(
    [InputConfig(path=str(FIXTURES / "data" / n)) for n in ("contributors.jsonl", "tasks.jsonl")]
)


def assert_reported(path: Path, fmt: str) -> list:
    """Validate `path`: outcomes reconcile with the counts, every rejection names where and why."""
    validator = Validator(REGISTRY, check_contributors=fmt == "replica")
    outcomes = list(validator.outcomes([InputConfig(path=str(path), format=fmt, contributor="alice")]))
    for outcome in outcomes:
        assert outcome.status in STATUSES
        if outcome.status == "rejected":
            assert outcome.reason and outcome.path is not None
            assert outcome.describe().startswith(f"{path}:{outcome.item.line}: ")
    assert validator.counts.totals()["read"] == len(outcomes)
    return outcomes


def fuzz_importer(fmt: str, cases: int):
    @settings(max_examples=cases, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rows=st.lists(mutated(EXAMPLES[fmt]) | JSON, min_size=1, max_size=4))
    def check(tmp_path_factory, rows):
        path = tmp_path_factory.mktemp("fuzz") / "input.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        outcomes = assert_reported(path, fmt)
        if not isinstance(rows[0], list):  # JSON Lines: every line is accounted for
            assert len({o.item.line for o in outcomes}) == len(rows)
        elif rows != [[]]:  # read as one JSON array: its items, or the text after it, are reported
            assert outcomes

    return check


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_importers_report_every_generated_row(fmt, tmp_path_factory):
    fuzz_importer(fmt, 25)(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_importers_report_every_generated_row_long(fmt, tmp_path_factory):
    fuzz_importer(fmt, 1500)(tmp_path_factory)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(st.binary(max_size=60), min_size=1, max_size=5))
def test_undecodable_lines_are_rejected_with_their_line(tmp_path_factory, lines):
    lines = [line.replace(b"\n", b" ").replace(b"\r", b" ") or b"x" for line in lines]
    path = tmp_path_factory.mktemp("fuzz") / "bytes.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    validator = Validator(Registry(), check_contributors=False)
    outcomes = list(validator.outcomes([InputConfig(path=str(path), format="openai")]))
    assert outcomes or not any(line.strip() for line in lines)  # something there: something reported
    assert all(o.reason and o.item.line >= 1 for o in outcomes if o.status == "rejected")


def test_a_record_nested_thousands_deep_is_one_rejected_line(tmp_path):
    path = tmp_path / "deep.jsonl"
    deep = '{"kind": "demonstration", "messages": ' + "[" * 50_000 + "]" * 50_000 + "}"
    good = json.dumps(EXAMPLES["replica"][0])
    path.write_text(f"{good}\n{deep}\n")
    validator = Validator(REGISTRY)
    outcomes = list(validator.outcomes([InputConfig(path=str(path))]))
    assert [o.status for o in outcomes][1] == "rejected"
    assert "nested 50001 levels deep; at most 64" in outcomes[1].reason and outcomes[1].item.line == 2
    array = tmp_path / "deep.json"
    array.write_text(f"[{good}, {deep[:-1]}" + "}]")
    outcomes = list(Validator(REGISTRY).outcomes([InputConfig(path=str(array))]))
    assert outcomes[-1].status == "rejected" and "levels deep" in outcomes[-1].reason

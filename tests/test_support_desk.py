"""The demo's support desk: tools change the state as documented, and the demo corpus is what the
seeded generator writes, with contributor ways a check can tell apart."""

import importlib.util
import json
from pathlib import Path

import pytest

from replica.agents.envs.base import ToolError, get_environment
from replica.agents.envs.support_desk import SupportDesk
from replica.data.records import parse_record
from replica.eval.checks import state_hash

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"


def _generator():
    spec = importlib.util.spec_from_file_location("make_demo_data", ROOT / "scripts" / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _state() -> dict:
    return {
        "customers": {"C-104": {"name": "Dana Reyes", "email": "d@example.com", "address": "1 Elm Street"}},
        "orders": {
            "O-482": {"customer_id": "C-104", "product_id": "P-17", "total": 54, "status": "delivered"}
        },
        "products": {"P-17": {"name": "kettle", "category": "home", "price": 54}},
        "tickets": {"T-305": {"customer_id": "C-104", "order_id": "O-482", "status": "open"}},
    }


def test_registered_with_openai_schemas_for_every_tool():
    env = get_environment("support_desk")(_state())
    schemas = env.tool_schemas()
    assert 6 <= len(schemas) <= 10
    for schema in schemas:
        assert schema["type"] == "function"
        assert callable(getattr(env, schema["function"]["name"]))
        assert schema["function"]["parameters"]["type"] == "object"


def test_refund_records_whether_identity_was_verified_first():
    before = SupportDesk(_state())
    before.issue_refund("O-482", 54)
    after = SupportDesk(_state())
    after.verify_identity("C-104")
    after.issue_refund("O-482", 54)
    assert before.state["orders"]["O-482"]["refund"] == {"amount": 54, "identity_verified": False}
    assert after.state["orders"]["O-482"]["refund"] == {"amount": 54, "identity_verified": True}
    assert state_hash(before.state) != state_hash(after.state)


def test_tools_refuse_wrong_ids_and_amounts_without_changing_state():
    env = SupportDesk(_state())
    snapshot = env.snapshot()
    for call in (
        lambda: env.get_order("O-999"),
        lambda: env.issue_refund("O-482", 55),
        lambda: env.offer_store_credit("C-104", 0),
        lambda: env.escalate("T-305", "marketing"),
        lambda: env.close_ticket("T-1"),
    ):
        with pytest.raises(ToolError):
            call()
    assert env.state == snapshot


def test_ticket_and_account_tools_change_the_state():
    env = SupportDesk(_state())
    env.offer_store_credit("C-104", 20)
    env.update_address("C-104", "9 Oak Road")
    env.escalate("T-305", "returns")
    assert env.state["customers"]["C-104"]["store_credit"] == 20
    assert env.state["customers"]["C-104"]["address_change"] == {"identity_verified": False}
    assert env.state["tickets"]["T-305"]["escalated_to"] == "returns"
    env.close_ticket("T-305")
    assert env.get_customer("C-104")["address"] == "9 Oak Road"
    assert env.state["tickets"]["T-305"]["status"] == "closed"


def test_committed_demo_data_equals_the_generator_output(tmp_path):
    written = _generator().generate(tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(p.name for p in DEMO.glob("*.jsonl*"))
    for name in names:
        assert (tmp_path / name).read_bytes() == (DEMO / name).read_bytes(), f"data/demo/{name} is stale"


def _records(name: str) -> list[dict]:
    return [json.loads(line) for line in (DEMO / name).read_text().splitlines()]


def test_reference_actions_reach_the_checked_facts_and_ways_differ():
    by_kind: dict[str, list[dict]] = {}
    for who in ("alice", "bob", "carol"):
        rows = _records(f"{who}.jsonl")
        tasks = {r["id"]: r for r in rows if r["kind"] == "task"}
        for demo in (r for r in rows if r["kind"] == "demonstration"):
            parse_record(demo)
            task = tasks[demo["task_id"]]
            env = SupportDesk(task["initial_state"])
            for message in demo["messages"]:
                for call in message.get("tool_calls") or []:
                    getattr(env, call["function"]["name"])(**call["function"]["arguments"])
            for path, expected in task["check"]["state"].items():
                table, key, fieldname = path.split(".")
                assert env.state[table][key][fieldname] == expected, (task["id"], path)
            answer = demo["messages"][-1]["content"].lower()
            assert all(s.lower() in answer for s in task["check"]["answer_contains"])
            by_kind.setdefault(task["tags"][1], []).append((who, task["check"]["answer_contains"]))
    for kind, checks in by_kind.items():
        signatures = {who: tuple(strings[-1:]) for who, strings in checks}
        assert len(set(signatures.values())) == 3, f"{kind}: contributors' answers are not told apart"


def test_demo_corpus_holds_feedback_revoked_consent_and_malformed_records():
    kinds = {r["kind"] for r in _records("alice.jsonl")}
    assert {"task", "demonstration", "preference", "rating", "rewrite"} <= kinds
    people = {r["id"]: r for r in _records("contributors.jsonl")}
    assert set(people) == {"alice", "bob", "carol", "dave"}
    assert people["dave"]["consent"]["revoked_at"]
    assert any(r["contributor_id"] == "dave" for r in _records("dave_revoked.jsonl") if "contributor_id" in r)
    assert len((DEMO / "malformed.jsonl").read_text().splitlines()) >= 5

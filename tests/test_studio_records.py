"""Saving studio records: whole lines under concurrency, schema-made tool forms, validation before append."""
# ruff: noqa: F811  (pytest fixtures imported from the fixture modules)

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from studio_fixtures import studio_run  # noqa: F401

from replica.agents.envs.support_desk import TOOL_SCHEMAS
from replica.data.validate import validate_paths
from replica.studio import record
from replica.studio.forms import arguments_from_form, tool_forms
from replica.studio.jsonl import append_lines
from replica.studio.site import load_site
from replica.studio.store import NotSaved


def test_appends_from_many_threads_keep_every_line_whole(tmp_path):
    path = tmp_path / "alice.jsonl"
    path.write_text('{"kind": "task"}')  # a last line without its newline must not swallow the next
    big = "x" * 70_000  # more than a pipe buffer: one write call must still land in one piece

    def save(n: int) -> None:
        append_lines(path, [json.dumps({"n": n, "pad": big}), json.dumps({"n": n, "second": True})])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(save, range(40)))
    lines = path.read_text().splitlines()
    assert lines[0] == '{"kind": "task"}' and len(lines) == 81
    records = [json.loads(line) for line in lines[1:]]
    for first, second in zip(records[::2], records[1::2], strict=True):
        assert first["n"] == second["n"] and second["second"]  # a save's lines stay together
    assert sorted(r["n"] for r in records[::2]) == list(range(40))
    with pytest.raises(ValueError, match="one line"):
        append_lines(path, ["a\nb"])


def test_two_tabs_saving_at_once_lose_nothing(studio_run):
    site = load_site(studio_run)
    task = record.own_tasks(site, "alice")["alice-refund"]
    drafts = []
    for n in range(6):  # six tabs, each with its own recording
        draft_id = record.start_draft(site, "alice", task)
        draft = record.load_draft(site, "alice", draft_id)
        assert record.call_tool(site, "alice", draft, "get_order", {"order_id": "O-7"}) is None
        drafts.append((draft, f"Reply number {n}."))
    before = len(site.data_file("alice").read_text().splitlines())
    with ThreadPoolExecutor(6) as pool:
        saved = list(pool.map(lambda d: record.finish(site, "alice", *d), drafts))
    lines = site.data_file("alice").read_text().splitlines()
    assert len(lines) == before + 6
    demos = {json.loads(line)["id"]: json.loads(line) for line in lines[before:]}
    assert set(demos) == set(saved)
    assert sorted(d["messages"][-1]["content"] for d in demos.values()) == [
        f"Reply number {n}." for n in range(6)
    ]
    report = validate_paths([site.config.data.contributors_file, site.data_file("alice")])
    assert report.ok and report.counts.totals()["accepted"] == len(lines) + 2  # + the two contributors


def test_a_refused_call_is_not_kept_but_a_tool_error_is(studio_run):
    site = load_site(studio_run)
    task = record.own_tasks(site, "alice")["alice-refund"]
    draft = record.load_draft(site, "alice", record.start_draft(site, "alice", task))
    error = record.call_tool(site, "alice", draft, "issue_refund", {"order_id": "O-7", "amount": "x"})
    assert "invalid arguments" in error and len(draft["messages"]) == 2
    assert record.call_tool(site, "alice", draft, "get_order", {"order_id": "O-999"}) is None
    assert "no order with id" in draft["messages"][-1]["content"]  # kept: a real step, with its error
    with pytest.raises(NotSaved, match="empty assistant turn"):
        record.finish(site, "alice", draft, "")


def test_undo_replays_the_calls_before_the_last_one(studio_run):
    site = load_site(studio_run)
    task = record.own_tasks(site, "alice")["alice-refund"]
    draft = record.load_draft(site, "alice", record.start_draft(site, "alice", task))
    assert record.undo_last_call(site, "alice", draft) is False
    assert record.call_tool(site, "alice", draft, "get_order", {"order_id": "O-7"}) is None
    after_one = (list(draft["messages"]), draft["state"])
    assert record.call_tool(site, "alice", draft, "issue_refund", {"order_id": "O-7", "amount": 30}) is None
    assert draft["state"]["orders"]["O-7"]["status"] == "refunded"
    assert record.undo_last_call(site, "alice", draft) is True
    assert (draft["messages"], draft["state"]) == after_one
    assert record.load_draft(site, "alice", draft["id"]) == draft  # kept on disk
    assert record.call_tool(site, "alice", draft, "issue_refund", {"order_id": "O-7", "amount": 30}) is None


def test_tool_forms_follow_the_json_schema():
    forms = {form.name: form for form in tool_forms(TOOL_SCHEMAS)}
    escalate = {f.name: f for f in forms["escalate"].fields}
    assert escalate["team"].widget == "select" and escalate["team"].required
    assert escalate["team"].choices == ['"billing"', '"returns"', '"shipping"', '"tier2"']
    refund = {f.name: f for f in forms["issue_refund"].fields}
    assert (refund["amount"].widget, refund["amount"].step) == ("number", "1")
    function = {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "x": {"type": "number"},
                "ok": {"type": "boolean"},
                "tags": {"type": "array"},
                "note": {"type": "string"},
            },
            "required": ["n"],
        },
    }
    fields = {f.name: f.widget for f in tool_forms([{"function": function}])[0].fields}
    assert fields == {"n": "number", "x": "number", "ok": "select", "tags": "json", "note": "text"}
    args, problems = arguments_from_form(
        function, {"arg.n": "3", "arg.x": "2.5", "arg.ok": "true", "arg.tags": '["a"]', "arg.note": ""}
    )
    assert args == {"n": 3, "x": 2.5, "ok": True, "tags": ["a"]} and problems == {}
    _, problems = arguments_from_form(
        function, {"arg.x": "two", "arg.ok": "yes", "arg.tags": "[", "arg.n": ""}
    )
    assert problems == {
        "n": "required",
        "x": "expected a number, found 'two'",
        "ok": "expected true or false, found 'yes'",
        "tags": "expected JSON (Expecting value at char 1)",
    }

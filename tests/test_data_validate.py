"""Validation and quarantine: one test per error kind, each asserting file, line, JSON path and reason."""

import copy
import json

import pytest

from replica.data.validate import validate_paths
from replica.errors import UserError

CONTRIBUTOR = {
    "kind": "contributor",
    "id": "alice",
    "name": "Alice",
    "consent": {
        "train": "allowed",
        "serve": "allowed",
        "share": "allowed",
        "license": "MIT",
        "granted_at": "2026-01-01T00:00:00Z",
    },
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "refund",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
                "required": ["order_id", "amount"],
            },
        },
    }
]
GOOD = {
    "kind": "demonstration",
    "id": "d1",
    "contributor_id": "alice",
    "task_id": "t1",
    "tools": TOOLS,
    "messages": [
        {"role": "user", "content": "Refund O-1 please."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "refund", "arguments": {"order_id": "O-1", "amount": 5}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "assistant", "content": "Refunded."},
    ],
}


def _bad(change) -> dict:
    record = copy.deepcopy(GOOD)
    record["id"] = "bad"
    change(record)
    return record


def _run(tmp_path, third_line: bytes | str | dict, newline: bool = True):
    """File: line 1 contributor, line 2 a good demonstration, line 3 the record under test."""
    if isinstance(third_line, dict):
        third_line = json.dumps(third_line)
    if isinstance(third_line, str):
        third_line = third_line.encode("utf-8")
    path = tmp_path / "input.jsonl"
    head = (json.dumps(CONTRIBUTOR) + "\n" + json.dumps(GOOD) + "\n").encode()
    path.write_bytes(head + third_line + (b"\n" if newline else b""))
    report = validate_paths([path])
    assert report.counts.totals()["accepted"] == 2, report.problems  # the good lines are untouched
    assert len(report.problems) == 1, report.problems
    return str(path), report.problems[0]


def _expect(problem: str, file: str, path: str, *reason_parts: str) -> None:
    assert problem.startswith(f"{file}:3: {path}: "), problem
    for part in reason_parts:
        assert part in problem, problem


def test_invalid_json(tmp_path):
    file, problem = _run(tmp_path, '{"kind": "demonstration", "id": ')
    _expect(problem, file, "$", "invalid JSON", "column")


def test_truncated_last_line(tmp_path):
    file, problem = _run(tmp_path, json.dumps(GOOD)[:-20], newline=False)
    _expect(problem, file, "$", "truncated last line", "cut off")


def test_invalid_utf8(tmp_path):
    raw = json.dumps(_bad(lambda r: None)).encode().replace(b"Refunded.", b"Refunded \xff.")
    file, problem = _run(tmp_path, raw)
    _expect(problem, file, "$", "invalid UTF-8", "0xff")


def test_wrong_type(tmp_path):
    file, problem = _run(tmp_path, _bad(lambda r: r["messages"][0].update(content=42)))
    _expect(problem, file, "messages[0].content", "valid string", "found 42")


def test_missing_required_field(tmp_path):
    file, problem = _run(tmp_path, _bad(lambda r: r.pop("task_id")))
    _expect(problem, file, "task_id", "required field is missing")


def test_unknown_role(tmp_path):
    file, problem = _run(tmp_path, _bad(lambda r: r["messages"][0].update(role="customer")))
    _expect(problem, file, "messages[0].role", "'system', 'user', 'assistant' or 'tool'", "customer")


def test_tool_result_without_matching_call(tmp_path):
    file, problem = _run(tmp_path, _bad(lambda r: r["messages"][2].update(tool_call_id="c9")))
    _expect(problem, file, "messages[2].tool_call_id", "'c9'", "matches no earlier tool call")


def test_tool_name_not_in_tools(tmp_path):
    file, problem = _run(
        tmp_path, _bad(lambda r: r["messages"][1]["tool_calls"][0]["function"].update(name="delete_all"))
    )
    _expect(
        problem,
        file,
        "messages[1].tool_calls[0].function.name",
        "'delete_all' is not in the declared tools",
        "refund",
    )


def test_arguments_do_not_match_schema(tmp_path):
    file, problem = _run(
        tmp_path,
        _bad(lambda r: r["messages"][1]["tool_calls"][0]["function"]["arguments"].update(amount="five")),
    )
    _expect(
        problem,
        file,
        "messages[1].tool_calls[0].function.arguments['amount']",
        "schema of 'refund'",
        "'five' is not of type 'number'",
    )


def test_missing_required_argument(tmp_path):
    file, problem = _run(
        tmp_path, _bad(lambda r: r["messages"][1]["tool_calls"][0]["function"]["arguments"].pop("amount"))
    )
    _expect(problem, file, "messages[1].tool_calls[0].function.arguments", "'amount' is a required property")


def test_whitespace_only_assistant_turn(tmp_path):
    file, problem = _run(tmp_path, _bad(lambda r: r["messages"][3].update(content="  \n ")))
    _expect(problem, file, "messages[3].content", "empty assistant turn")


def test_conversation_must_end_with_assistant(tmp_path):
    file, problem = _run(
        tmp_path, _bad(lambda r: r["messages"].append({"role": "user", "content": "thanks"}))
    )
    _expect(problem, file, "messages[4].role", "must end with an assistant turn", "'user'")


def test_consecutive_assistant_turns_without_tool_result(tmp_path):
    file, problem = _run(tmp_path, _bad(lambda r: r["messages"].pop(2)))
    _expect(problem, file, "messages[2].role", "assistant turn whose tool calls got no tool result")


def test_rating_out_of_range(tmp_path):
    rating = {
        "kind": "rating",
        "id": "r",
        "contributor_id": "alice",
        "prompt": "q?",
        "response": "a.",
        "aspects": {"helpfulness": 7},
    }
    file, problem = _run(tmp_path, rating)
    _expect(problem, file, "aspects.helpfulness", "less than or equal to 5", "found 7")


def test_chosen_identical_to_rejected(tmp_path):
    pair = {
        "kind": "preference",
        "id": "p",
        "contributor_id": "alice",
        "prompt": "q?",
        "chosen": "Same  answer.",
        "rejected": "same answer.",
    }
    file, problem = _run(tmp_path, pair)
    _expect(problem, file, "rejected", "chosen and rejected are identical")


def test_unknown_contributor(tmp_path):
    file, problem = _run(tmp_path, _bad(lambda r: r.update(contributor_id="mallory")))
    _expect(
        problem, file, "contributor_id", "unknown contributor 'mallory'", "contributor record with consent"
    )


def test_strict_stops_at_the_first_error(tmp_path):
    path = tmp_path / "input.jsonl"
    bad = _bad(lambda r: r.update(contributor_id="mallory"))
    path.write_text("\n".join(json.dumps(x) for x in (CONTRIBUTOR, bad, GOOD, bad)) + "\n")
    with pytest.raises(UserError, match=rf"{path}:2: contributor_id: unknown contributor"):
        validate_paths([path], strict=True)
    report = validate_paths([path])  # default mode: the run continues past both bad records
    assert report.counts.totals() == {
        "read": 4,
        "accepted": 2,
        "rejected": 2,
        "duplicate": 0,
        "consent_excluded": 0,
        "not_selected": 0,
    }


def test_duplicates_are_counted_not_rejected_and_counts_reconcile(tmp_path):
    path = tmp_path / "input.jsonl"
    same_content = {
        **GOOD,
        "id": "d2",
        "messages": [*GOOD["messages"][:3], {"role": "assistant", "content": " Refunded. "}],
    }
    path.write_text("\n".join(json.dumps(x) for x in (CONTRIBUTOR, GOOD, same_content, GOOD)) + "\n")
    totals = validate_paths([path]).counts.totals()
    assert totals["duplicate"] == 2 and totals["accepted"] == 2 and totals["rejected"] == 0
    assert totals["read"] == 4 == sum(v for k, v in totals.items() if k != "read")


def test_an_undetectable_file_says_what_it_saw(tmp_path):
    path = tmp_path / "mystery.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(
        UserError, match=r"mystery.jsonl:1: cannot tell the format.*keys \[answer, question\]"
    ):
        validate_paths([path])


def test_a_task_defined_twice_differently_is_rejected_where_it_conflicts(tmp_path):
    task = {"kind": "task", "id": "t1", "instruction": "Refund O-1."}
    path = tmp_path / "tasks.jsonl"
    lines = (task, {**task, "instruction": "Cancel O-1."}, task)
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    report = validate_paths([path])
    assert report.problems == [f"{path}:2: id: task 't1' is already defined differently at {path}:1"]
    assert report.counts.totals()["duplicate"] == 1  # line 3 repeats line 1


def test_same_id_with_other_content_is_rejected(tmp_path):
    other = _bad(lambda r: r["messages"][3].update(content="Refunded in full."))
    other["id"] = GOOD["id"]
    file, problem = _run(tmp_path, other)
    _expect(problem, file, "id", "id 'd1' is already used by an earlier demonstration with other content")


def test_fast_argument_check_never_passes_what_jsonschema_rejects():
    """`surely_valid` may answer "ask jsonschema" too often, never "valid" when jsonschema says no."""
    from jsonschema import Draft202012Validator

    from replica.data.checks import surely_valid

    leaf = [{"type": t} for t in ("string", "integer", "number", "boolean", "null", "array", "object")]
    schemas = leaf + [
        TOOLS[0]["function"]["parameters"],
        {"type": ["string", "null"]},
        {"type": []},
        {"type": "integer", "enum": [1]},  # enum: not decided here
        {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
        {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": 0},
        {"type": "object", "properties": {"a": True}},
        {"type": "object", "required": "a"},
        {"type": "object", "required": ["a"], "properties": {"a": {"type": "object", "required": ["b"]}}},
        {"type": "array", "items": {"type": "number"}},
        {"type": "array", "items": [{"type": "number"}]},
        {"properties": {"a": {"type": "string"}}, "description": "no type: any value"},
        {"type": "string", "minLength": 2},
    ]
    values = [None, True, False, 0, 1, 1.0, 1.5, float("nan"), "x", "xy", [], [1, "a"], [1, 2.5], {}]
    values += [{"a": 1}, {"a": True}, {"a": 1, "b": 2}, {"a": {"b": 1}}, {"a": {}}, {"a": "s"}]
    values += [{"order_id": "O-1", "amount": 5}, {"order_id": "O-1"}, {"order_id": "O-1", "amount": "5"}]
    decided = 0
    for schema in schemas:
        validator = Draft202012Validator(schema)
        for value in values:
            if surely_valid(schema, value):
                decided += 1
                assert validator.is_valid(value), (schema, value)
    assert decided > 50  # and it does decide the common cases itself
    assert surely_valid(TOOLS[0]["function"]["parameters"], {"order_id": "O-1", "amount": 5})

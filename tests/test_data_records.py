"""Record models: schemas in sync, tool-call arguments decoded once and kept exactly, content hashes."""

import json

import pytest
from pydantic import ValidationError

from replica.data.records import Demonstration, Rating, content_hash, parse_record, to_line
from replica.data.schemas import SCHEMA_DIR, record_schemas


def test_exported_json_schemas_match_the_models():
    expected = record_schemas()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert on_disk == expected, "run `python -m replica.data.schemas` to regenerate data/schemas/"


def _demo(arguments, content="Done."):
    return {
        "kind": "demonstration",
        "id": "d1",
        "contributor_id": "alice",
        "task_id": "t1",
        "messages": [
            {"role": "user", "content": "refund O-1"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "function": {"name": "refund", "arguments": arguments}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            {"role": "assistant", "content": content},
        ],
    }


def test_json_string_arguments_are_decoded_to_the_recorded_dict():
    record = parse_record(_demo('{"order_id": "O-1", "amount": 54.5}'))
    assert record.messages[1].tool_calls[0].function.arguments == {"order_id": "O-1", "amount": 54.5}


def test_double_encoded_arguments_are_an_error_not_a_guess():
    with pytest.raises(ValidationError, match="must decode to a JSON object, found str"):
        parse_record(_demo(json.dumps('{"order_id": "O-1"}')))


def test_native_line_round_trips_exactly():
    record = parse_record(_demo({"order_id": "O-1", "nested": {"a": [1, None, "x"]}}))
    again = parse_record(json.loads(to_line(record)))
    assert again == record
    assert json.loads(to_line(record))["kind"] == "demonstration"
    assert list(json.loads(to_line(record)))[0] == "kind"


def test_content_hash_ignores_ids_and_whitespace_but_not_content():
    a = parse_record(_demo({"order_id": "O-1"}))
    b = Demonstration.model_validate({**_demo({"order_id": "O-1"}, content="  Done. "), "id": "other"})
    c = parse_record(_demo({"order_id": "O-2"}))
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(c)


def test_rating_value_is_the_mean_of_aspects_and_range_is_enforced():
    base = {"id": "r", "contributor_id": "alice", "prompt": "q", "response": "a"}
    assert Rating.model_validate({**base, "aspects": {"helpfulness": 5, "honesty": 2}}).value == 3.5
    assert Rating.model_validate({**base, "score": 4}).value == 4
    with pytest.raises(ValidationError, match="less than or equal to 5"):
        Rating.model_validate({**base, "score": 6})
    with pytest.raises(ValidationError, match="needs `score`"):
        Rating.model_validate(base)


def test_contributor_id_must_be_a_slug():
    consent = {
        "train": "allowed",
        "serve": "allowed",
        "share": "allowed",
        "license": "MIT",
        "granted_at": "2026-01-01T00:00:00Z",
    }
    with pytest.raises(ValidationError, match="string_pattern_mismatch|should match pattern"):
        parse_record({"kind": "contributor", "id": "../etc", "name": "x", "consent": consent})

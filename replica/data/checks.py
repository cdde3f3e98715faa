"""Checks a record model cannot express alone: conversations that make sense, tool calls that fit.

Each check returns `(json_path, reason)` pairs; an empty list means the record is sound.
`tools` is the record's own tool list, else its task's; tool names and arguments are checked
only when some tools are declared (tau-bench trajectories, for instance, carry none).
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import BaseModel

from replica.data.records import (
    Demonstration,
    Message,
    PreferencePair,
    Rating,
    Rewrite,
    ToolSchema,
    normalize_text,
)

Found = list[tuple[str, str]]


def check_record(record: BaseModel, tools: list[ToolSchema] | None) -> Found:
    """Every semantic problem of one validated record (demonstrations and feedback)."""
    if isinstance(record, Demonstration):
        return check_conversation(
            record.messages, tools, lambda i: f"messages[{i}]", must_end_with_assistant=True
        )
    if isinstance(record, PreferencePair):
        found = _check_prompt(record.prompt, tools)
        found += _check_response(record.prompt, record.chosen, "chosen", tools)
        found += _check_response(record.prompt, record.rejected, "rejected", tools)
        if not found and _same(record.chosen, record.rejected):
            found.append(("rejected", "chosen and rejected are identical: the pair teaches nothing"))
        return found
    if isinstance(record, Rating):
        return _check_prompt(record.prompt, tools) + _check_response(
            record.prompt, record.response, "response", tools
        )
    if isinstance(record, Rewrite):
        found = _check_prompt(record.prompt, tools)
        found += _check_response(record.prompt, record.original, "original", tools)
        found += _check_response(record.prompt, record.rewritten, "rewritten", tools)
        if not found and _same(record.original, record.rewritten):
            found.append(
                ("rewritten", "the rewrite is identical to the original: there is nothing to prefer")
            )
        return found
    return []


def check_conversation(
    messages: list[Message],
    tools: list[ToolSchema] | None,
    label: Callable[[int], str],
    must_end_with_assistant: bool,
) -> Found:
    """Turn order, tool-call pairing, tool names and argument schemas, empty turns, the last turn."""
    found: Found = []
    calls: set[str] = set()
    by_name = {tool.name: tool for tool in tools or []}
    for index, message in enumerate(messages):
        path = label(index)
        if message.role == "assistant":
            found += _check_assistant(message, messages[index - 1] if index else None, path, by_name, tools)
            calls.update(call.id for call in message.tool_calls or [])
        elif message.role == "tool" and message.tool_call_id not in calls:
            known = ", ".join(sorted(calls)) or "none"
            found.append(
                (
                    f"{path}.tool_call_id",
                    f"tool result for call {message.tool_call_id!r}, which matches no earlier tool call (earlier calls: {known})",
                )
            )
    if must_end_with_assistant and messages and messages[-1].role != "assistant":
        last = len(messages) - 1
        found.append(
            (
                f"{label(last)}.role",
                f"the conversation must end with an assistant turn; the last turn is {messages[-1].role!r}",
            )
        )
    return found


def _check_assistant(
    message: Message, previous: Message | None, path: str, by_name: dict[str, ToolSchema], tools: list | None
) -> Found:
    found: Found = []
    if not (message.content or "").strip() and not message.tool_calls:
        found.append((f"{path}.content", "empty assistant turn: no text and no tool calls"))
    if previous is not None and previous.role == "assistant":
        if previous.tool_calls:
            reason = "assistant turn right after an assistant turn whose tool calls got no tool result"
        else:
            reason = "two assistant turns in a row with nothing between them (merge them into one turn)"
        found.append((f"{path}.role", reason))
    for n, call in enumerate(message.tool_calls or []):
        name, call_path = call.function.name, f"{path}.tool_calls[{n}].function"
        if tools is None:
            continue
        if name not in by_name:
            found.append(
                (
                    f"{call_path}.name",
                    f"tool {name!r} is not in the declared tools ({', '.join(sorted(by_name)) or 'none'})",
                )
            )
            continue
        problem = _argument_problem(by_name[name], call.function.arguments)
        if problem:
            found.append((f"{call_path}.arguments{problem[0]}", problem[1]))
    return found


def _argument_problem(tool: ToolSchema, arguments: dict[str, Any]) -> tuple[str, str] | None:
    parameters = tool.function.get("parameters")
    if not parameters or surely_valid(parameters, arguments):
        return None
    error = next(iter(_validator(json.dumps(parameters, sort_keys=True)).iter_errors(arguments)), None)
    if error is None:
        return None
    where = "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
    return where, f"arguments do not match the schema of {tool.name!r}: {error.message}"


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


# What `Draft202012Validator` counts as each JSON type (jsonschema/_types.py, draft 6 and later).
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, numbers.Number) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_ANNOTATIONS = {
    "description",
    "title",
    "default",
    "examples",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
}
_FAST_KEYWORDS = _ANNOTATIONS | {"type", "properties", "required", "additionalProperties", "items"}


def surely_valid(schema: Any, value: Any) -> bool:
    """True only when `value` certainly matches `schema`; False means "ask jsonschema".

    Tool parameter schemas are mostly `type` / `properties` / `required` /
    `additionalProperties: false` / `items`: those are checked here, by jsonschema's rules,
    in a few microseconds (jsonschema takes about 20 per call). A schema using any other keyword,
    or a keyword in an unusual form, gives False, and jsonschema decides and explains.
    tests/test_data_validate.py compares the two.
    """
    if not isinstance(schema, dict) or not schema.keys() <= _FAST_KEYWORDS:
        return False
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not all(isinstance(kind, str) and kind in _TYPES for kind in kinds):
            return False
        if not any(_TYPES[kind](value) for kind in kinds):
            return False
    if isinstance(value, dict) and not _object_surely_valid(schema, value):
        return False
    if isinstance(value, list) and "items" in schema:
        items = schema["items"]
        return isinstance(items, dict) and all(surely_valid(items, item) for item in value)
    return True


def _object_surely_valid(schema: dict[str, Any], value: dict[str, Any]) -> bool:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list) or not isinstance(extra, bool):
        return False
    if extra is False and not value.keys() <= properties.keys():
        return False
    if not all(isinstance(name, str) and name in value for name in required):
        return False
    return all(surely_valid(sub, value[name]) for name, sub in properties.items() if name in value)


def _check_prompt(prompt: list[Message], tools: list[ToolSchema] | None) -> Found:
    found = check_conversation(prompt, tools, lambda i: f"prompt[{i}]", must_end_with_assistant=False)
    if prompt[-1].role == "assistant":
        found.append(
            (
                f"prompt[{len(prompt) - 1}].role",
                "a prompt must end with a user or tool turn, not an assistant turn",
            )
        )
    return found


def _check_response(
    prompt: list[Message], response: list[Message], name: str, tools: list[ToolSchema] | None
) -> Found:
    """A response is the assistant's side (assistant turns, tool results) after the prompt."""
    found = [
        (f"{name}[{i}].role", f"a response holds assistant and tool turns only, found {m.role!r}")
        for i, m in enumerate(response)
        if m.role not in ("assistant", "tool")
    ]
    whole = prompt + response
    offset = len(prompt)

    def label(i: int) -> str:
        return f"prompt[{i}]" if i < offset else f"{name}[{i - offset}]"

    inner = check_conversation(whole, tools, label, must_end_with_assistant=True)
    return found + [item for item in inner if not item[0].startswith("prompt[")]


def _same(a: list[Message], b: list[Message]) -> bool:
    def norm(messages: list[Message]) -> list[dict]:
        return [
            {**m.model_dump(exclude_none=True), "content": normalize_text(m.content or "")} for m in messages
        ]

    return norm(a) == norm(b)

"""Tool forms: each tool's JSON schema becomes form fields, and submitted fields become arguments.

A property becomes one labelled field: a `<select>` for an `enum` or a boolean, a number input
for `integer` / `number`, a text input for `string`, and a JSON textarea for anything nested
(objects, arrays). Required properties are marked `required`. Submitted text is converted back
by the same schema, and anything that does not fit is reported per field, so a person sees
what to fix before the call ever reaches the sandbox.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ARG_PREFIX = "arg."  # form field names of tool arguments: arg.<property>


@dataclass(frozen=True)
class Field:
    """One form field of a tool: what the template needs to draw it."""

    name: str
    widget: str  # text, number, select, json
    required: bool
    description: str = ""
    choices: list[str] = field(default_factory=list)
    step: str = "1"


@dataclass(frozen=True)
class ToolForm:
    name: str
    description: str
    fields: list[Field]


def tool_forms(tools: list[dict[str, Any]]) -> list[ToolForm]:
    """The form of each OpenAI function tool, in the tools' order."""
    return [_form(tool.get("function", tool)) for tool in tools]


def _form(function: dict[str, Any]) -> ToolForm:
    parameters = function.get("parameters") or {}
    required = set(parameters.get("required") or [])
    fields = [
        _field(name, schema or {}, name in required)
        for name, schema in (parameters.get("properties") or {}).items()
    ]
    return ToolForm(function["name"], function.get("description", ""), fields)


def _field(name: str, schema: dict[str, Any], required: bool) -> Field:
    description = schema.get("description", "")
    kind = schema.get("type")
    if "enum" in schema:
        return Field(name, "select", required, description, [json.dumps(v) for v in schema["enum"]])
    if kind == "boolean":
        return Field(name, "select", required, description, ["true", "false"])
    if kind in ("integer", "number"):
        return Field(name, "number", required, description, step="1" if kind == "integer" else "any")
    if kind == "string":
        return Field(name, "text", required, description)
    return Field(name, "json", required, description)


def arguments_from_form(
    function: dict[str, Any], form: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(arguments, problems by field) from submitted `arg.<name>` values; empty optional fields are left out."""
    parameters = function.get("parameters") or {}
    required = set(parameters.get("required") or [])
    arguments: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, schema in (parameters.get("properties") or {}).items():
        text = form.get(ARG_PREFIX + name, "")
        if text == "":
            if name in required:
                problems[name] = "required"
            continue
        try:
            arguments[name] = _convert(text, schema or {})
        except ValueError as err:
            problems[name] = str(err)
    return arguments, problems


def _convert(text: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        choices = {json.dumps(v): v for v in schema["enum"]}
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, found {text!r}")
        return choices[text]
    if kind == "boolean":
        if text not in ("true", "false"):
            raise ValueError(f"expected true or false, found {text!r}")
        return text == "true"
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, found {text!r}") from None
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, found {text!r}") from None
    if kind == "string":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"expected JSON ({err.msg} at char {err.pos})") from None

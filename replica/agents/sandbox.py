"""Sandboxed tool execution: whatever the model asks for, the episode goes on.

An unknown tool, arguments that fail the tool's JSON schema, a `ToolError` or any other exception
inside a tool become a `tool` message fed back to the model (so it can recover, as a person would
after an error) and a counted error in one of the categories below. After `max_calls` tool calls
every further call is refused with a `step_limit` error, so a runaway model cannot loop forever.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from replica.agents.envs.base import Environment, ToolError

# Error categories, in the order they are checked.
UNKNOWN_TOOL = "unknown_tool"
INVALID_ARGUMENTS = "invalid_arguments"
TOOL_ERROR = "tool_error"  # the tool refused (ToolError): an expected, domain-level failure
TOOL_EXCEPTION = "tool_exception"  # the tool crashed: a bug in the environment or an absurd input
STEP_LIMIT = "step_limit"
ERROR_CATEGORIES = (UNKNOWN_TOOL, INVALID_ARGUMENTS, TOOL_ERROR, TOOL_EXCEPTION, STEP_LIMIT)


@dataclass
class ToolOutcome:
    """What one tool call produced: the `tool` message for the model and the error category, if any."""

    message: dict[str, Any]
    error: str | None = None


@dataclass
class Sandbox:
    """Runs a model's tool calls against one environment, counting errors by category."""

    env: Environment
    max_calls: int = 32
    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def execute(self, tool_call: dict[str, Any]) -> ToolOutcome:
        """Run one OpenAI-format tool call; never raises for anything the model can produce."""
        function = tool_call.get("function", tool_call) if isinstance(tool_call, dict) else {}
        name = function.get("name") if isinstance(function, dict) else None
        arguments = function.get("arguments", {}) if isinstance(function, dict) else {}
        self.calls += 1
        if self.calls > self.max_calls:
            return self._fail(
                tool_call, name, STEP_LIMIT, f"step limit of {self.max_calls} tool calls reached"
            )
        tools = self.env.tools()
        if name not in tools:
            known = ", ".join(sorted(tools)) or "none"
            return self._fail(tool_call, name, UNKNOWN_TOOL, f"unknown tool {name!r}; available: {known}")
        arguments = _as_dict(arguments)
        problem = _schema_problem(arguments, tools[name].schema)
        if problem:
            return self._fail(tool_call, name, INVALID_ARGUMENTS, f"invalid arguments for {name}: {problem}")
        try:
            result = tools[name].run(**arguments)
        except ToolError as err:
            return self._fail(tool_call, name, TOOL_ERROR, str(err))
        except Exception as err:  # the sandbox's whole point: a tool bug must not end the evaluation
            return self._fail(tool_call, name, TOOL_EXCEPTION, f"{type(err).__name__}: {err}")
        return ToolOutcome(message=_tool_message(tool_call, name, _render(result)))

    def _fail(self, tool_call: dict, name: str | None, category: str, text: str) -> ToolOutcome:
        self.errors[category] = self.errors.get(category, 0) + 1
        message = _tool_message(tool_call, name, json.dumps({"error": category, "message": text}))
        return ToolOutcome(message=message, error=category)


def _as_dict(arguments: Any) -> Any:
    """Arguments may arrive as a JSON string (foreign parsers); anything else is left for the schema."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def _schema_problem(arguments: Any, schema: dict[str, Any]) -> str | None:
    """The first way `arguments` breaks the tool's parameter schema, or None when it fits."""
    if not isinstance(arguments, dict):
        return f"expected a JSON object of arguments, found {type(arguments).__name__}"
    parameters = schema.get("function", {}).get("parameters") or {"type": "object"}
    # Python tools cannot take keywords they do not declare, whatever additionalProperties says.
    unexpected = sorted(set(arguments) - set(parameters.get("properties") or {}))
    if unexpected:
        return f"unexpected argument(s) {', '.join(unexpected)}"
    # What jsonschema.validate does, with the schema checked once per schema rather than per call
    # (re-checking it was a tenth of an evaluation's time with the rollout caches on).
    err = jsonschema.exceptions.best_match(
        _validator(json.dumps(parameters, sort_keys=True)).iter_errors(arguments)
    )
    if err is not None:
        where = ".".join(str(p) for p in err.absolute_path) or "(arguments)"
        return f"{where}: {err.message}"
    return None


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    """A validator for one parameter schema (given as JSON: hashable), the schema itself checked once."""
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _render(result: Any) -> str:
    """Tool results go back to the model as text: strings as they are, anything else as JSON."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return str(result)


def _tool_message(tool_call: dict, name: str | None, content: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "tool", "name": name or "", "content": content}
    if isinstance(tool_call, dict) and tool_call.get("id"):
        message["tool_call_id"] = tool_call["id"]
    return message

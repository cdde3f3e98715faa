"""Sandboxed tool execution: every kind of bad call becomes a tool message and a counted error.

`LedgerEnv` here is the small environment the eval tests share (they import it from this module).
"""

import json

from replica.agents.envs.base import Environment, ToolError, register
from replica.agents.sandbox import (
    INVALID_ARGUMENTS,
    STEP_LIMIT,
    TOOL_ERROR,
    TOOL_EXCEPTION,
    UNKNOWN_TOOL,
    Sandbox,
)


def _function(name: str, properties: dict, required: list[str]) -> dict:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": name, "parameters": parameters}}


LEDGER_TOOLS = [
    _function(
        "deposit", {"account": {"type": "string"}, "amount": {"type": "integer"}}, ["account", "amount"]
    ),
    _function(
        "set_status",
        {"account": {"type": "string"}, "status": {"type": "string", "enum": ["open", "frozen"]}},
        ["account", "status"],
    ),
    _function("get_balance", {"account": {"type": "string"}}, ["account"]),
    _function("crash", {}, []),
]


@register
class LedgerEnv(Environment):
    """Two accounts; deposits and status changes commute, so action order does not change the end state."""

    name = "test_ledger"

    def default_state(self) -> dict:
        return {"accounts": {"A": {"balance": 10, "status": "open"}, "B": {"balance": 5, "status": "open"}}}

    def tool_schemas(self) -> list[dict]:
        return LEDGER_TOOLS

    def _account(self, account: str) -> dict:
        if account not in self.state["accounts"]:
            raise ToolError(f"no account {account!r}")
        return self.state["accounts"][account]

    def deposit(self, account: str, amount: int) -> int:
        record = self._account(account)
        record["balance"] += amount
        return record["balance"]

    def set_status(self, account: str, status: str) -> str:
        self._account(account)["status"] = status
        return status

    def get_balance(self, account: str) -> int:
        return self._account(account)["balance"]

    def crash(self) -> None:
        return 1 // 0


def call(name: str, **arguments) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def test_valid_call_changes_state_and_returns_json():
    sandbox = Sandbox(LedgerEnv())
    outcome = sandbox.execute(call("deposit", account="A", amount=5))
    assert outcome.error is None
    assert outcome.message == {"role": "tool", "name": "deposit", "content": "15"}
    assert sandbox.env.state["accounts"]["A"]["balance"] == 15
    assert sandbox.errors == {}


def test_every_bad_call_becomes_a_tool_error_message_not_a_crash():
    sandbox = Sandbox(LedgerEnv())
    cases = [
        (call("teleport", to="moon"), UNKNOWN_TOOL),
        (call("deposit", account="A", amount="lots"), INVALID_ARGUMENTS),
        (call("deposit", account="A"), INVALID_ARGUMENTS),  # missing required
        (call("deposit", account="A", amount=1, memo="x"), INVALID_ARGUMENTS),  # undeclared argument
        (call("set_status", account="A", status="gone"), INVALID_ARGUMENTS),  # not in the enum
        (call("deposit", account="Z", amount=1), TOOL_ERROR),
        (call("crash"), TOOL_EXCEPTION),
        ({"function": {"name": "deposit", "arguments": "not json"}}, INVALID_ARGUMENTS),
        ({"junk": True}, UNKNOWN_TOOL),
    ]
    for tool_call, category in cases:
        outcome = sandbox.execute(tool_call)
        assert outcome.error == category, tool_call
        assert outcome.message["role"] == "tool"
        assert json.loads(outcome.message["content"])["error"] == category
    assert sandbox.errors == {UNKNOWN_TOOL: 2, INVALID_ARGUMENTS: 5, TOOL_ERROR: 1, TOOL_EXCEPTION: 1}
    # Nothing a bad call did reached the state.
    assert sandbox.env.state == LedgerEnv().state


def test_tool_error_message_names_the_problem_and_keeps_the_call_id():
    sandbox = Sandbox(LedgerEnv())
    outcome = sandbox.execute({"id": "c1", **call("crash")})
    assert outcome.message["tool_call_id"] == "c1"
    assert "ZeroDivisionError" in json.loads(outcome.message["content"])["message"]


def test_step_limit_refuses_calls_beyond_the_budget():
    sandbox = Sandbox(LedgerEnv(), max_calls=2)
    results = [sandbox.execute(call("deposit", account="A", amount=1)).error for _ in range(4)]
    assert results == [None, None, STEP_LIMIT, STEP_LIMIT]
    assert sandbox.env.state["accounts"]["A"]["balance"] == 12
    assert sandbox.errors == {STEP_LIMIT: 2}

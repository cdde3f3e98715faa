"""ShareGPT / LLaMA-Factory conversations: `{"conversations": [{"from", "value"}], "system"?, "tools"?}`.

Roles: `human`/`user` -> user, `gpt`/`assistant` -> assistant, `system`, `function_call` -> an
assistant turn with tool calls (its value is JSON `{"name", "arguments"}` or a list of them),
`observation`/`tool` -> a tool result answering the calls of the turn before. ShareGPT rows
carry no call ids, so ids `call_<turn>_<n>` are made up and the results are paired in order.
`tools` is a JSON string of bare `{name, description, parameters}` schemas.
"""

from __future__ import annotations

from typing import Any

from replica import safe_json
from replica.data.formats.common import FormatError, Where, task_id_for, wrap_tools

NAME = "sharegpt"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def detect(obj: dict[str, Any]) -> bool:
    turns = obj.get("conversations")
    is_turns = isinstance(turns, list) and bool(turns) and isinstance(turns[0], dict) and "from" in turns[0]
    return is_turns and "chosen" not in obj


def convert(obj: dict[str, Any], where: Where) -> list[dict[str, Any]]:
    messages = to_messages(obj.get("conversations"), obj.get("system"))
    return [
        {
            "kind": "demonstration",
            "id": where.record_id(),
            "contributor_id": where.contributor_id,
            "task_id": task_id_for(messages),
            "messages": messages,
            "tools": wrap_tools(obj.get("tools")),
            "source": where.source(NAME),
        }
    ]


def to_messages(turns: Any, system: Any = None) -> list[dict[str, Any]]:
    """ShareGPT turns as OpenAI messages (tool calls and results paired by made-up ids)."""
    if not isinstance(turns, list):
        raise FormatError("conversations", f"expected a list of turns, found {type(turns).__name__}")
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    pending: list[str] = []  # ids of calls not yet answered, in order
    for index, turn in enumerate(turns):
        path = f"conversations[{index}]"
        if not isinstance(turn, dict) or "from" not in turn:
            raise FormatError(path, "expected a turn object with `from` and `value`")
        role, value = turn["from"], turn.get("value")
        if role == "function_call":
            calls = _calls(value, f"{path}.value", index)
            pending = [call["id"] for call in calls]
            messages.append({"role": "assistant", "content": "", "tool_calls": calls})
        elif role in ("observation", "tool"):
            call_id = pending.pop(0) if pending else f"call_{index}_unmatched"
            messages.append({"role": "tool", "tool_call_id": call_id, "content": value})
        else:
            # An unknown `from` is passed on as the role, so validation reports it by name.
            messages.append({"role": ROLES.get(role, role), "content": value})
    return messages


def _calls(value: Any, path: str, index: int) -> list[dict[str, Any]]:
    try:
        decoded = safe_json.loads(value) if isinstance(value, str) else value
    except ValueError as err:  # invalid JSON, or nested past safe_json.MAX_DEPTH
        raise FormatError(
            path, f"function_call value is not valid JSON ({getattr(err, 'msg', err)})"
        ) from None
    items = decoded if isinstance(decoded, list) else [decoded]
    calls = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or "name" not in item:
            raise FormatError(path, f"expected {{'name', 'arguments'}}, found {str(item)[:80]!r}")
        calls.append(
            {
                "id": f"call_{index}_{n}",
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments", {})},
            }
        )
    return calls

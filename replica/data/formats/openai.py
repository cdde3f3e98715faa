"""OpenAI chat fine-tuning rows, OpenAI preference rows, and tau-bench trajectories.

- SFT: `{"messages": [...], "tools": [...], "parallel_tool_calls": ...}`; tool-call `arguments`
  are JSON strings there and are decoded by the record model (a string that does not decode to
  an object is an error, never a guess).
- Preference: `{"input": {"messages", "tools"}, "preferred_output": [...], "non_preferred_output": [...]}`.
- tau-bench `EnvRunResult`: `{"task_id", "reward", "info", "traj": [...], "trial"}`. A trajectory
  that failed its task (reward < 1) is not a demonstration and is rejected with that reason;
  the user simulator's closing `###STOP###` turn is dropped.
"""

from __future__ import annotations

from typing import Any

from replica.data.formats.common import FormatError, Where, content_text, task_id_for, wrap_tools

NAME = "openai"
_STOP = "###STOP###"
_KEEP = ("role", "content", "tool_calls", "tool_call_id", "name")


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def detect(obj: dict[str, Any]) -> bool:
    if _is_messages(obj.get("messages")) or _is_messages(obj.get("traj")):
        return True
    return isinstance(obj.get("input"), dict) and "preferred_output" in obj


def convert(obj: dict[str, Any], where: Where) -> list[dict[str, Any]]:
    if "traj" in obj:
        return [_trajectory(obj, where)]
    if "preferred_output" in obj:
        return [_preference(obj, where)]
    messages = _messages(obj.get("messages"), "messages")
    return [_demonstration(messages, obj.get("tools"), where, where.source(NAME))]


def _messages(value: Any, path: str) -> list[dict[str, Any]]:
    """Keep the chat keys, flatten text parts; `weight: 1` and `refusal` are dropped, `weight: 0` rejected."""
    if not isinstance(value, list):
        raise FormatError(path, f"expected a list of messages, found {type(value).__name__}")
    out = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise FormatError(
                f"{path}[{index}]", f"expected a message object, found {type(message).__name__}"
            )
        if message.get("weight") == 0:
            # OpenAI's "do not train on this turn"; replica trains on every assistant turn, so
            # keeping the row would train on what its author excluded.
            raise FormatError(
                f"{path}[{index}].weight",
                "assistant turn with weight 0 (excluded from training): not supported, split the conversation instead",
            )
        kept = {key: message[key] for key in _KEEP if message.get(key) is not None}
        if "content" in kept:
            kept["content"] = content_text(kept["content"])
        if kept.get("role") == "assistant" and "tool_calls" in kept and "content" not in kept:
            kept["content"] = ""
        out.append(kept)
    return out


def _demonstration(messages: list[dict], tools: Any, where: Where, source: dict) -> dict[str, Any]:
    return {
        "kind": "demonstration",
        "id": where.record_id(),
        "contributor_id": where.contributor_id,
        "task_id": task_id_for(messages),
        "messages": messages,
        "tools": wrap_tools(tools),
        "source": source,
    }


def _trajectory(obj: dict[str, Any], where: Where) -> dict[str, Any]:
    reward = obj.get("reward")
    if not isinstance(reward, int | float) or reward < 1:
        raise FormatError(
            "reward", f"trajectory failed its task (reward {reward!r}); only successful runs demonstrate it"
        )
    messages = _messages(obj["traj"], "traj")
    while messages and messages[-1].get("role") == "user" and _STOP in str(messages[-1].get("content")):
        messages.pop()
    record = _demonstration(
        messages, obj.get("tools"), where, where.source("tau-bench", trial=obj.get("trial"))
    )
    if obj.get("task_id") is not None:
        record["task_id"] = f"tau-{obj['task_id']}"
    record["id"] = where.record_id(f"trial{obj.get('trial', 0)}")
    return record


def _preference(obj: dict[str, Any], where: Where) -> dict[str, Any]:
    prompt = _messages(obj["input"].get("messages"), "input.messages")
    return {
        "kind": "preference",
        "id": where.record_id(),
        "contributor_id": where.contributor_id,
        "task_id": task_id_for(prompt),
        "prompt": prompt,
        "chosen": _messages(obj.get("preferred_output"), "preferred_output"),
        "rejected": _messages(obj.get("non_preferred_output"), "non_preferred_output"),
        "tools": wrap_tools(obj["input"].get("tools"), "input.tools"),
        "source": where.source(NAME),
    }

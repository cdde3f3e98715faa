"""TRL preference rows: `{"prompt"?, "chosen", "rejected"}`, conversational (message lists) or plain (strings).

With an explicit `prompt`, chosen and rejected are the responses. Without one (TRL's implicit
prompt), the prompt is the part chosen and rejected share, as `trl.data_utils.extract_prompt`
does: the common leading messages, or for plain text the common prefix cut at a space.
"""

from __future__ import annotations

from typing import Any

from replica.data.formats.common import FormatError, Where, task_id_for, wrap_tools

NAME = "trl_pref"


def detect(obj: dict[str, Any]) -> bool:
    return "chosen" in obj and "rejected" in obj and isinstance(obj["chosen"], str | list)


def convert(obj: dict[str, Any], where: Where) -> list[dict[str, Any]]:
    chosen, rejected, prompt = obj["chosen"], obj["rejected"], obj.get("prompt")
    if prompt is None:
        prompt, chosen, rejected = _split_implicit(chosen, rejected)
    prompt_messages = _as_messages(prompt, "user", "prompt")
    return [
        {
            "kind": "preference",
            "id": where.record_id(),
            "contributor_id": where.contributor_id,
            "task_id": task_id_for(prompt_messages),
            "prompt": prompt_messages,
            "chosen": _as_messages(chosen, "assistant", "chosen"),
            "rejected": _as_messages(rejected, "assistant", "rejected"),
            "tools": wrap_tools(obj.get("tools")),
            "source": where.source(NAME),
        }
    ]


def _as_messages(value: Any, role: str, path: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return value
    raise FormatError(path, f"expected a string or a list of messages, found {type(value).__name__}")


def _split_implicit(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    if type(chosen) is not type(rejected):
        raise FormatError("chosen", "chosen and rejected must both be strings or both message lists")
    cut = 0
    for cut in range(min(len(chosen), len(rejected)) + 1):
        if cut == min(len(chosen), len(rejected)) or chosen[cut] != rejected[cut]:
            break
    if isinstance(chosen, str):
        cut = chosen.rfind(" ", 0, cut + 1) if cut < len(chosen) and " " in chosen[:cut] else cut
    if cut == 0:
        raise FormatError(
            "chosen", "no prompt: the row has no `prompt` and chosen/rejected share no beginning"
        )
    return chosen[:cut], chosen[cut:], rejected[cut:]

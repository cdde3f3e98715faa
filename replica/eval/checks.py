"""Task success, checked on the environment's end state (tau-bench's idea), not on the action sequence.

The expected end state is the one reached by replaying the contributor's reference actions (the
tool calls of their own demonstration) on a fresh environment. An episode succeeds (reward 1) only
if its end state hashes the same after normalization, every fact the check names holds, and every
string the check requires appears in the final answer. So a different but valid order of actions
passes, and a wrong end state fails however polite the answer.

A task's `check` (JSON, from `tasks/heldout`) may hold:
  answer_contains: [str]       strings the final answer must contain (case-insensitive)
  state: {"a.b.c": value}      facts about the end state, by dotted path
  compare_state: bool          compare with the replayed reference end state (default true)
  ignore: ["a.b"]              dotted paths left out of the state comparison (timestamps, logs)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from replica.agents.envs.base import Environment
from replica.agents.sandbox import Sandbox
from replica.artifacts import canonical_json, sha256_text
from replica.errors import UserError

CHECK_KEYS = {"answer_contains", "state", "compare_state", "ignore"}
# Names other tools use for the same thing (tau-bench's `outputs`), read as ours.
_ALIASES = {
    "outputs": "answer_contains",
    "final_answer_contains": "answer_contains",
    "expected_state": "state",
}


@dataclass
class CheckResult:
    """The verdict on one episode, with the reasons a person needs to see why it failed."""

    reward: float
    state_ok: bool
    answer_ok: bool
    expected_hash: str | None = None
    actual_hash: str | None = None
    failed_facts: list[str] = field(default_factory=list)
    missing_strings: list[str] = field(default_factory=list)


def read_check(check: dict[str, Any] | None, where: str = "check") -> dict[str, Any]:
    """Validate a task's check; unknown keys are errors naming the task and the allowed keys."""
    spec = {_ALIASES.get(k, k): v for k, v in (check or {}).items()}
    unknown = sorted(set(spec) - CHECK_KEYS)
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(CHECK_KEYS))}"
        )
    strings = spec.get("answer_contains") or []
    if isinstance(strings, str):
        strings = [strings]
    return {
        "answer_contains": [str(s) for s in strings],
        "state": dict(spec.get("state") or {}),
        "compare_state": bool(spec.get("compare_state", True)),
        "ignore": list(spec.get("ignore") or []),
    }


def normalize_state(state: Any, ignore: list[str] | None = None) -> Any:
    """The state as compared: a JSON round trip (tuples → lists, int keys → str) minus ignored paths."""
    import json

    normalized = json.loads(canonical_json(state))
    for path in ignore or []:
        _drop_path(normalized, path.split("."))
    return normalized


def state_hash(state: Any, ignore: list[str] | None = None) -> str:
    """sha256 of the normalized state's canonical JSON (sorted keys): equal states, equal hashes."""
    return sha256_text(canonical_json(normalize_state(state, ignore)))


def reference_actions(reference_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool calls of a demonstration, in order: the contributor's actions on the task."""
    actions = []
    for message in reference_messages or []:
        if message.get("role") == "assistant":
            actions.extend(message.get("tool_calls") or [])
    return actions


def replay(env_cls: type[Environment], initial_state: dict | None, actions: list[dict]) -> Environment:
    """Run actions on a fresh environment through the sandbox (a broken reference cannot crash eval)."""
    env = env_cls(copy.deepcopy(initial_state) if initial_state is not None else None)
    sandbox = Sandbox(env, max_calls=max(len(actions), 1))
    for action in actions:
        sandbox.execute(action)
    return env


def check_episode(
    check: dict[str, Any],
    end_state: dict[str, Any] | None,
    final_answer: str,
    expected_state: dict[str, Any] | None,
) -> CheckResult:
    """Reward 1 only if the end state matches (hash + named facts) and the answer holds every string.

    `check` is the output of `read_check`; `expected_state` the replayed reference end state (None
    when the task has no environment, in which case only the answer is checked).
    """
    expected_hash = actual_hash = None
    state_ok = True
    if check["compare_state"] and expected_state is not None:
        expected_hash = state_hash(expected_state, check["ignore"])
        actual_hash = state_hash(end_state if end_state is not None else {}, check["ignore"])
        state_ok = expected_hash == actual_hash
    failed_facts = [p for p, v in check["state"].items() if not _fact_holds(end_state, p, v)]
    state_ok = state_ok and not failed_facts
    answer = (final_answer or "").casefold()
    missing = [s for s in check["answer_contains"] if s.casefold() not in answer]
    answer_ok = not missing
    return CheckResult(
        reward=1.0 if state_ok and answer_ok else 0.0,
        state_ok=state_ok,
        answer_ok=answer_ok,
        expected_hash=expected_hash,
        actual_hash=actual_hash,
        failed_facts=failed_facts,
        missing_strings=missing,
    )


def _fact_holds(state: Any, path: str, expected: Any) -> bool:
    value: Any = normalize_state(state) if state is not None else None
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False
    return normalize_state(value) == normalize_state(expected)


def _drop_path(value: Any, parts: list[str]) -> None:
    if not parts or not isinstance(value, dict):
        return
    if len(parts) == 1:
        value.pop(parts[0], None)
    elif parts[0] == "*":
        for child in value.values():
            _drop_path(child, parts[1:])
    else:
        _drop_path(value.get(parts[0]), parts[1:])

"""Recording a demonstration: the contributor acts as the agent, one tool call at a time.

A draft is a JSON file under `<run>/studio/drafts/<contributor>/record/`: the task (picked from
the contributor's own tasks, or a new instruction for an environment), the environment's state
after the calls so far, and the conversation. Each call runs in the sandbox on that state and
its result is appended; the final reply ends the draft, which is saved as a `task` record (when
new) and a `demonstration` record through `store.save_records`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from replica.agents.envs.base import available_environments, get_environment
from replica.agents.sandbox import INVALID_ARGUMENTS, UNKNOWN_TOOL, Sandbox
from replica.artifacts import atomic_write_json, utc_now
from replica.data.records import Demonstration, Task, parse_record
from replica.data.sources import iter_items
from replica.errors import UserError
from replica.studio.site import StudioSite
from replica.studio.store import build, new_id, save_records

DEFAULT_SYSTEM = "You are a support agent. Resolve the request with the tools, then write the reply."


def own_tasks(site: StudioSite, contributor: str) -> dict[str, Task]:
    """The tasks in the contributor's file that run in an environment, by id (unreadable lines skipped:
    `replica data validate` reports those)."""
    path = site.data_file(contributor)
    tasks: dict[str, Task] = {}
    if not path.is_file():
        return tasks
    for item in iter_items(path):
        if item.obj is None or item.obj.get("kind") != "task":
            continue
        try:
            task = parse_record(item.obj)
        except ValidationError:
            continue
        if isinstance(task, Task) and task.env:
            tasks.setdefault(task.id, task)
    return tasks


def new_task(instruction: str, env: str, initial_state: str, system: str | None) -> Task:
    """A task from the "write a new instruction" form; raises UserError naming the bad field."""
    if not instruction.strip():
        raise UserError("instruction: write what the user asks for")
    if env not in available_environments():
        raise UserError(f"environment: expected one of {', '.join(available_environments())}, found {env!r}")
    environment = get_environment(env)()
    if initial_state.strip():
        try:
            state = json.loads(initial_state)
        except json.JSONDecodeError as err:
            raise UserError(f"initial state: not JSON ({err.msg} at char {err.pos})") from None
        if not isinstance(state, dict):
            raise UserError(f"initial state: expected a JSON object, found {type(state).__name__}")
    else:
        state = environment.default_state()
    return Task(
        id=new_id("task"),
        instruction=instruction.strip(),
        system=(system or "").strip() or DEFAULT_SYSTEM,
        tools=environment.tool_schemas(),
        env=env,
        initial_state=state,
        tags=["studio"],
    )


# --------------------------------------------------------------------------- drafts


def start_draft(site: StudioSite, contributor: str, task: Task) -> str:
    """A new draft of `task`; returns its id."""
    draft_id = new_id("x")[-12:]
    messages = [{"role": "system", "content": task.system}] if task.system else []
    messages.append({"role": "user", "content": task.instruction})
    environment = get_environment(task.env)(task.initial_state)  # type: ignore[arg-type]
    draft = {
        "id": draft_id,
        "task": task.model_dump(mode="json", exclude_none=True),
        "state": environment.snapshot(),
        "messages": messages,
        "created_at": utc_now(),
    }
    atomic_write_json(site.draft_file(contributor, "record", draft_id), draft)
    return draft_id


def load_draft(site: StudioSite, contributor: str, draft_id: str) -> dict[str, Any]:
    return site.read_draft(contributor, "record", draft_id)


def discard_draft(site: StudioSite, contributor: str, draft_id: str) -> None:
    site.draft_file(contributor, "record", draft_id).unlink(missing_ok=True)


def tools_of(draft: dict[str, Any]) -> list[dict[str, Any]]:
    task = draft["task"]
    return task.get("tools") or get_environment(task["env"])().tool_schemas()


def call_tool(
    site: StudioSite, contributor: str, draft: dict[str, Any], name: str, arguments: dict[str, Any]
) -> str | None:
    """Run one call in the sandbox on the draft's state and keep it; returns an error to show, or None.

    A call the sandbox refuses before running (unknown tool, arguments that break the schema) is
    not kept: a demonstration holding it could not be saved. A call the tool itself refuses
    (no such order, amount too high) is kept, with its result, as a person's real step.
    """
    environment = get_environment(draft["task"]["env"])(draft["state"])
    sandbox = Sandbox(environment)
    call_id = f"call_{sum(len(m.get('tool_calls') or []) for m in draft['messages']) + 1}"
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    outcome = sandbox.execute(call)
    if outcome.error in (UNKNOWN_TOOL, INVALID_ARGUMENTS):
        return json.loads(outcome.message["content"])["message"]
    draft["messages"].append({"role": "assistant", "tool_calls": [call]})
    draft["messages"].append(outcome.message)
    draft["state"] = environment.snapshot()
    atomic_write_json(site.draft_file(contributor, "record", draft["id"]), draft)
    return None


def undo_last_call(site: StudioSite, contributor: str, draft: dict[str, Any]) -> bool:
    """Take back the last tool call: the state is rebuilt by replaying the calls before it from the
    task's initial state (tools change state, so it cannot simply be restored). False when none."""
    messages = draft["messages"]
    last = max((i for i, m in enumerate(messages) if m.get("tool_calls")), default=None)
    if last is None:
        return False
    kept = messages[:last]
    environment = get_environment(draft["task"]["env"])(draft["task"].get("initial_state"))
    sandbox = Sandbox(environment)
    for message in kept:
        for call in message.get("tool_calls") or []:
            sandbox.execute(call)
    draft["messages"], draft["state"] = kept, environment.snapshot()
    atomic_write_json(site.draft_file(contributor, "record", draft["id"]), draft)
    return True


def finish(site: StudioSite, contributor: str, draft: dict[str, Any], reply: str) -> str:
    """Save the draft with its final reply as a demonstration; returns the demonstration id.

    Raises NotSaved (from store) when `replica data validate` would reject it.
    """
    task = Task.model_validate(draft["task"])
    messages = [*draft["messages"], {"role": "assistant", "content": reply.strip()}]
    demonstration = build(
        Demonstration,
        {
            "id": new_id("demo"),
            "contributor_id": contributor,
            "task_id": task.id,
            "tools": tools_of(draft),
            "recorded_at": utc_now(),
            "source": {"format": "replica-studio", "draft": draft["id"]},
            "messages": messages,
        },
    )
    save_records(site, contributor, [task, demonstration])
    discard_draft(site, contributor, draft["id"])
    return demonstration.id  # type: ignore[attr-defined]

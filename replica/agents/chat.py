"""The terminal doors: `replica chat` (interactive, streamed) and `replica run` (one episode).

`chat` streams each reply as it is generated. With an environment attached (`--env`), the
replica's tool calls run in the sandboxed environment and are shown with their results, and the
replica continues until it answers. Ctrl-D or Ctrl-C leaves cleanly at any point.
Commands inside the chat: `/reset` (new conversation, fresh environment), `/state`, `/quit`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from replica.agents.replica import ContextTooLong, Replica, load_replica
from replica.agents.wire import ContentHoldback
from replica.errors import UserError

PROMPT = "you> "


def chat(
    run_dir: str | Path,
    contributor: str,
    stage: str | None = None,
    env: str | None = None,
    device: str = "auto",
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    max_turns: int = 8,
    out: TextIO | None = None,
) -> None:
    """Chat with a contributor's replica in the terminal until Ctrl-D, Ctrl-C or /quit."""
    out = out or sys.stdout  # looked up per call: tests and tools swap sys.stdout
    replica = load_replica(run_dir, contributor, stage, device=device)
    session = ChatSession(replica, env, max_new_tokens, temperature, max_turns, out)
    tools = ", ".join(session.tool_names()) or "none (attach an environment with --env)"
    out.write(f"replica chat: {replica.contributor} ({replica.stage}) on {replica.base_model}\n")
    out.write(
        f"tools: {tools}\nCtrl-D or Ctrl-C to leave; /reset starts over; /state shows the environment\n"
    )
    out.flush()
    try:
        while True:
            line = input(PROMPT).strip()
            if line in ("/quit", "/exit"):
                break
            if line:
                session.handle(line)
    except (EOFError, KeyboardInterrupt):
        pass
    out.write("\nbye\n")
    out.flush()


class ChatSession:
    """One conversation with a replica, optionally acting in a tool environment."""

    def __init__(
        self,
        replica: Replica,
        env: str | None,
        max_new_tokens: int,
        temperature: float,
        max_turns: int,
        out: TextIO,
    ):
        self.replica, self.env_name, self.out = replica, env, out
        self.max_new_tokens, self.temperature, self.max_turns = max_new_tokens, temperature, max_turns
        self.messages: list[dict[str, Any]] = []
        self.sandbox = None
        self.reset()

    def reset(self) -> None:
        from replica.agents.envs.base import get_environment
        from replica.agents.sandbox import Sandbox

        self.messages = []
        self.sandbox = Sandbox(get_environment(self.env_name)()) if self.env_name else None

    def tool_names(self) -> list[str]:
        return sorted(self.sandbox.env.tools()) if self.sandbox else []

    def handle(self, line: str) -> None:
        """A user line: a /command, or a message the replica answers (running its tool calls)."""
        if line == "/reset":
            self.reset()
            self.out.write("(new conversation)\n")
        elif line == "/state":
            state = self.sandbox.env.snapshot() if self.sandbox else None
            self.out.write(json.dumps(state, indent=2) + "\n")
        else:
            self.messages.append({"role": "user", "content": line})
            self.respond()
        self.out.flush()

    def respond(self) -> None:
        """Generate turns until the replica answers without tool calls (or max_turns is reached)."""
        tools = self.sandbox.env.tool_schemas() if self.sandbox else None
        for _ in range(self.max_turns):
            try:
                message = self.stream_turn(tools)
            except ContextTooLong as err:
                self.out.write(f"\n  ({err}; /reset starts over)\n")
                return
            self.messages.append(message)
            calls = message.get("tool_calls") or []
            if not calls:
                return
            if self.sandbox is None:
                self.out.write("  (tool calls above were not run: no environment attached, see --env)\n")
                return
            for call in calls:
                outcome = self.sandbox.execute(call)
                self.messages.append(outcome.message)
                self.out.write(f"  <- {outcome.message.get('content')}\n")
        self.out.write(f"  (stopped after {self.max_turns} turns without a final answer)\n")

    def stream_turn(self, tools: list[dict] | None) -> dict[str, Any]:
        """One assistant turn, its text streamed to the terminal and its tool calls shown."""
        marker = "<tool_call>" if "<tool_call>" in self.replica.tokenizer.get_vocab() else None
        holdback = ContentHoldback(marker)
        self.out.write(f"{self.replica.contributor}> ")
        self.out.flush()

        def show(piece: str) -> None:
            if text := holdback.push(piece):
                self.out.write(text)
                self.out.flush()

        completion = self.replica.complete(
            self.messages, tools, self.max_new_tokens, self.temperature, on_text=show
        )
        self.out.write(holdback.rest(completion.message.get("content") or "") + "\n")
        for call in completion.message.get("tool_calls") or []:
            function = call["function"]
            self.out.write(f"  -> {function['name']}({json.dumps(function.get('arguments', {}))})\n")
        self.out.flush()
        return completion.message


def run_once(
    run_dir: str | Path,
    contributor: str,
    instruction: str | None,
    env: str | None,
    stage: str | None = None,
    device: str = "auto",
    max_turns: int = 8,
    max_new_tokens: int = 128,
    state_file: str | Path | None = None,
    task_id: str | None = None,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """`replica run`: one episode in the environment, printing each step and the end state.

    Either an `instruction` (with `state_file`, a JSON initial state, or the environment's
    default), or `task_id`: one of the contributor's prepared held-out tasks, which brings its
    own instruction, tools, environment and initial state.
    """
    out = out or sys.stdout
    if task_id:
        task = heldout_task(run_dir, contributor, task_id)
    elif instruction:
        task = {"instruction": instruction, "initial_state": _read_state(state_file)}
    else:
        raise UserError("replica run: give an instruction or --task ID (a held-out task)")
    replica = load_replica(run_dir, contributor, stage, device=device)
    episode = replica.run(task, env=env, max_turns=max_turns, max_new_tokens=max_new_tokens)
    for message in episode.messages:
        out.write(_step_line(message) + "\n")
    end_state = episode.sandbox.env.snapshot()
    out.write(
        f"stop: {episode.stop_reason} after {episode.turns} turns, tool errors: {episode.tool_errors or 'none'}\n"
    )
    out.write("end state:\n" + json.dumps(end_state, indent=2) + "\n")
    out.flush()
    return {"stop_reason": episode.stop_reason, "turns": episode.turns, "end_state": end_state}


def heldout_task(run_dir: str | Path, contributor: str, task_id: str) -> dict[str, Any]:
    """A contributor's prepared held-out task (`<prepared>/<contributor>/tasks/heldout`) by id."""
    import yaml

    from replica.data.prepared import load_split

    config_file = Path(run_dir) / "config.yaml"
    configured = (
        yaml.safe_load(config_file.read_text())["data"].get("prepared_dir") if config_file.is_file() else None
    )
    rows = load_split(configured or Path(run_dir) / "prepared", contributor, "tasks/heldout")
    for row in rows:
        if row["id"] == task_id:
            return dict(row)
    ids = ", ".join(rows["id"][:5])
    raise UserError(f"--task {task_id!r}: not among {contributor}'s {len(rows)} held-out tasks (e.g. {ids})")


def _read_state(path: str | Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"--state {path}: cannot read a JSON environment state ({err})") from None
    if not isinstance(state, dict):
        raise UserError(f"--state {path}: expected a JSON object, found {type(state).__name__}")
    return state


def _step_line(message: dict[str, Any]) -> str:
    role = message.get("role")
    calls = message.get("tool_calls") or []
    if calls:
        shown = "; ".join(
            f"{c['function']['name']}({json.dumps(c['function'].get('arguments', {}))})" for c in calls
        )
        return f"[{role}] {message.get('content') or ''} -> {shown}".replace("]  ->", "] ->")
    return f"[{role}] {message.get('content') or ''}"

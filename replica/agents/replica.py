"""A contributor's replica as a Python object: `load_replica(...)`, then `.chat(...)` or `.run(...)`.

The base model is loaded once per (base, device) and shared: each replica is a PEFT *named
adapter* on that one model, so loading twenty replicas costs twenty small adapters, not twenty
bases. Each replica renders prompts with the tokenizer and chat template saved next to its
adapter (the ones it was trained with), and refuses to load if that template's hash differs from
the one recorded in `replica.json` — training and serving cannot drift apart silently.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from replica.agents.batcher import BasePool, GenerationRequest, GenerationResult, shared_pool
from replica.agents.envs.base import Environment, get_environment
from replica.artifacts import final_stage, read_manifest, replica_dir, sha256_file
from replica.bases import packaged, provide_base
from replica.config import ModelConfig
from replica.errors import UserError
from replica.model import load_tokenizer
from replica.templates import template_hash

if TYPE_CHECKING:
    from replica.agents.loop import Episode

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- prompts and replies


def to_template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages as the chat template wants them: tool-call arguments as dicts, not JSON text."""
    out = []
    for index, message in enumerate(messages):
        message = dict(message)
        calls = []
        for call in message.get("tool_calls") or []:
            function = dict(call.get("function") or {})
            if isinstance(function.get("arguments"), str):
                try:
                    function["arguments"] = json.loads(function["arguments"] or "{}")
                except json.JSONDecodeError:
                    raise ValueError(
                        f"messages.{index}.tool_calls: function.arguments is not valid JSON"
                    ) from None
            calls.append({**call, "function": function})
        if calls:
            message["tool_calls"] = calls
        out.append(message)
    return out


class TextStream:
    """Turns token ids into text pieces as they arrive (never splitting a UTF-8 character).

    It decodes as the response parser does (special tokens kept, the end-of-turn token dropped),
    so the streamed text adds up to the content of the parsed reply.
    """

    def __init__(self, tokenizer, stop_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_ids)
        self.ids: list[int] = []
        self.sent = 0

    def push(self, token_id: int) -> str:
        if token_id in self.stop_ids:
            return ""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        if text.endswith("\ufffd"):  # maybe half a multi-byte character: wait for the rest
            return ""
        piece, self.sent = text[self.sent :], len(text)
        return piece


@dataclass
class Completion:
    """One assistant turn: the parsed message plus what it cost."""

    message: dict[str, Any]  # {"role": "assistant", "content", "tool_calls"?} (arguments as dicts)
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop", "length", "tool_calls" or "cancelled"


# --------------------------------------------------------------------------- the replica


class ContextTooLong(UserError):
    """The conversation plus the reply budget do not fit the base model's context."""


@dataclass
class Replica:
    """A contributor's adapter on a shared base, with the tokenizer it was trained with."""

    contributor: str
    stage: str
    path: Path
    manifest: dict[str, Any]
    tokenizer: Any
    pool: BasePool
    adapter_name: str
    adapter_hash: str

    @property
    def id(self) -> str:
        return self.contributor

    @property
    def base_model(self) -> str:
        return self.pool.base_path

    @property
    def context_limit(self) -> int | None:
        """Most positions the base can attend to (prompt + reply), when its config says."""
        return getattr(self.pool.model.config, "max_position_embeddings", None)

    def check_room(self, prompt_ids: list[int], max_new_tokens: int) -> None:
        """Refuse a prompt whose reply could not fit the base's context (garbage past it, not text)."""
        limit = self.context_limit
        if limit is not None and len(prompt_ids) + max_new_tokens > limit:
            raise ContextTooLong(
                f"{len(prompt_ids)} prompt tokens + {max_new_tokens} reply tokens exceed the model's "
                f"context of {limit} tokens"
            )

    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict] | None = None) -> list[int]:
        """Render the conversation with this replica's own chat template, ready for its reply."""
        encoded = self.tokenizer.apply_chat_template(
            to_template_messages(messages), tools=tools or None, add_generation_prompt=True, return_dict=True
        )
        return list(encoded["input_ids"])

    def request(
        self, prompt_ids: list[int], max_new_tokens: int = 256, temperature: float = 0.0, on_text=None
    ) -> GenerationRequest:
        """A generation request for this replica's adapter; `on_text` receives decoded text pieces."""
        on_token = None
        if on_text is not None:
            stream = TextStream(self.tokenizer, self.pool.engine(self.tokenizer).stop_token_ids)

            def on_token(token: int) -> None:
                if piece := stream.push(token):
                    on_text(piece)

        return GenerationRequest(
            self.adapter_name, prompt_ids, max_new_tokens, temperature, on_token=on_token
        )

    def finish(self, prompt_ids: list[int], result: GenerationResult, tools: list[dict] | None) -> Completion:
        """Parse generated ids into an assistant message (tool calls included) with token counts."""
        from trl.chat_template_utils import parse_response

        message = parse_response(self.tokenizer, result.token_ids, prefix=prompt_ids, tools=tools or None)
        message = {"role": "assistant", "content": message.get("content") or "", **_calls(message)}
        reason = "tool_calls" if message.get("tool_calls") else result.finish_reason
        return Completion(message, len(prompt_ids), len(result.token_ids), reason)

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        """Generate one assistant turn; `on_text` streams its text as it is produced."""
        prompt = self.prompt_ids(messages, tools)
        self.check_room(prompt, max_new_tokens)
        streamed: list[str] = []

        def collect(piece: str) -> None:
            streamed.append(piece)
            on_text(piece)

        request = self.request(prompt, max_new_tokens, temperature, collect if on_text else None)
        result = self.pool.engine(self.tokenizer).generate([request])[0]
        completion = self.finish(prompt, result, tools)
        sent, content = "".join(streamed), completion.message["content"]
        if on_text and content.startswith(sent) and len(content) > len(sent):
            on_text(content[len(sent) :])  # characters held back at the end (an unfinished UTF-8 tail)
        return completion

    def chat(
        self, messages: list[dict[str, Any]], tools: list[dict] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The replica's next assistant message (OpenAI format; tool-call arguments as dicts)."""
        return self.complete(messages, tools, **kwargs).message

    def run(
        self,
        task_or_instruction: str | dict[str, Any] | Any,
        env: str | Environment | None = None,
        max_turns: int = 8,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> Episode:
        """One agent episode in a tool environment, driven by the one agent loop (`agents/loop.py`).

        `task_or_instruction` is an instruction, or a task (a `Task` record or a `tasks/heldout` row)
        whose `system`, `tools`, `env` and `initial_state` set up the episode. `env` is an
        environment name or instance; it overrides the task's. With `temperature` > 0, `seed`
        picks the sample (two seeds give two samples to compare).
        """
        from replica.agents.loop import Episode, GenerationSettings, run_episodes
        from replica.agents.sandbox import Sandbox

        task = _as_task(task_or_instruction)
        environment = _environment(env or task.get("env"), task.get("initial_state"))
        messages = [{"role": "system", "content": task["system"]}] if task.get("system") else []
        messages.append({"role": "user", "content": task["instruction"]})
        episode = Episode(
            messages=messages,
            tools=task.get("tools") or environment.tool_schemas(),
            sandbox=Sandbox(environment),
            adapter=self.adapter_name,
            max_turns=max_turns,
            meta={"task_id": task.get("id"), "contributor": self.contributor, "stage": self.stage},
        )
        settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        engine = self.pool.engine(self.tokenizer)
        with engine.lock:  # PEFT adapter routing is model-wide: one generation at a time
            run_episodes(self.pool.peft, self.tokenizer, [episode], settings, batch_size=1)
        return episode


def _as_task(value: Any) -> dict[str, Any]:
    """An instruction string, a Task record or a task row, as a dict with an `instruction`."""
    if isinstance(value, str):
        return {"instruction": value}
    task = value.model_dump(mode="json") if hasattr(value, "model_dump") else dict(value)
    if not task.get("instruction"):
        raise UserError("run: the task has no `instruction`")
    return task


def _environment(env: Any, initial_state: dict[str, Any] | None) -> Environment:
    """An environment instance from a name or an instance (reset to the task's initial state)."""
    if env is None:
        raise UserError("run: name an environment (env=..., e.g. support_desk); the task names none")
    if isinstance(env, Environment):
        if initial_state is not None:
            env.reset(initial_state)
        return env
    return get_environment(env)(initial_state)


def _calls(parsed: dict[str, Any]) -> dict[str, Any]:
    """Tool calls in OpenAI shape, each with an id so tool results can refer to it."""
    calls = [
        {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": call["function"]}
        for call in parsed.get("tool_calls") or []
    ]
    return {"tool_calls": calls} if calls else {}


# --------------------------------------------------------------------------- loading


def load_replica(
    path_or_run: str | Path,
    contributor: str | None = None,
    stage: str | None = None,
    device: str = "auto",
    base: str | None = None,
) -> Replica:
    """Load a contributor's replica from a run directory (or a stage directory itself).

    `stage` defaults to the contributor's final stage (`dpo` when it was trained, else `sft`).
    The base loads once per process and device; `base` overrides the base recorded in the adapter.
    """
    path = locate_adapter(Path(path_or_run), contributor, stage)
    manifest = read_manifest(path) if (path / "replica.json").is_file() else {}
    contributor = contributor or manifest.get("contributor") or path.parent.name
    stage = manifest.get("stage") or path.name
    tokenizer = load_tokenizer(str(path))
    check_template(path, manifest, tokenizer)
    pool = shared_pool(base or recorded_base(path, manifest), device)
    name = f"{contributor}@{stage}"
    pool.add_adapter(name, path)
    return Replica(
        contributor=contributor,
        stage=stage,
        path=path,
        manifest=manifest,
        tokenizer=tokenizer,
        pool=pool,
        adapter_name=name,
        adapter_hash=sha256_file(path / "adapter_model.safetensors"),
    )


def locate_adapter(path: Path, contributor: str | None, stage: str | None) -> Path:
    """A stage directory given directly, or `<run>/replicas/<contributor>/<stage or final>`."""
    if (path / "adapter_config.json").is_file():
        return path
    if not (path / "replicas").is_dir():
        raise UserError(f"{path}: neither a run directory (no replicas/) nor an adapter directory")
    if not contributor:
        raise UserError(f"{path}: a run directory holds many replicas; name the contributor")
    try:
        stage = stage or final_stage(path, contributor)
        if stage is None:
            known = ", ".join(sorted(p.name for p in (path / "replicas").iterdir() if p.is_dir()))
            raise UserError(f"{path}: no published replica for {contributor!r}; known: {known or 'none'}")
        found = replica_dir(path, contributor, stage)
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None
    if not (found / "adapter_config.json").is_file():
        raise UserError(f"{found}: no {stage} adapter for {contributor!r} (was that stage trained?)")
    return found


def recorded_base(path: Path, manifest: dict[str, Any] | None = None) -> str:
    """The base the adapter was trained on, as PEFT recorded it in adapter_config.json.

    A packaged base (`packaged:<name>` in replica.json) whose converted folder is gone, e.g. on
    another machine, is provided again (fetched and converted) instead of failing to load.
    """
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{path}/adapter_config.json: base_model_name_or_path is empty; pass base=")
    named = ((manifest or {}).get("base_model") or {}).get("name_or_path") or ""
    if not Path(base).exists() and named.startswith(packaged.PREFIX):
        return provide_base(ModelConfig(name_or_path=named))
    return base


def check_template(path: Path, manifest: dict[str, Any], tokenizer) -> None:
    """Refuse a tokenizer whose chat template differs from the one recorded at training time."""
    recorded = recorded_template_hash(manifest)
    if recorded is None:
        log.warning("%s: replica.json records no chat_template_hash; template not verified", path)
        return
    found = template_hash(tokenizer)
    if found != recorded:
        raise UserError(
            f"{path}: chat template hash {found[:12]} differs from replica.json chat_template_hash "
            f"{recorded[:12]} (the tokenizer files were changed after training)"
        )


def recorded_template_hash(manifest: dict[str, Any]) -> str | None:
    """`chat_template_hash` at the top of replica.json, or inside one of its sections (e.g. `base`)."""
    if isinstance(manifest.get("chat_template_hash"), str):
        return manifest["chat_template_hash"]
    for value in manifest.values():
        if isinstance(value, dict) and isinstance(value.get("chat_template_hash"), str):
            return value["chat_template_hash"]
    return None


def discover_replicas(run_dir: str | Path) -> dict[str, Path]:
    """Every contributor in a run with a published replica, mapped to its final stage directory."""
    root = Path(run_dir) / "replicas"
    if not root.is_dir():
        raise UserError(f"{run_dir}: no replicas/ directory (train first: replica train CONFIG)")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        stage = final_stage(run_dir, folder.name)
        if stage is not None:
            found[folder.name] = replica_dir(run_dir, folder.name, stage)
    return found

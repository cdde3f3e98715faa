"""The record models every stage agrees on: contributors, tasks, demonstrations and feedback.

One pydantic model per kind. Each model carries a `kind` tag, so one line of the native
"replica JSONL" format is simply `record.model_dump_json()` and is parsed back with
`parse_record`. Importers map foreign formats onto these models; nothing downstream knows a
foreign format.

Messages are OpenAI chat format. Tool-call `arguments` are always a dict: a JSON string (as in
OpenAI's own files) is decoded once on the way in, and anything that is not a JSON object is an
error rather than a guess.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from replica import safe_json
from replica.artifacts import canonical_json, sha256_text

SLUG_PATTERN = r"^[a-z0-9_-]{1,64}$"
# Task and record ids come from foreign data too ("retail-12", "#W2378156", "call_id"), so they
# are only required to be non-empty and free of whitespace and control characters.
ID_PATTERN = r"^[^\s\x00-\x1f]{1,200}$"

Role = Literal["system", "user", "assistant", "tool"]
Scope = Literal["allowed", "not_allowed"]
RecordKind = Literal["contributor", "task", "demonstration", "preference", "rating", "rewrite"]


class _Strict(BaseModel):
    """Unknown keys are errors (a typo must not silently lose a field)."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- messages


class FunctionCall(_Strict):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _decode_json_string(cls, value: Any) -> Any:
        """OpenAI files carry arguments as a JSON string: decode it once, keep it only if it is an object."""
        if isinstance(value, str):
            try:
                decoded = safe_json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"arguments string is not valid JSON ({err.msg} at char {err.pos})"
                ) from None
            except safe_json.TooDeep as err:
                raise ValueError(f"arguments string is not valid JSON ({err})") from None
            if not isinstance(decoded, dict):
                raise ValueError(
                    f"arguments must decode to a JSON object, found {type(decoded).__name__}: {value[:60]!r}"
                )
            return decoded
        return value


class ToolCall(_Strict):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Strict):
    """One chat message. `tool_calls` only on assistant turns, `tool_call_id` only on tool turns."""

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _role_fields(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"tool_calls are only allowed on assistant messages, found role {self.role!r}")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.role != "assistant" and self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        return self

    def to_chat(self) -> dict[str, Any]:
        """The message as a plain dict for chat templates, without keys nobody set."""
        return self.model_dump(exclude_none=True)


def _coerce_messages(value: Any, role: Role) -> Any:
    """A bare string is shorthand for one message of `role` (user for prompts, assistant for responses)."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, dict):
        return [value]
    return value


Messages = Annotated[list[Message], Field(min_length=1)]


class ToolSchema(BaseModel):
    """An OpenAI function tool: `{"type": "function", "function": {"name", "description", "parameters"}}`.

    Extra keys are kept as recorded (they round-trip into the chat template unchanged).
    """

    model_config = ConfigDict(extra="allow")

    type: Literal["function"] = "function"
    function: dict[str, Any]

    @field_validator("function")
    @classmethod
    def _named(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("name"), str) or not value["name"]:
            raise ValueError("a tool's function needs a non-empty string `name`")
        params = value.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise ValueError(
                f"function.parameters must be a JSON schema object, found {type(params).__name__}"
            )
        if params and (problem := schema_problem(canonical_json(params))):
            raise ValueError(f"function.parameters is not a valid JSON Schema: {problem}")
        return value

    @property
    def name(self) -> str:
        return self.function["name"]


@lru_cache(maxsize=512)
def schema_problem(schema_json: str) -> str | None:
    """Why a tool's parameter schema is not a valid JSON Schema (None when it is), so the argument
    check never runs jsonschema on a broken schema (which raises instead of reporting)."""
    from jsonschema import Draft202012Validator, SchemaError

    try:
        Draft202012Validator.check_schema(json.loads(schema_json))
    except SchemaError as err:
        where = "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in err.absolute_path)
        return f"{where or 'top level'}: {err.message}"
    return None


# --------------------------------------------------------------------------- contributors and tasks


class Consent(_Strict):
    """What a contributor allows their data and replica to be used for."""

    train: Scope = Field(description="May their records train a replica?")
    serve: Scope = Field(description="May their replica answer requests?")
    share: Scope = Field(description="May their replica or data be shared with other parties?")
    license: str = Field(min_length=1, description="License the contribution is given under, e.g. CC-BY-4.0.")
    granted_at: datetime
    revoked_at: datetime | None = None

    def allows(self, scope: Literal["train", "serve", "share"]) -> bool:
        """True when `scope` is allowed and the consent has not been revoked."""
        return self.revoked_at is None and getattr(self, scope) == "allowed"


class Contributor(_Strict):
    kind: Literal["contributor"] = "contributor"
    id: str = Field(pattern=SLUG_PATTERN, description="Slug: lowercase letters, digits, - and _; 1-64 chars.")
    name: str = Field(min_length=1, description="Display name.")
    consent: Consent


class TaskCheck(_Strict):
    """How to tell a task was done: facts about the final environment state and/or the answer text."""

    state: dict[str, Any] = Field(
        default_factory=dict,
        description="Expected final-state facts: dotted path into the environment state -> expected value.",
    )
    answer_contains: list[str] = Field(
        default_factory=list, description="Strings the final answer must contain (case-insensitive)."
    )
    compare_state: bool = Field(
        True, description="Also compare the end state with the one the reference actions reach."
    )
    ignore: list[str] = Field(
        default_factory=list, description="Dotted state paths left out of that comparison (timestamps, logs)."
    )


class Task(_Strict):
    kind: Literal["task"] = "task"
    id: str = Field(pattern=ID_PATTERN)
    instruction: str = Field(min_length=1, description="The user message that starts the task.")
    system: str | None = None
    tools: list[ToolSchema] | None = None
    env: str | None = Field(None, description="Registered environment name the task runs in.")
    initial_state: dict[str, Any] | None = None
    check: TaskCheck | None = None
    tags: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- demonstrations and feedback


class _Contributed(_Strict):
    """Fields shared by every record a contributor makes."""

    id: str = Field(pattern=ID_PATTERN)
    contributor_id: str = Field(pattern=SLUG_PATTERN)
    tools: list[ToolSchema] | None = None
    recorded_at: datetime | None = None
    source: dict[str, Any] = Field(
        default_factory=dict, description="Where the record came from (format, file, line, original id)."
    )


class Demonstration(_Contributed):
    """A contributor doing a task: the whole conversation, tool calls and tool results included."""

    kind: Literal["demonstration"] = "demonstration"
    task_id: str = Field(pattern=ID_PATTERN)
    messages: Messages


class _Feedback(_Contributed):
    task_id: str | None = Field(None, pattern=ID_PATTERN)
    prompt: Messages
    annotator: str | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shorthand(cls, value: Any) -> Any:
        return _coerce_messages(value, "user")


class PreferencePair(_Feedback):
    kind: Literal["preference"] = "preference"
    chosen: Messages
    rejected: Messages

    @field_validator("chosen", "rejected", mode="before")
    @classmethod
    def _response_shorthand(cls, value: Any) -> Any:
        return _coerce_messages(value, "assistant")


class Rating(_Feedback):
    """A judged response: an overall score and/or per-aspect scores, 1-5."""

    kind: Literal["rating"] = "rating"
    response: Messages
    score: float | None = Field(None, ge=1, le=5)
    aspects: dict[str, Annotated[float, Field(ge=1, le=5)]] | None = None
    critique: str | None = None

    @field_validator("response", mode="before")
    @classmethod
    def _response_shorthand(cls, value: Any) -> Any:
        return _coerce_messages(value, "assistant")

    @model_validator(mode="after")
    def _has_score(self) -> Rating:
        if self.score is None and not self.aspects:
            raise ValueError("a rating needs `score` (1-5) or `aspects` ({aspect: 1-5})")
        return self

    @property
    def value(self) -> float:
        """The score used to rank responses: the mean of the aspect ratings, else the overall score."""
        if self.aspects:
            return sum(self.aspects.values()) / len(self.aspects)
        return float(self.score)  # type: ignore[arg-type]


class Rewrite(_Feedback):
    """An expert's rewrite of a response: the rewrite is preferred over the original."""

    kind: Literal["rewrite"] = "rewrite"
    original: Messages
    rewritten: Messages
    critique: str | None = None

    @field_validator("original", "rewritten", mode="before")
    @classmethod
    def _response_shorthand(cls, value: Any) -> Any:
        return _coerce_messages(value, "assistant")


AnyRecord = Annotated[
    Contributor | Task | Demonstration | PreferencePair | Rating | Rewrite, Field(discriminator="kind")
]
RECORD_TYPES: dict[str, type[BaseModel]] = {
    "contributor": Contributor,
    "task": Task,
    "demonstration": Demonstration,
    "preference": PreferencePair,
    "rating": Rating,
    "rewrite": Rewrite,
}
_ANY = TypeAdapter(AnyRecord)


def parse_record(
    data: dict[str, Any],
) -> Contributor | Task | Demonstration | PreferencePair | Rating | Rewrite:
    """Validate one native-format object (it must carry `kind`). Raises pydantic.ValidationError."""
    return _ANY.validate_python(data)


# --------------------------------------------------------------------------- content hashes

# Fields that say where or when a record was made, not what it says: two records that differ
# only here are duplicates.
_NOT_CONTENT = {"id", "source", "recorded_at", "annotator"}
_SPACE = re.compile(r"\s+")


def _normalize(data: dict[str, Any]) -> dict[str, Any]:
    """Collapse whitespace in free text (message contents, top-level strings such as critiques).

    Tool schemas and call arguments are left exactly as recorded: they are data, not prose.
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, str):
            value = _SPACE.sub(" ", value).strip()
        elif isinstance(value, list) and value and isinstance(value[0], dict) and "role" in value[0]:
            value = [
                {**m, "content": _SPACE.sub(" ", m["content"]).strip()}
                if isinstance(m.get("content"), str)
                else m
                for m in value
            ]
        out[key] = value
    return out


def content_hash(record: BaseModel) -> str:
    """sha256 of the record's normalized content (whitespace in text collapsed; ids, source, times ignored).

    Used for deduplication and written to manifests as the provenance of what trained a replica.
    """
    data = record.model_dump(mode="json", exclude=_NOT_CONTENT, exclude_none=True)
    return sha256_text(canonical_json(_normalize(data)))


def normalize_text(text: str) -> str:
    """Lowercased, whitespace-collapsed text: what the leakage check compares."""
    return _SPACE.sub(" ", text).strip().lower()


def to_line(record: BaseModel) -> str:
    """One native-format JSONL line (no newline): `kind` first, unset optional fields left out."""
    data = record.model_dump(mode="json", exclude_none=True)
    return json.dumps({"kind": data.pop("kind"), **data}, ensure_ascii=False)

"""The OpenAI wire format of the server: request schema, errors, body limit, streamed text, replies."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from replica import safe_json
from replica.data import records
from replica.data.checks import check_conversation


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        body = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before anything reads it.

    A declared Content-Length is checked up front; a chunked body is counted as it arrives.
    """

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, receive, send)
        body = bytearray()
        while True:  # read the whole body first (bounded), then replay it to the app
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await self._too_large(scope, receive, send)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send) -> None:
        error = ApiError(413, f"request body is larger than the limit of {self.limit} bytes (max_body_bytes)")
        await error.response()(scope, receive, send)


def openai_message(message: dict[str, Any]) -> dict[str, Any]:
    """An assistant message in OpenAI wire format: tool-call arguments as JSON text."""
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content") or None}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {
                    "name": call["function"]["name"],
                    "arguments": json.dumps(call["function"].get("arguments", {})),
                },
            }
            for call in message["tool_calls"]
        ]
    return out


class ContentHoldback:
    """Streams a reply's text but holds back whatever may be the start of a tool call.

    OpenAI streams tool calls as structured deltas, not text: once the tool-call marker appears,
    the rest is parsed at the end and sent as `tool_calls`. Text before it streams as content.
    """

    def __init__(self, marker: str | None) -> None:
        self.marker = marker
        self.text = ""
        self.sent = 0
        self.held = False

    def push(self, piece: str) -> str:
        """Add generated text; return the part that can safely go out as content now."""
        self.text += piece
        if self.held:
            return ""
        end = len(self.text)
        if self.marker:
            found = self.text.find(self.marker)
            if found >= 0:
                self.held, end = True, found
            else:
                end -= self._partial_marker()
        out, self.sent = self.text[self.sent : end], max(self.sent, end)
        return out

    def rest(self, final_content: str) -> str:
        """Content still owed at the end (the parsed reply's content past what was sent)."""
        sent = self.text[: self.sent]
        return final_content[len(sent) :] if final_content.startswith(sent) else ""

    def _partial_marker(self) -> int:
        """Length of the longest tail of the text that begins the marker."""
        for size in range(min(len(self.marker), len(self.text)), 0, -1):
            if self.marker.startswith(self.text[-size:]):
                return size
        return 0


# --------------------------------------------------------------------------- request schema


class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use


class ToolCall(_Open):
    id: str | None = None
    type: Literal["function"] = "function"
    function: dict[str, Any]


class Message(_Open):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def plain(self) -> dict[str, Any]:
        """The message for the chat template: content parts joined into text, unset keys dropped."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        out = self.model_dump(exclude_none=True) | {"content": content or ""}
        return out


SAMPLING_EPS = 1e-5  # temperatures below this decode greedily (ChatRequest._near_zero_is_greedy)


class ChatRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=1, description="One choice per request.")
    stop: str | list[str] | None = None

    @field_validator("temperature")
    @classmethod
    def _near_zero_is_greedy(cls, value: float) -> float:
        # Dividing logits by a temperature like 1e-300 overflows to inf and NaN probabilities,
        # which fails the whole batch (other clients' requests too). Below SAMPLING_EPS sampling
        # is greedy in all but name, so it is decoded greedily, as vLLM does (_SAMPLING_EPS).
        return 0.0 if value < SAMPLING_EPS else value

    @field_validator("stop")
    @classmethod
    def _no_stop(cls, value: str | list[str] | None) -> None:
        if value:  # silently ignoring them would return text the client asked to cut
            raise ValueError("stop sequences are not supported; replies end at the end-of-turn token")
        return None


def parse_body(raw: bytes) -> ChatRequest:
    """Validate a chat request body; 400 names the field at fault.

    The body is decoded under a nesting limit (replica/safe_json.py), and the conversation must
    follow the same rules as training data (replica/data/checks.py): a tool result answers an
    earlier tool call, tool calls name declared tools with fitting arguments, no empty turns.
    """
    try:
        data = safe_json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError and TooDeep are ValueErrors
        raise ApiError(400, f"request body is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, found {type(data).__name__}")
    try:
        body = ChatRequest.model_validate(data)
    except ValidationError as err:
        raise _invalid(err) from None
    check_messages(body)
    return body


def check_messages(body: ChatRequest) -> None:
    """400 unless the conversation passes the data layer's checks for a training conversation."""
    messages = []
    for index, message in enumerate(body.messages):
        try:
            messages.append(records.Message.model_validate(message.plain()))
        except ValidationError as err:
            raise _invalid(err, prefix=("messages", index)) from None
    tools = []
    for index, tool in enumerate(body.tools or []):
        try:
            tools.append(records.ToolSchema.model_validate(tool))
        except ValidationError as err:
            raise _invalid(err, prefix=("tools", index)) from None
    found = check_conversation(
        messages, tools or None, lambda i: f"messages.{i}", must_end_with_assistant=False
    )
    if found:
        param, reason = found[0]
        raise ApiError(400, f"{param}: {reason}", param)


def _invalid(err: ValidationError, prefix: tuple = ()) -> ApiError:
    first = err.errors()[0]
    param = ".".join(str(part) for part in (*prefix, *first["loc"]))
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(400, f"{param}: {message}" if param else message, param or None)

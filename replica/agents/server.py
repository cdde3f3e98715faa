"""`replica serve`: an OpenAI-compatible HTTP API over every replica of a run, on one shared base.

Endpoints: `GET /v1/models`, `POST /v1/chat/completions` (JSON or server-sent events), and
`GET /health` (no key needed). Every other request needs `Authorization: Bearer <key>` (keys from
`replica keys create`). Order of checks: body size (413), key (401), body shape (400), replica
exists (404), contributor's serve consent (403), then generation. Each answered request is written
to the usage ledger before its answer (or the stream's last event) is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from replica.agents.batcher import Batcher, GenerationRequest
from replica.agents.consent import ConsentBook
from replica.agents.keys import KeyStore
from replica.agents.replica import Completion, ContextTooLong, Replica, discover_replicas, load_replica
from replica.agents.serve_config import ServeConfig, load_serve_config
from replica.agents.usage import UsageLedger, UsageRow
from replica.agents.wire import ApiError, BodyLimit, ChatRequest, ContentHoldback, openai_message, parse_body
from replica.errors import UserError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- server state


@dataclass
class ServeState:
    """Everything a request needs: the replicas on one base, the batcher, keys, consent, ledger."""

    config: ServeConfig
    replicas: dict[str, Replica]
    batcher: Batcher
    keys: KeyStore
    consent: ConsentBook
    ledger: UsageLedger
    run_dir: Path
    device: str = "auto"
    scanned_at: float = 0.0

    def discover_new(self, every_s: float = 5.0) -> None:
        """Load replicas published since start-up onto the same base (at most once per `every_s`)."""
        if time.monotonic() - self.scanned_at < every_s:
            return
        self.scanned_at = time.monotonic()
        pool = next(iter(self.replicas.values())).pool
        for contributor, path in discover_replicas(self.run_dir).items():
            if contributor in self.replicas:
                continue
            replica = load_replica(path, contributor, device=self.device)
            if replica.pool is not pool:
                log.warning("%s: trained on another base than this server's; not served", path)
                continue
            self.replicas[contributor] = replica
            log.info("now serving %s (%s)", contributor, replica.stage)

    def close(self) -> None:
        self.batcher.close()
        self.ledger.close()


def build_state(run_dir: str | Path, config: ServeConfig, device: str = "auto") -> ServeState:
    """Load every published replica of the run onto one base and open keys, consent and ledger."""
    found = discover_replicas(run_dir)
    if not found:
        raise UserError(f"{run_dir}: no published replicas to serve")
    replicas = {c: load_replica(path, c, device=device) for c, path in found.items()}
    first = next(iter(replicas.values()))
    if len({r.pool for r in replicas.values()}) != 1:
        raise UserError(f"{run_dir}: replicas were trained on different bases; serve one base per server")
    engine = first.pool.engine(first.tokenizer)
    consent = config.contributors_file or Path(run_dir) / "prepared" / "contributors.jsonl"
    return ServeState(
        config=config,
        replicas=replicas,
        batcher=Batcher(engine, config.max_batch, config.batch_wait_ms / 1000),
        keys=KeyStore(config.path(run_dir, config.keys_db)),
        consent=ConsentBook(consent),
        ledger=UsageLedger(config.path(run_dir, config.usage_db)),
        run_dir=Path(run_dir),
        device=device,
        scanned_at=time.monotonic(),
    )


# --------------------------------------------------------------------------- the app


def create_app(state: ServeState) -> FastAPI:
    """The FastAPI app over a loaded ServeState."""
    app = FastAPI(title="replica", docs_url=None, redoc_url=None)
    app.state.serve = state
    app.add_middleware(BodyLimit, limit=state.config.max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return err.response()

    @app.get("/health")
    async def health() -> dict:
        engine = state.batcher.engine
        return {
            "status": "ok",
            "replicas": len(state.replicas),
            "batches": engine.batches,
            "largest_batch": engine.largest_batch,
        }

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        authenticate(state, request)
        data = [
            {
                "id": replica.id,
                "object": "model",
                "created": int(replica.path.stat().st_mtime),
                "owned_by": replica.contributor,
                "parent": replica.base_model,
                "root": replica.base_model,
                "stage": replica.stage,
                "adapter_hash": replica.adapter_hash,
            }
            for replica in state.replicas.values()
            if state.consent.refusal(replica.contributor) is None
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        started = time.monotonic()
        consumer = authenticate(state, request)
        body = parse_body(await request.body())
        if body.model not in state.replicas:  # published after start-up? (no base reload)
            await asyncio.to_thread(state.discover_new)
        replica = state.replicas.get(body.model)
        if replica is None:
            raise ApiError(
                404,
                f"replica {body.model!r} does not exist; GET /v1/models lists them",
                "model",
                "model_not_found",
            )
        if reason := state.consent.refusal(replica.contributor):
            raise ApiError(403, reason, "model", "consent_not_granted")
        call = prepare_call(state, replica, body, consumer, request.headers.get("x-request-id"))
        if body.stream:
            return StreamingResponse(stream_events(state, call, started), media_type="text/event-stream")
        try:
            completion = await run_call(state, call)
        except Exception as err:  # a failed generation is answered (500) and recorded, not billed
            log.exception("generation failed for %s", call.request_id)
            await record(state, call, None, started, "error")
            raise ApiError(500, f"generation failed: {err}") from None
        await record(state, call, completion, started, "ok")
        return JSONResponse(completion_body(call, completion), headers={"X-Request-Id": call.request_id})

    return app


def authenticate(state: ServeState, request: Request) -> str:
    """The consumer name of the request's API key, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "missing API key: send Authorization: Bearer <key> (replica keys create)")
    consumer = state.keys.consumer(key.strip())
    if consumer is None:
        raise ApiError(401, "invalid or revoked API key", code="invalid_api_key")
    return consumer


# --------------------------------------------------------------------------- one call


@dataclass
class Call:
    """A validated request, rendered for its replica."""

    request_id: str
    consumer: str
    replica: Replica
    body: ChatRequest
    prompt_ids: list[int]
    max_tokens: int
    generation: GenerationRequest | None = None  # kept so a client that goes away can cancel its row


def prepare_call(
    state: ServeState, replica: Replica, body: ChatRequest, consumer: str, rid: str | None
) -> Call:
    """Check the token budget and render the prompt (template errors are the client's: 400)."""
    max_tokens = body.max_completion_tokens or body.max_tokens or state.config.default_max_tokens
    if max_tokens > state.config.max_tokens_limit:
        raise ApiError(
            400, f"max_tokens: at most {state.config.max_tokens_limit}, found {max_tokens}", "max_tokens"
        )
    if rid is not None and not (0 < len(rid) <= 128):
        raise ApiError(400, "X-Request-Id: expected 1-128 characters", "X-Request-Id")
    try:
        prompt_ids = replica.prompt_ids([m.plain() for m in body.messages], body.tools)
    except Exception as err:  # the chat template rejects this conversation
        raise ApiError(
            400, f"messages: the replica's chat template cannot render them ({err})", "messages"
        ) from None
    try:
        replica.check_room(prompt_ids, max_tokens)
    except ContextTooLong as err:
        raise ApiError(400, f"messages: {err}", "messages", "context_length_exceeded") from None
    return Call(rid or f"req-{uuid.uuid4().hex}", consumer, replica, body, prompt_ids, max_tokens)


async def run_call(state: ServeState, call: Call, on_text=None) -> Completion:
    """Queue the call on the batcher and wait for its completion."""
    request = call.replica.request(call.prompt_ids, call.max_tokens, call.body.temperature, on_text)
    request.top_p = call.body.top_p
    call.generation = request
    result = await asyncio.wrap_future(state.batcher.submit(request))
    return call.replica.finish(call.prompt_ids, result, call.body.tools)


async def record(
    state: ServeState, call: Call, completion: Completion | None, started: float, status: str
) -> None:
    """Write the ledger row (committed before the answer goes out)."""
    row = UsageRow(
        request_id=call.request_id,
        consumer=call.consumer,
        replica_id=call.replica.id,
        contributor_id=call.replica.contributor,
        adapter_hash=call.replica.adapter_hash,
        prompt_tokens=len(call.prompt_ids),
        completion_tokens=completion.completion_tokens if completion else 0,
        latency_ms=round((time.monotonic() - started) * 1000, 3),
        status=status,
    )
    await asyncio.to_thread(state.ledger.record, row)


def usage_body(call: Call, completion: Completion) -> dict[str, int]:
    prompt, done = len(call.prompt_ids), completion.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def completion_body(call: Call, completion: Completion) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{call.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.replica.id,
        "choices": [
            {
                "index": 0,
                "message": openai_message(completion.message),
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": usage_body(call, completion),
    }


# --------------------------------------------------------------------------- streaming


async def stream_events(state: ServeState, call: Call, started: float):
    """Server-sent events: a role chunk, content deltas, tool calls and finish reason, [DONE].

    The ledger row is committed before `[DONE]`; a client that leaves early cancels its row of
    the batch and is recorded as `cancelled` (not billed).
    """
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str] = asyncio.Queue()
    marker = "<tool_call>" if "<tool_call>" in call.replica.tokenizer.get_vocab() else None
    holdback = ContentHoldback(marker)
    task = asyncio.ensure_future(
        run_call(state, call, lambda p: loop.call_soon_threadsafe(pieces.put_nowait, p))
    )
    recorded = False
    try:
        yield _event(call, {"role": "assistant", "content": ""})
        while not (task.done() and pieces.empty()):
            getter = asyncio.ensure_future(pieces.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            if out := holdback.push(getter.result()):
                yield _event(call, {"content": out})
        try:
            completion = task.result()
        except Exception as err:  # the stream has started: report the failure in-band
            log.exception("generation failed for %s", call.request_id)
            await record(state, call, None, started, "error")
            recorded = True
            yield _sse(
                {
                    "error": {
                        "message": f"generation failed: {err}",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
            return
        message = openai_message(completion.message)
        if rest := holdback.rest(completion.message.get("content") or ""):
            yield _event(call, {"content": rest})
        if message.get("tool_calls"):
            calls = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
            yield _event(call, {"tool_calls": calls})
        yield _event(call, {}, completion.finish_reason)
        await record(state, call, completion, started, "ok")
        recorded = True
        if (call.body.stream_options or {}).get("include_usage"):
            yield _sse({**_chunk(call, []), "usage": usage_body(call, completion)})
        yield "data: [DONE]\n\n"
    except BaseException:  # the client went away (or the server stops): free its batch row
        if call.generation is not None:
            call.generation.cancelled.set()
        if not recorded:
            await asyncio.shield(record(state, call, None, started, "cancelled"))
        raise


def _chunk(call: Call, choices: list) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{call.request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": call.replica.id,
        "choices": choices,
    }


def _event(call: Call, delta: dict[str, Any], finish_reason: str | None = None) -> str:
    return _sse(_chunk(call, [{"index": 0, "delta": delta, "finish_reason": finish_reason}]))


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    config_path: str | Path | None = None,
    device: str = "auto",
) -> None:
    """`replica serve`: load the run's replicas once and answer until interrupted."""
    import uvicorn

    state = build_state(run_dir, load_serve_config(config_path), device)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding to %s: the API is reachable from other machines (keys still required)", host)
    shown = ", ".join(f"{r.id} ({r.stage})" for r in state.replicas.values())
    print(
        f"replica serve: {len(state.replicas)} replicas on {state.replicas[next(iter(state.replicas))].base_model}: {shown}",
        file=sys.stderr,
    )
    print(
        f"  http://{host}:{port}/v1  consent: {state.consent.path}  ledger: {state.ledger.db_path}",
        file=sys.stderr,
    )
    try:
        uvicorn.run(create_app(state), host=host, port=port, log_level="warning")
    finally:
        state.close()

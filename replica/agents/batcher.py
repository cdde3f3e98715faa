"""One shared base in memory, and generation on it: mixed-adapter batches, per-row budgets and streams.

`BasePool` holds one base model with any number of PEFT named adapters (one per replica).

`Engine.generate` runs one `model.generate` call for several requests, each on its own PEFT
named adapter (`adapter_names=`), left-padded, with each row stopping at its own end-of-turn or
token budget. `Batcher` puts a queue and one worker thread in front of an Engine so concurrent
callers (the server's requests) are grouped into such batches.

PEFT applies `adapter_names` through forward hooks registered on the whole model, so two
`generate` calls must never overlap: the Engine holds a lock around each call.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from replica.config import ModelConfig
from replica.errors import UserError
from replica.model import load_base_model, resolve_device

log = logging.getLogger(__name__)


@dataclass(eq=False)
class GenerationRequest:
    """One prompt for one adapter. `on_token` (if set) is called with each new token id, in order."""

    adapter: str
    prompt_ids: list[int]
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    on_token: Callable[[int], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def sampling_key(self) -> tuple[float, float]:
        """Requests batch together only when they sample the same way (greedy or same settings)."""
        return (0.0, 1.0) if self.temperature <= 0 else (self.temperature, self.top_p)


@dataclass
class GenerationResult:
    """New token ids (end-of-turn token included when reached) and why generation ended."""

    token_ids: list[int]
    finish_reason: str  # "stop" (end of turn) or "length" (budget spent) or "cancelled"


class _RowBudget(StoppingCriteria):
    """Stop each row at its own token budget, or when its caller went away."""

    def __init__(self, prompt_width: int, requests: list[GenerationRequest]) -> None:
        self.prompt_width = prompt_width
        self.requests = requests

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        produced = input_ids.shape[1] - self.prompt_width
        done = [produced >= r.max_new_tokens or r.cancelled.is_set() for r in self.requests]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _RowStreamer(BaseStreamer):
    """Hands each row's new tokens to that row's callback until the row has finished."""

    def __init__(self, requests: list[GenerationRequest], stop_ids: set[int]) -> None:
        self.requests = requests
        self.stop_ids = stop_ids
        self.finished = [False] * len(requests)
        self.counts = [0] * len(requests)
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt itself
            self.prompt_seen = True
            return
        for row, token in enumerate(value.tolist()):
            request = self.requests[row]
            if self.finished[row] or self.counts[row] >= request.max_new_tokens:
                continue
            self.counts[row] += 1
            if token in self.stop_ids:
                self.finished[row] = True
            if request.on_token is not None:
                try:
                    request.on_token(token)
                except Exception:  # a failing listener must not break the other rows of the batch
                    log.exception("token listener failed; cancelling its request")
                    request.cancelled.set()

    def end(self) -> None:
        pass


class Engine:
    """A PEFT model with named adapters on one base, and the token ids that end a turn."""

    def __init__(self, model, pad_token_id: int, stop_token_ids: list[int]) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.stop_token_ids = stop_token_ids
        self.lock = threading.Lock()
        self.batches = 0  # generate() calls made, for tests and the load report
        self.largest_batch = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """One batched generate() over requests that share a sampling key (checked)."""
        if len({r.sampling_key for r in requests}) != 1:
            raise ValueError("a batch must share one sampling setting (temperature, top_p)")
        width = max(len(r.prompt_ids) for r in requests)
        ids = [[self.pad_token_id] * (width - len(r.prompt_ids)) + r.prompt_ids for r in requests]
        mask = [[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in requests]
        kwargs = self._sampling_kwargs(requests[0])
        streamer = _RowStreamer(requests, set(self.stop_token_ids))
        with self.lock, torch.inference_mode():
            output = self.model.generate(
                input_ids=torch.tensor(ids, device=self.device),
                attention_mask=torch.tensor(mask, device=self.device),
                adapter_names=[r.adapter for r in requests],
                max_new_tokens=max(r.max_new_tokens for r in requests),
                stopping_criteria=StoppingCriteriaList([_RowBudget(width, requests)]),
                streamer=streamer,
                pad_token_id=self.pad_token_id,
                eos_token_id=self.stop_token_ids,
                **kwargs,
            )
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(requests))
        return [self._row_result(row, r) for row, r in zip(output[:, width:].tolist(), requests, strict=True)]

    def _sampling_kwargs(self, request: GenerationRequest) -> dict:
        if request.temperature <= 0:
            # Explicit Nones: the base's generation_config may carry sampling defaults.
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": request.temperature, "top_p": request.top_p, "top_k": None}

    def _row_result(self, row: list[int], request: GenerationRequest) -> GenerationResult:
        """Cut a row at its first end-of-turn token (kept) or its own budget."""
        row = row[: request.max_new_tokens]
        for index, token in enumerate(row):
            if token in self.stop_token_ids:
                return GenerationResult(row[: index + 1], "stop")
        reason = "cancelled" if request.cancelled.is_set() else "length"
        return GenerationResult(row, reason)


class Batcher:
    """A request queue with one worker thread that runs batches through an Engine.

    The worker takes the oldest request, waits up to `max_wait_s` for more (up to `max_batch`),
    and runs together those that share its sampling setting; the rest wait for the next batch.
    """

    def __init__(self, engine: Engine, max_batch: int = 8, max_wait_s: float = 0.01) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[tuple[GenerationRequest, Future] | None] = queue.Queue()
        self._held: list[tuple[GenerationRequest, Future]] = []
        self._thread = threading.Thread(target=self._work, name="replica-batcher", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> Future:
        """Queue a request; the future resolves to its GenerationResult (or its exception)."""
        future: Future = Future()
        self._queue.put((request, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            requests = [request for request, _ in batch]
            try:
                results = self.engine.generate(requests)
            except Exception as err:  # one bad batch fails its own requests, never the worker
                log.exception("generation failed for a batch of %d", len(batch))
                for _, future in batch:
                    future.set_exception(err)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)

    def _next_batch(self) -> list[tuple[GenerationRequest, Future]] | None:
        pending = self._held
        self._held = []
        if not pending:
            item = self._queue.get()
            if item is None:
                return None
            pending.append(item)
        deadline = time.monotonic() + self.max_wait_s
        while len(pending) < self.max_batch * 2:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # close after this batch
                break
            pending.append(item)
        key = pending[0][0].sampling_key
        batch = [item for item in pending if item[0].sampling_key == key][: self.max_batch]
        taken = {id(item) for item in batch}
        self._held = [item for item in pending if id(item) not in taken]
        return batch


# --------------------------------------------------------------------------- the shared base


class BasePool:
    """One base model in memory with any number of named LoRA adapters on it."""

    loads = 0  # base models loaded by this process (tests check that replicas share one)

    def __init__(self, base_path: str, device: str = "auto") -> None:
        config = ModelConfig(name_or_path=base_path, device=device)
        self.base_path = base_path
        self.choice = resolve_device(config)
        self.model = load_base_model(config, self.choice, base_path).eval()
        BasePool.loads += 1
        self.peft = None  # becomes a PeftModel with the first adapter
        self.adapters: dict[str, Path] = {}
        self.lock = threading.Lock()
        self._engine: Engine | None = None

    def add_adapter(self, name: str, path: Path) -> None:
        """Load a PEFT adapter under `name` (once); weights only from safetensors, never pickle."""
        from peft import PeftModel

        # Adding adapters changes the model's modules: never while a generation runs on it.
        generating = self._engine.lock if self._engine is not None else contextlib.nullcontext()
        with self.lock, generating:
            if name in self.adapters:
                return
            if not (path / "adapter_model.safetensors").is_file():
                raise UserError(f"{path}: no adapter_model.safetensors (only safetensors adapters load)")
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
            else:
                self.peft.load_adapter(str(path), adapter_name=name)
            self.peft.eval()
            self.adapters[name] = path

    def engine(self, tokenizer) -> Engine:
        """The generation engine over this pool (stop tokens taken from the first tokenizer)."""
        if self._engine is None:
            stops = {tokenizer.eos_token_id}
            configured = getattr(self.model.generation_config, "eos_token_id", None)
            stops |= set(configured if isinstance(configured, list) else [configured])
            self._engine = Engine(
                self.peft, tokenizer.pad_token_id, sorted(s for s in stops if s is not None)
            )
        return self._engine


_POOLS: dict[tuple[str, str], BasePool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(base_path: str, device: str = "auto") -> BasePool:
    """The process-wide pool for this base and device, loading the base on first use."""
    key = (str(Path(base_path).resolve()) if Path(base_path).exists() else base_path, device)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = BasePool(base_path, device)
        return _POOLS[key]

"""Reviewing a replica: run one of the contributor's tasks, show each step, save their judgment.

A review runs a task through the agent loop (`Replica.run`) with the contributor's replica of a
chosen stage, or the base under it, and keeps the episode as a draft under
`<run>/studio/drafts/<contributor>/review/`. Judgments become the feedback records `prepare`
already turns into preference pairs:

- a 1-5 score with a critique -> `rating` (pairs form between ratings of the same prompt);
- a rewritten final reply -> `rewrite` (the rewrite is chosen over the original);
- the better of two samples -> `preference` (chosen / rejected).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

from pydantic import BaseModel

from replica.agents.replica import Replica, load_replica
from replica.artifacts import REPLICA_STAGES, atomic_write_json, is_published, replica_dir, utc_now
from replica.data.records import PreferencePair, Rating, Rewrite, Task
from replica.data.sources import iter_items
from replica.studio.site import StudioSite
from replica.studio.store import NotSaved, build, new_id, save_records

BASE = "base"
SAMPLE_TEMPERATURE = 0.8  # two samples at temperature 0 would be the same answer twice


def stages(site: StudioSite, contributor: str) -> list[str]:
    """What can be reviewed: each published stage of the contributor's replica, latest first, then the base."""
    found = [s for s in reversed(REPLICA_STAGES) if is_published(replica_dir(site.run_dir, contributor, s))]
    return [*found, BASE] if found else []


class Runner:
    """Loads replicas once per (contributor, stage) and runs episodes, one at a time (CPU-bound)."""

    def __init__(self, site: StudioSite, device: str = "auto", max_turns: int = 6, max_new_tokens: int = 96):
        self.site, self.device = site, device
        self.max_turns, self.max_new_tokens = max_turns, max_new_tokens
        self._loaded: dict[tuple[str, str], Replica] = {}
        self._lock = threading.Lock()

    def replica(self, contributor: str, stage: str) -> Replica:
        """The replica of `stage`; the base is the contributor's replica with its adapter switched off."""
        with self._lock:
            trained = stage if stage != BASE else stages(self.site, contributor)[0]
            key = (contributor, trained)
            if key not in self._loaded:
                self._loaded[key] = load_replica(self.site.run_dir, contributor, trained, device=self.device)
            replica = self._loaded[key]
        return dataclasses.replace(replica, adapter_name=None, stage=BASE) if stage == BASE else replica

    def run(self, contributor: str, stage: str, task: Task, samples: int = 1) -> list[dict[str, Any]]:
        """`samples` episodes of `task` (greedy for one, sampled with seeds 1..n for more)."""
        replica = self.replica(contributor, stage)
        temperature = 0.0 if samples == 1 else SAMPLE_TEMPERATURE
        out = []
        for seed in range(1, samples + 1):
            episode = replica.run(task, None, self.max_turns, self.max_new_tokens, temperature, seed)
            out.append(
                {
                    "messages": with_call_ids(episode.messages),
                    "stop_reason": episode.stop_reason,
                    "seed": seed,
                }
            )
        return out


def with_call_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every tool call an id and every tool result the id of its call, as records require."""
    out, pending, count = [], [], 0
    for message in messages:
        message = json.loads(json.dumps(message))
        for call in message.get("tool_calls") or []:
            count += 1
            call.setdefault("id", f"call_{count}")
            call["type"] = "function"
            pending.append(call["id"])
        if message.get("role") == "tool" and not message.get("tool_call_id") and pending:
            message["tool_call_id"] = pending.pop(0)
        if message.get("role") == "assistant" and message.get("tool_calls") and not message.get("content"):
            message.pop("content", None)
        out.append(message)
    return out


# --------------------------------------------------------------------------- review drafts


def start_review(
    site: StudioSite, contributor: str, runner: Runner, task: Task, stage: str, samples: int
) -> str:
    review_id = new_id("x")[-12:]
    review = {
        "id": review_id,
        "task": task.model_dump(mode="json", exclude_none=True),
        "stage": stage,
        "samples": runner.run(contributor, stage, task, samples),
        "created_at": utc_now(),
    }
    atomic_write_json(site.draft_file(contributor, "review", review_id), review)
    return review_id


def load_review(site: StudioSite, contributor: str, review_id: str) -> dict[str, Any]:
    return site.read_draft(contributor, "review", review_id)


def saved_feedback(site: StudioSite, contributor: str, review_id: str) -> list[dict[str, Any]]:
    """The feedback records already saved from this review (read back from the contributor's file)."""
    path = site.data_file(contributor)
    if not path.is_file():
        return []
    return [
        item.obj
        for item in iter_items(path)
        if item.obj
        and item.obj.get("contributor_id") == contributor
        and (item.obj.get("source") or {}).get("review") == review_id
    ]


def split(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(prompt, response): the prompt ends with the task's user message, the response is the agent's side."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return messages[: last_user + 1], messages[last_user + 1 :]


def final_reply(messages: list[dict[str, Any]]) -> str:
    last = messages[-1] if messages else {}
    return last.get("content") or "" if last.get("role") == "assistant" and not last.get("tool_calls") else ""


def save_judgment(
    site: StudioSite,
    contributor: str,
    review: dict[str, Any],
    score: int | None,
    critique: str,
    rewrite: str,
    step: int | None = None,
    call: dict[str, Any] | None = None,
) -> list[str]:
    """A rating (when scored) and a rewrite of the review's one sample: of the final reply
    (`step` None, when the text was changed), or of the turn at index `step` of the conversation
    (as text, or as the tool call `call` = {"name", "arguments"})."""
    messages = review["samples"][0]["messages"]
    prompt, response = split(messages)
    common = _common(contributor, review, prompt)
    note = critique.strip() or None
    records: list[BaseModel] = []
    if score is not None:
        rating = {"id": new_id("rating"), "response": response, "score": score, "critique": note}
        records.append(build(Rating, common | rating))
    if step is None and rewrite.strip() and rewrite.strip() != final_reply(response).strip():
        kept = response[:-1] if final_reply(response) else response
        rewritten = [*kept, {"role": "assistant", "content": rewrite.strip()}]
        fields = {"id": new_id("rewrite"), "original": response, "rewritten": rewritten, "critique": note}
        records.append(build(Rewrite, common | fields))
    if step is not None:
        records.append(_step_rewrite(common, messages, len(prompt), step, rewrite, call, note))
    if not records:
        raise NotSaved(["choose a score or change the reply: there is nothing to save"])
    return save_records(site, contributor, records)


def _step_rewrite(
    common: dict[str, Any],
    messages: list[dict[str, Any]],
    first: int,
    step: int,
    text: str,
    call: dict[str, Any] | None,
    note: str | None,
) -> BaseModel:
    """The replica should have said `text` (or made `call`) at turn `step`: that turn is chosen over
    everything the replica did from there on."""
    if not (first <= step < len(messages)) or messages[step]["role"] != "assistant":
        raise NotSaved([f"step {step + 1}: not one of the replica's turns"])
    if call:
        turn = {
            "role": "assistant",
            "tool_calls": [{"id": "call_rewrite", "type": "function", "function": call}],
        }
    elif text.strip():
        turn = {"role": "assistant", "content": text.strip()}
    else:
        raise NotSaved(
            [f"step {step + 1}: write the better turn, or choose the tool call it should have made"]
        )
    fields = {"prompt": messages[:step], "original": messages[step:], "rewritten": [turn], "critique": note}
    return build(Rewrite, common | fields | {"id": new_id("rewrite")})


def save_choice(site: StudioSite, contributor: str, review: dict[str, Any], better: int) -> list[str]:
    """A preference pair: sample `better` (0 or 1) chosen over the other."""
    prompt, first = split(review["samples"][0]["messages"])
    _, second = split(review["samples"][1]["messages"])
    chosen, rejected = (first, second) if better == 0 else (second, first)
    pair = build(
        PreferencePair,
        _common(contributor, review, prompt) | {"id": new_id("pair"), "chosen": chosen, "rejected": rejected},
    )
    return save_records(site, contributor, [pair])


def _common(contributor: str, review: dict[str, Any], prompt: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "contributor_id": contributor,
        "task_id": review["task"]["id"],
        "tools": review["task"].get("tools"),
        "prompt": prompt,
        "annotator": contributor,
        "recorded_at": utc_now(),
        "source": {"format": "replica-studio", "review": review["id"], "stage": review["stage"]},
    }

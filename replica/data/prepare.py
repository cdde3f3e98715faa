"""`replica data prepare`: raw inputs -> per-contributor HF datasets, rejected.jsonl and manifest.json.

validate -> normalize (importers) -> dedupe -> consent filter -> feedback -> pairs -> split by task.
The layout and columns are the contract in docs/internals.md ("Prepared data"). The whole
directory is built under a temporary name and renamed, so a crash never leaves a half-prepared
set that looks complete.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from replica.artifacts import (
    atomic_directory,
    atomic_write_json,
    canonical_json,
    sha256_dir,
    sha256_file,
    sha256_text,
)
from replica.config import InputConfig, RunConfig
from replica.data.consent import consent_scope, train_exclusion
from replica.data.feedback import chat, pair_rows, rating_rows, rewrite_rows, tools_json
from replica.data.formats.common import task_id_for
from replica.data.prepared import SPLITS, build_dataset
from replica.data.records import Demonstration, PreferencePair, Rating, Rewrite, to_line
from replica.data.split import leakage, note_time, split_pools
from replica.data.validate import Outcome, Registry, Validator, collect_registry
from replica.errors import UserError
from replica.model import template_hash, training_chat_template

log = logging.getLogger(__name__)
MANIFEST_VERSION = 1


@dataclass
class Bucket:
    """The accepted records of one contributor."""

    demos: list[tuple[Demonstration, str]] = field(default_factory=list)  # (record, content hash)
    pairs: list[PreferencePair] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)

    def add(self, record: BaseModel, record_hash: str) -> None:
        if isinstance(record, Demonstration):
            self.demos.append((record, record_hash))
            return
        target = {PreferencePair: self.pairs, Rating: self.ratings, Rewrite: self.rewrites}
        target[type(record)].append(record)


@dataclass
class PrepareResult:
    """Where the prepared set went and what its manifest says."""

    prepared_dir: Path
    manifest: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    def summary(self) -> str:
        """The reconciliation line and one line per contributor, for the CLI."""
        lines = [self.manifest["summary"]]
        for cid, info in self.manifest["contributors"].items():
            sizes = ", ".join(f"{split} {n}" for split, n in info["splits"].items())
            lines.append(
                f"  {cid}: {sizes}" if sizes else f"  {cid}: {info['train_excluded'] or 'no records'}"
            )
        leaks = sum(len(v) for v in self.manifest["leakage"].values())
        lines.append(
            f"leakage: {leaks} held-out prompt(s) also seen in training; fingerprint {self.fingerprint[:16]}"
        )
        return "\n".join(lines)


def prepare(config: RunConfig, tokenizer: Any, strict: bool = False) -> PrepareResult:
    """Validate, convert and split every input of `config.data`; write `config.prepared_dir`.

    `tokenizer` renders records with the training chat template to enforce `data.max_length`.
    `strict` stops at the first bad record (UserError) instead of quarantining it.
    """
    inputs = _inputs(config)
    registry = collect_registry(inputs)
    selected = set(config.data.contributors) if config.data.contributors else None
    validator = Validator(
        registry,
        True,
        token_counter(tokenizer, config.data.max_length),
        config.data.max_length,
        selected,
        strict,
    )
    with atomic_directory(config.prepared_dir) as tmp:
        buckets = _read_all(validator, inputs, tmp / "rejected.jsonl")
        contributors = {}
        hashes = {}
        for cid in sorted(set(buckets) | set(registry.contributors)):
            info, split_hashes = _write_contributor(tmp, cid, buckets.get(cid, Bucket()), registry, config)
            contributors[cid], hashes[cid] = info, split_hashes
        _write_contributors_file(tmp / "contributors.jsonl", registry)
        leaks = {cid: info.pop("leakage", []) for cid, info in contributors.items()}
        manifest = _manifest(config, inputs, validator, contributors, hashes, template_hash(tokenizer))
        manifest["leakage"] = leaks
        atomic_write_json(tmp / "manifest.json", manifest)
    log.info("prepared %s: %s", config.prepared_dir, manifest["summary"])
    return PrepareResult(Path(config.prepared_dir), manifest)


def _inputs(config: RunConfig) -> list[InputConfig]:
    if not config.data.inputs:
        raise UserError(
            f"{config.source or 'config'}: data.inputs: no input files listed (expected a list of {{path, format}})"
        )
    first = (
        [InputConfig(path=config.data.contributors_file, format="replica")]
        if config.data.contributors_file
        else []
    )
    return first + list(config.data.inputs)


def token_counter(tokenizer: Any, max_length: int | None = None) -> Callable[[BaseModel, list | None], int]:
    """Length in tokens of a record's longest training example, rendered with the training template.

    With `max_length`, a text of at most `max_length - 8` UTF-8 bytes is known to fit without
    tokenizing it: byte-level BPE and SentencePiece (with byte fallback) never make more tokens
    than bytes (8 spare for a prefix marker), so the count returned then is that bound, not exact.
    """
    render = template_renderer(tokenizer)
    bound = (max_length - 8) if max_length else -1

    def count(messages: list[dict], tools: list | None) -> int:
        text = render(messages, tools)
        size = len(text.encode("utf-8"))
        if size <= bound:
            return size
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def length_of(record: BaseModel, tools: list | None) -> int:
        tools_ = tools_json(tools)
        if isinstance(record, Demonstration):
            return count(chat(record.messages), tools_)
        prompt = chat(record.prompt)  # type: ignore[attr-defined]
        responses = {
            PreferencePair: ("chosen", "rejected"),
            Rating: ("response",),
            Rewrite: ("original", "rewritten"),
        }[type(record)]
        return max(count(prompt + chat(getattr(record, name)), tools_) for name in responses)

    return length_of


def template_renderer(tokenizer: Any) -> Callable[[list[dict], list | None], str]:
    """`f(messages, tools) -> text` rendered with the training chat template, as
    `tokenizer.apply_chat_template(..., tokenize=False)` renders it.

    Records here are plain JSON (pydantic dumps), so the compiled template is called directly:
    `apply_chat_template` first deep-copies every input into plain types for its sandbox, which
    was half of `prepare`'s templating time. tests/test_data_prepare.py checks both give the same text.
    """
    template = training_chat_template(tokenizer)
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        compiled = _compile_jinja_template(template)
    except (ImportError, AttributeError):  # a transformers without it: take the public path
        return lambda messages, tools: tokenizer.apply_chat_template(
            messages, tools=tools, chat_template=template, tokenize=False
        )
    context = dict(tokenizer.special_tokens_map)

    def render(messages: list[dict], tools: list | None) -> str:
        return compiled.render(
            messages=messages, tools=tools, documents=None, add_generation_prompt=False, **context
        )

    return render


def _read_all(validator: Validator, inputs: list[InputConfig], rejected_path: Path) -> dict[str, Bucket]:
    """Stream every outcome: rejected ones to rejected.jsonl, accepted ones into per-contributor buckets."""
    buckets: dict[str, Bucket] = defaultdict(Bucket)
    with open(rejected_path, "w", encoding="utf-8") as rejected:
        for outcome in validator.outcomes(inputs):
            if outcome.status == "rejected":
                rejected.write(json.dumps(outcome.rejected_entry(), ensure_ascii=False) + "\n")
            elif outcome.status == "accepted" and outcome.kind not in ("contributor", "task"):
                buckets[outcome.contributor_id].add(
                    _with_task_tools(outcome, validator.registry), outcome.hash
                )
    return dict(buckets)


def _with_task_tools(outcome: Outcome, registry: Registry) -> BaseModel:
    """A record without its own tools gets its task's (what it was validated against)."""
    record = outcome.record
    if record is not None and not getattr(record, "tools", None):
        task = registry.task(getattr(record, "task_id", None))
        if task and task.tools:
            record = record.model_copy(update={"tools": task.tools})
    return record  # type: ignore[return-value]


def _write_contributor(
    root: Path, cid: str, bucket: Bucket, registry: Registry, config: RunConfig
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Split one contributor's records and save their five datasets; returns manifest info and hashes."""
    contributor = registry.contributor(cid)
    info: dict[str, Any] = {
        "consent": consent_scope(contributor) if contributor else None,
        "train_excluded": train_exclusion(contributor),
        "splits": {},
    }
    if not (bucket.demos or bucket.pairs or bucket.ratings or bucket.rewrites):
        return info, {}
    sft = [_sft_row(demo, record_hash) for demo, record_hash in bucket.demos]
    rating_pairs, dropped = rating_rows(bucket.ratings, config.data.feedback, config.data.split.seed)
    pref = pair_rows(bucket.pairs) + rating_pairs + rewrite_rows(bucket.rewrites)
    heldout = split_pools(*_times(bucket), config.data.split)
    splits = _assign(sft, pref, heldout)
    splits["tasks/heldout"] = _task_rows(splits["sft/heldout"], registry)
    for split in SPLITS:
        build_dataset(splits[split], split).save_to_disk(str(root / cid / split))
    info["splits"] = {split: len(splits[split]) for split in SPLITS}
    info["pairs"] = {
        source: sum(r["source"] == source for r in pref) for source in ("pairwise", "rating", "rewrite")
    }
    info["ratings_dropped"] = dropped
    info["leakage"] = leakage(
        {s: splits[s] for s in ("sft/heldout", "pref/heldout")},
        {s: splits[s] for s in ("sft/train", "pref/train")},
    )
    hashes = {
        split: [row["record_hash"] for row in splits[split]] for split in SPLITS if split != "tasks/heldout"
    }
    return info, hashes


def _sft_row(demo: Demonstration, record_hash: str) -> dict[str, Any]:
    return {
        "id": demo.id,
        "contributor_id": demo.contributor_id,
        "task_id": demo.task_id,
        "messages": chat(demo.messages),
        "tools": tools_json(demo.tools),
        "record_hash": record_hash,
    }


def _feedback_key(row: dict[str, Any]) -> str:
    return row["task_id"] or task_id_for(row["prompt"])


def _times(bucket: Bucket) -> tuple[dict, dict]:
    demo_times: dict = {}
    feedback_times: dict = {}
    for demo, _ in bucket.demos:
        note_time(demo_times, demo.task_id, demo.recorded_at)
    for record in [*bucket.pairs, *bucket.ratings, *bucket.rewrites]:
        note_time(feedback_times, record.task_id or task_id_for(chat(record.prompt)), record.recorded_at)
    return demo_times, feedback_times


def _assign(sft: list[dict], pref: list[dict], heldout: set[str]) -> dict[str, list[dict]]:
    """Rows to train/heldout by task key, sorted by id so file order does not matter."""
    splits: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for row in sft:
        splits["sft/heldout" if row["task_id"] in heldout else "sft/train"].append(row)
    for row in pref:
        splits["pref/heldout" if _feedback_key(row) in heldout else "pref/train"].append(row)
    for rows in splits.values():
        rows.sort(key=lambda r: r["id"])
    train_keys = {r["task_id"] for r in splits["sft/train"]} | {
        _feedback_key(r) for r in splits["pref/train"]
    }
    held_keys = {r["task_id"] for r in splits["sft/heldout"]} | {
        _feedback_key(r) for r in splits["pref/heldout"]
    }
    if train_keys & held_keys:  # cannot happen by construction; a bug if it does
        raise RuntimeError(f"split bug: tasks on both sides: {sorted(train_keys & held_keys)[:5]}")
    return splits


def _task_rows(heldout_sft: list[dict], registry: Registry) -> list[dict[str, Any]]:
    """One evaluation task per held-out task id; its first demonstration (by id) is the reference."""
    rows = {}
    for demo in heldout_sft:  # sorted by id, so the first demonstration of a task wins
        if demo["task_id"] in rows:
            continue
        task = registry.task(demo["task_id"])
        first_user = next((m["content"] for m in demo["messages"] if m["role"] == "user"), "")
        system = next((m["content"] for m in demo["messages"] if m["role"] == "system"), None)
        rows[demo["task_id"]] = {
            "id": demo["task_id"],
            "contributor_id": demo["contributor_id"],
            "instruction": task.instruction if task else first_user,
            "system": task.system if task and task.system is not None else system,
            "tools": tools_json(task.tools) if task and task.tools else demo["tools"],
            "env": task.env if task else None,
            "initial_state": task.initial_state if task else None,
            "check": task.check.model_dump(mode="json") if task and task.check else None,
            "reference_messages": demo["messages"],
            "tags": list(task.tags) if task else [],
        }
    return [rows[key] for key in sorted(rows)]


def _write_contributors_file(path: Path, registry: Registry) -> None:
    lines = [to_line(registry.contributors[cid][0]) for cid in sorted(registry.contributors)]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _manifest(
    config: RunConfig,
    inputs: list[InputConfig],
    validator: Validator,
    contributors: dict[str, Any],
    hashes: dict[str, dict[str, list[str]]],
    tokenizer_template_hash: str,
) -> dict[str, Any]:
    """manifest.json: inputs with sha256, counts, per-contributor splits, record hashes, fingerprint."""
    files = [_input_entry(spec, validator.formats) for spec in inputs]
    data = config.data.model_dump(mode="json", exclude={"inputs", "contributors_file", "prepared_dir"})
    identity = {
        "inputs": [[f["sha256"], f["format"], f["contributor"]] for f in files],
        "data_config": data,
        "chat_template_sha256": tokenizer_template_hash,
        "record_hashes": hashes,
    }
    return {
        "manifest_version": MANIFEST_VERSION,
        "fingerprint": sha256_text(canonical_json(identity)),
        "summary": validator.counts.summary(),
        "inputs": files,
        "data_config": data,
        "chat_template_sha256": tokenizer_template_hash,
        "counts": validator.counts.as_dict(),
        "contributors": contributors,
        "record_hashes": hashes,
    }


def _input_entry(spec: InputConfig, detected: dict[str, str]) -> dict[str, Any]:
    path = Path(spec.path)
    digest = sha256_dir(path) if path.is_dir() else sha256_file(path)
    return {
        "path": spec.path,
        "format": detected.get(spec.path, spec.format),
        "contributor": spec.contributor,
        "sha256": digest,
        "bytes": path.stat().st_size if path.is_file() else None,
    }

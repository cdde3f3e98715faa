"""`replica data prepare`: raw inputs -> per-contributor HF datasets, rejected.jsonl and manifest.json.

validate -> normalize (importers) -> dedupe -> consent filter -> feedback -> pairs -> split by task.
The layout and columns are the contract in docs/internals.md ("Prepared data"). The whole
directory is built under a temporary name and renamed, so a crash never leaves a half-prepared
set that looks complete.

Memory does not grow with the records: one streaming pass validates every input and appends each
accepted record, already in its prepared row form, to its contributor's spool (spool.py). Only
task keys and times, rating scores and hashes stay in memory (`Pool`). Then, one contributor at
a time, the held-out tasks are chosen, rating pairs made, and each split written in id order
straight from the spool to its dataset files.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replica.artifacts import atomic_directory, atomic_write_json, sha256_text
from replica.config import InputConfig, RunConfig
from replica.data.consent import consent_scope, train_exclusion
from replica.data.feedback import Rated, pair_ratings, preference_row, prompt_key, tools_json
from replica.data.formats.common import task_id_for
from replica.data.prepared import SPLITS, build_prepared_manifest, write_split
from replica.data.records import Demonstration, PreferencePair, Rating, content_hash, to_line
from replica.data.rejections import rejection_lines
from replica.data.split import LeakageCheck, note_time, split_pools
from replica.data.spool import Spools
from replica.data.template import plain_parts, token_counter
from replica.data.validate import Outcome, Registry, Validator, collect_registry
from replica.errors import UserError
from replica.progress import StageProgress
from replica.templates import template_hash

log = logging.getLogger(__name__)


# Inputs this large (in bytes) take a while: show records read as they go (replica/progress.py).
PROGRESS_BYTES = 20_000_000
SOURCES = ("pairwise", "rating", "rewrite")  # preference rows by origin, in this order on equal ids


@dataclass
class Pool:
    """What stays in memory of one contributor's accepted records while their rows are spooled."""

    records: int = 0
    demo_times: dict = field(default_factory=dict)  # task id -> latest recorded_at
    feedback_times: dict = field(default_factory=dict)  # task key -> latest recorded_at
    ratings: dict[str, list[Rated]] = field(default_factory=lambda: defaultdict(list))  # by prompt_key
    pairs: Counter = field(default_factory=Counter)  # preference rows by source


@dataclass
class PrepareResult:
    """Where the prepared set went and what its manifest says."""

    prepared_dir: Path
    manifest: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def accepted_records(self) -> int:
        """Demonstrations and feedback accepted (contributor and task records not counted)."""
        per = self.manifest["counts"]["per_contributor"]
        return sum(
            c["accepted"]
            for kinds in per.values()
            for kind, c in kinds.items()
            if kind not in ("contributor", "task")
        )

    def summary(self) -> str:
        """The reconciliation line and one line per contributor, for the CLI."""
        lines = [self.manifest["summary"]]
        if self.manifest.get("truncated"):
            lines.append(
                f"truncated {self.manifest['truncated']} demonstration(s) at a turn boundary (data.too_long)"
            )
        lines += rejection_lines(
            self.manifest.get("rejections", []), f"every one in {self.prepared_dir / 'rejected.jsonl'}"
        )
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
        config.data.too_long,
    )
    with atomic_directory(config.prepared_dir) as tmp, _objects_before_frozen():
        spools = Spools(tmp / ".spool")
        try:
            pools = _read_all(validator, inputs, tmp / "rejected.jsonl", spools)
            contributors = {}
            hashes = {}
            for cid in sorted(set(pools) | set(registry.contributors)):
                info, split_hashes = _write_contributor(tmp, cid, pools.get(cid), spools, registry, config)
                contributors[cid], hashes[cid] = info, split_hashes
        finally:
            spools.close()  # deletes the spool directory
        _write_contributors_file(tmp / "contributors.jsonl", registry)
        leaks = {cid: info.pop("leakage", []) for cid, info in contributors.items()}
        manifest = build_prepared_manifest(
            config,
            inputs,
            validator.formats,
            validator.counts,
            contributors,
            hashes,
            template_hash(tokenizer),
        )
        manifest["leakage"] = leaks
        manifest["rejections"] = validator.rejections.most_common()
        manifest["truncated"] = validator.truncated
        atomic_write_json(tmp / "manifest.json", manifest)
    log.debug("prepared %s: %s", config.prepared_dir, manifest["summary"])  # the CLI prints the summary
    return PrepareResult(Path(config.prepared_dir), manifest)


@contextlib.contextmanager
def _objects_before_frozen() -> Iterator[None]:
    """Keep the garbage collector off the objects that existed before `prepare` (gc.freeze).

    With torch and transformers imported the process holds ~400,000 tracked objects, and each
    full collection walks them all; prepare's allocations trigger a few per 10,000 records.
    Frozen, they are skipped (prepare's own objects are still collected): 13-15% less CPU
    time per record, measured with scripts/bench_data.py. Unfrozen again on the way out.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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


# --------------------------------------------------------------------------- pass 1: read and spool


def _read_all(
    validator: Validator, inputs: list[InputConfig], rejected_path: Path, spools: Spools
) -> dict[str, Pool]:
    """Stream every outcome: rejected ones to rejected.jsonl, accepted ones as rows to their spools."""
    pools: dict[str, Pool] = defaultdict(Pool)
    size = sum(Path(spec.path).stat().st_size for spec in inputs if Path(spec.path).is_file())
    shown = StageProgress("prepare", 0, "record") if size >= PROGRESS_BYTES else None
    with open(rejected_path, "w", encoding="utf-8") as rejected, shown or contextlib.nullcontext():
        for read, outcome in enumerate(validator.outcomes(inputs), start=1):
            if shown is not None and read % 1000 == 0:
                shown.update(read, f"{validator.counts.totals()['rejected']:,} rejected")
            if outcome.status == "rejected":
                rejected.write(json.dumps(outcome.rejected_entry(), ensure_ascii=False) + "\n")
            elif outcome.status == "accepted" and outcome.kind not in ("contributor", "task"):
                _spool(outcome, validator.registry, pools[outcome.contributor_id], spools)
        if shown is not None:  # the last line: every record read
            totals = validator.counts.totals()
            shown.update(totals["read"], f"{totals['rejected']:,} rejected")
    return dict(pools)


def _spool(outcome: Outcome, registry: Registry, pool: Pool, spools: Spools) -> None:
    """One accepted record as its prepared row, and its task's latest time.

    A record without tools of its own takes its task's (what it was validated against), and a
    feedback row's hash is then the hash of the record with those tools.
    """
    record: Any = outcome.record
    cid = outcome.contributor_id
    task = registry.task(getattr(record, "task_id", None))
    tools = record.tools or (task.tools if task else None)
    parts = outcome.parts or plain_parts(record, tools)
    pool.records += 1
    if isinstance(record, Demonstration):
        note_time(pool.demo_times, record.task_id, record.recorded_at)
        row = {
            "id": record.id,
            "contributor_id": cid,
            "task_id": record.task_id,
            "messages": parts["messages"],
            "tools": parts["tools"],
            "record_hash": outcome.hash,
        }
        spools.append(f"{cid}.sft", (record.id, record.task_id), row)
        return
    key = record.task_id or task_id_for(parts["prompt"])
    note_time(pool.feedback_times, key, record.recorded_at)
    record_hash = outcome.hash
    if tools and not record.tools:
        record_hash = content_hash(record.model_copy(update={"tools": tools}))
    if isinstance(record, Rating):  # paired once all are read: spooled as what pairing needs
        rated = {**parts, "task_id": record.task_id or "", "hash": record_hash}
        offset = spools.append(f"{cid}.ratings", (), rated)
        pool.ratings[prompt_key(cid, parts["prompt"], parts["tools"])].append(
            Rated(record.value, record.id, offset)
        )
        return
    source, chosen, rejected = (
        ("pairwise", "chosen", "rejected")
        if isinstance(record, PreferencePair)
        else ("rewrite", "rewritten", "original")
    )
    row = preference_row(
        record.id,
        cid,
        record.task_id or "",
        parts["prompt"],
        parts[chosen],
        parts[rejected],
        parts["tools"],
        source,
        record_hash,
    )
    spools.append(f"{cid}.pref", (record.id, SOURCES.index(source), key), row)
    pool.pairs[source] += 1


# --------------------------------------------------------------------------- pass 2: per contributor


def _write_contributor(
    root: Path, cid: str, pool: Pool | None, spools: Spools, registry: Registry, config: RunConfig
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Pair ratings, split and save one contributor's five datasets; returns manifest info and hashes."""
    contributor = registry.contributor(cid)
    info: dict[str, Any] = {
        "consent": consent_scope(contributor) if contributor else None,
        "train_excluded": train_exclusion(contributor),
        "splits": {},
    }
    if pool is None or not pool.records:
        return info, {}
    dropped = _spool_rating_pairs(cid, pool, spools, config)
    heldout = split_pools(pool.demo_times, pool.feedback_times, config.data.split)
    sizes, hashes, leaks = _write_splits(root / cid, cid, spools, heldout, registry)
    info["splits"] = sizes
    info["pairs"] = {source: pool.pairs[source] for source in SOURCES}
    info["ratings_dropped"] = dropped
    info["leakage"] = leaks
    return info, hashes


def _spool_rating_pairs(cid: str, pool: Pool, spools: Spools, config: RunConfig) -> dict[str, int]:
    """Pairs from the contributor's ratings, appended to their preference spool (feedback.py)."""
    pairs, dropped = pair_ratings(pool.ratings, config.data.feedback, config.data.split.seed)
    for best, worse in pairs:
        chosen, rejected = spools.read(f"{cid}.ratings", best.ref), spools.read(f"{cid}.ratings", worse.ref)
        record_hash = sha256_text(f"{chosen['hash']}>{rejected['hash']}")
        row_id = f"{best.id}>{worse.id}"
        row = preference_row(
            row_id,
            cid,
            chosen["task_id"],
            chosen["prompt"],
            chosen["response"],
            rejected["response"],
            chosen["tools"],
            "rating",
            record_hash,
        )
        key = chosen["task_id"] or task_id_for(chosen["prompt"])
        spools.append(f"{cid}.pref", (row_id, SOURCES.index("rating"), key), row)
        pool.pairs["rating"] += 1
    return dropped


def _write_splits(
    out: Path, cid: str, spools: Spools, heldout: set[str], registry: Registry
) -> tuple[dict[str, int], dict[str, list[str]], list[dict[str, str]]]:
    """Every split in id order (so file order does not matter): sizes, record hashes, leakage.

    Training splits are written first, so the leakage check has seen every training prompt
    before the held-out rows stream past it.
    """
    index: dict[str, list[tuple[str, int, int]]] = {split: [] for split in SPLITS}
    sides: dict[str, set[str]] = {"train": set(), "heldout": set()}
    for kind, entries in (("sft", _heads(spools, f"{cid}.sft")), ("pref", _heads(spools, f"{cid}.pref"))):
        for row_id, rank, key, offset in entries:
            side = "heldout" if key in heldout else "train"
            sides[side].add(key)
            index[f"{kind}/{side}"].append((row_id, rank, offset))
    if sides["train"] & sides["heldout"]:  # cannot happen by construction; a bug if it does
        raise RuntimeError(f"split bug: tasks on both sides: {sorted(sides['train'] & sides['heldout'])[:5]}")
    leaks = LeakageCheck()
    hashes: dict[str, list[str]] = {split: [] for split in SPLITS if split != "tasks/heldout"}
    sizes: dict[str, int] = {}
    for split in ("sft/train", "pref/train", "sft/heldout", "pref/heldout"):
        rows = _rows(spools, f"{cid}.{split.split('/')[0]}", index.pop(split))
        sizes[split] = write_split(
            _follow(rows, split, hashes[split], leaks, spools, cid, registry), split, out / split
        )
    tasks = sorted((task_id, 0, offset) for (task_id,), offset in spools.scan(f"{cid}.tasks"))
    sizes["tasks/heldout"] = write_split(
        _rows(spools, f"{cid}.tasks", tasks), "tasks/heldout", out / "tasks/heldout"
    )
    return {split: sizes[split] for split in SPLITS}, hashes, leaks.found


def _heads(spools: Spools, name: str) -> Iterator[tuple[str, int, str, int]]:
    """(id, source rank, task key, offset) of every spooled row of `name`."""
    for head, offset in spools.scan(name):
        if len(head) == 2:  # a demonstration: [id, task id]
            yield head[0], 0, head[1], offset
        else:
            yield head[0], head[1], head[2], offset


def _rows(spools: Spools, name: str, index: list[tuple[str, int, int]]) -> Iterator[dict[str, Any]]:
    """The spooled rows of `index`, by id (then source, then the order they were spooled)."""
    index.sort()
    for _, _, offset in index:
        yield spools.read(name, offset)


def _follow(
    rows: Iterator[dict[str, Any]],
    split: str,
    hashes: list[str],
    leaks: LeakageCheck,
    spools: Spools,
    cid: str,
    registry: Registry,
) -> Iterator[dict[str, Any]]:
    """Pass rows through on their way to the dataset, noting their hashes and prompts, and
    spooling one evaluation task per held-out task (from its first demonstration, by id)."""
    seen_tasks: set[str] = set()
    for row in rows:
        hashes.append(row["record_hash"])
        if split.endswith("/train"):
            leaks.train(row)
        else:
            leaks.check(split, row)
        if split == "sft/heldout" and row["task_id"] not in seen_tasks:
            seen_tasks.add(row["task_id"])
            spools.append(f"{cid}.tasks", (row["task_id"],), _task_row(row, registry))
        yield row


def _task_row(demo: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """The evaluation task of a held-out task id; `demo` (its first demonstration) is the reference."""
    task = registry.task(demo["task_id"])
    first_user = next((m["content"] for m in demo["messages"] if m["role"] == "user"), "")
    system = next((m["content"] for m in demo["messages"] if m["role"] == "system"), None)
    return {
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


# --------------------------------------------------------------------------- contributors file


def _write_contributors_file(path: Path, registry: Registry) -> None:
    lines = [to_line(registry.contributors[cid][0]) for cid in sorted(registry.contributors)]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

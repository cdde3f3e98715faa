"""The prepared-data layout (docs/internals.md, "Prepared data") and its readers.

Every message, tool list, state and check is one `datasets.Json()` value: Arrow never merges
the argument dicts of different rows into one struct, so no row gains keys nobody recorded.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset, DatasetInfo, Features, Json, List, Value, load_from_disk
from datasets.arrow_writer import ArrowWriter
from datasets.table import InMemoryTable
from datasets.utils.py_utils import asdict

from replica.artifacts import canonical_json, sha256_dir, sha256_file, sha256_text
from replica.config import SLUG_PATTERN, InputConfig, RunConfig
from replica.data.exact_json import dumps as json_dumps
from replica.data.records import Contributor
from replica.errors import UserError

MANIFEST_VERSION = 1
SFT_SPLITS = ("sft/train", "sft/heldout")
PREF_SPLITS = ("pref/train", "pref/heldout")
TASK_SPLITS = ("tasks/heldout",)
SPLITS = SFT_SPLITS + PREF_SPLITS + TASK_SPLITS

_STR = Value("string")
SFT_FEATURES = Features(
    {
        "id": _STR,
        "contributor_id": _STR,
        "task_id": _STR,
        "messages": List(Json()),
        "tools": Json(),
        "record_hash": _STR,
    }
)
PREF_FEATURES = Features(
    {
        "id": _STR,
        "contributor_id": _STR,
        "task_id": _STR,
        "prompt": List(Json()),
        "chosen": List(Json()),
        "rejected": List(Json()),
        "tools": Json(),
        "source": _STR,
        "record_hash": _STR,
    }
)
TASK_FEATURES = Features(
    {
        "id": _STR,
        "contributor_id": _STR,
        "instruction": _STR,
        "system": _STR,
        "tools": Json(),
        "env": _STR,
        "initial_state": Json(),
        "check": Json(),
        "reference_messages": List(Json()),
        "tags": List(_STR),
    }
)


class MissingSplit(UserError, FileNotFoundError):
    """A split that was not prepared (a UserError for people, a FileNotFoundError for callers that skip it)."""


def features_for(split: str) -> Features:
    """The column types of a split name (`sft/train`, `pref/heldout`, `tasks/heldout`, ...)."""
    return {"sft": SFT_FEATURES, "pref": PREF_FEATURES, "tasks": TASK_FEATURES}[split.split("/")[0]]


def build_dataset(rows: list[dict[str, Any]], split: str) -> Dataset:
    """A dataset with the split's exact columns (an empty list gives an empty, typed dataset).

    Built the way `Dataset.from_dict` builds it, but with a fingerprint derived from the rows'
    content instead of one `datasets` computes by pickling the whole table: that pickling was a
    quarter of `prepare`'s time, and a content fingerprint makes the saved state deterministic.
    """
    features = features_for(split)
    digest = _content_digest(split)
    for row in rows:
        _add_row(digest, row)
    table = _encode(rows, features)
    return Dataset(table, info=DatasetInfo(features=features), fingerprint=digest.hexdigest()[:16])


def write_split(rows: Iterable[dict[str, Any]], split: str, path: str | Path, batch_size: int = 1000) -> int:
    """Write rows as `build_dataset(rows, split).save_to_disk(path)` would, one batch at a time
    (memory does not grow with the number of rows). Returns the number of rows.

    Same files and state (`load_from_disk` reads them), with two differences: always one shard
    (`save_to_disk` cuts shards of 500 MB), and an empty split gets an empty shard, which
    `load_from_disk` can read (`save_to_disk` writes none, and datasets 5.2 then cannot load it).
    tests/test_data_prepare.py compares the two.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    features = features_for(split)
    digest = _content_digest(split)
    count = 0
    with ArrowWriter(features=features, path=str(path / _SHARD)) as writer:
        rows = iter(rows)
        while batch := list(itertools.islice(rows, batch_size)):
            for row in batch:
                _add_row(digest, row)
            writer.write_table(_encode(batch, features).table)
            count += len(batch)
        writer.finalize()
    state = {  # what save_to_disk writes for a fresh dataset
        "_data_files": [{"filename": _SHARD}],
        "_fingerprint": digest.hexdigest()[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (path / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    info = asdict(DatasetInfo(features=features))
    (path / "dataset_info.json").write_text(
        json.dumps({k: info[k] for k in sorted(info)}, indent=2), encoding="utf-8"
    )
    return count


_SHARD = "data-00000-of-00001.arrow"


def _content_digest(split: str) -> Any:
    return hashlib.sha256(split.encode())


def _add_row(digest: Any, row: dict[str, Any]) -> None:
    digest.update(str(row.get("record_hash") or row["id"]).encode())


def _encode(rows: list[dict[str, Any]], features: Features) -> InMemoryTable:
    """The rows as an Arrow table of `features`, encoded as `Features.encode_column` encodes them.

    Json values are `exact_json.dumps` strings, as `Json.encode_example` makes them; built here
    column by column instead of through datasets' generic per-value path, which took a quarter
    of `prepare`'s dataset writing. tests/test_data_prepare.py checks both give the same table.
    """
    schema = features.arrow_schema
    columns = {
        name: _column([row[name] for row in rows], feature, schema.field(name).type)
        for name, feature in features.items()
    }
    return InMemoryTable(pa.table(columns, schema=schema))


def _column(values: list[Any], feature: Any, arrow_type: pa.DataType) -> pa.Array:
    if isinstance(feature, Json):
        return pa.array([_json(value) for value in values], type=arrow_type)
    if isinstance(feature, List) and isinstance(feature.feature, Json):
        offsets, flat = [0], []
        for value in values:
            flat.extend(_json(item) for item in value or ())
            offsets.append(len(flat))
        missing = pa.array([value is None for value in values], type=pa.bool_())
        items = pa.array(flat, type=arrow_type.value_type)
        return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), items, mask=missing)
    return pa.array(values, type=arrow_type)  # strings and lists of strings: stored as they are


def _json(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return Json().encode_example(value)  # a string is kept if it is JSON already
    return json_dumps(value)


def load_split(prepared_dir: str | Path, contributor_id: str, split: str) -> Dataset:
    """One prepared split of one contributor, e.g. `load_split(dir, "alice", "sft/train")`."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not re.match(SLUG_PATTERN, contributor_id):
        raise UserError(
            f"contributor id {contributor_id!r} is not a slug (lowercase letters, digits, - and _)"
        )
    path = Path(prepared_dir) / contributor_id / split
    if not path.exists():
        known = ", ".join(list_contributors(prepared_dir)) or "none"
        raise MissingSplit(
            f"{path}: no prepared split (run `replica data prepare`; contributors prepared: {known})"
        )
    return load_from_disk(str(path))


def list_contributors(prepared_dir: str | Path) -> list[str]:
    """Contributors with prepared data, sorted."""
    root = Path(prepared_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and re.match(SLUG_PATTERN, p.name) and (p / "sft" / "train").exists()
    )


def read_prepared_manifest(prepared_dir: str | Path) -> dict[str, Any]:
    """manifest.json of a prepared directory."""
    path = Path(prepared_dir) / "manifest.json"
    if not path.exists():
        raise UserError(f"{path}: not found (run `replica data prepare CONFIG` first)")
    return json.loads(path.read_text(encoding="utf-8"))


def build_prepared_manifest(
    config: RunConfig,
    inputs: list[InputConfig],
    detected_formats: dict[str, str],
    counts: Any,
    contributors: dict[str, Any],
    hashes: dict[str, dict[str, list[str]]],
    tokenizer_template_hash: str,
) -> dict[str, Any]:
    """manifest.json: inputs with sha256, counts, per-contributor splits, record hashes, and the
    fingerprint of everything that decides the rows (inputs, data config, chat template, records).
    `counts` is the validator's tally (`summary()`, `as_dict()`)."""
    files = [_input_entry(spec, detected_formats) for spec in inputs]
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
        "summary": counts.summary(),
        "inputs": files,
        "data_config": data,
        "chat_template_sha256": tokenizer_template_hash,
        "counts": counts.as_dict(),
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


def read_contributors(prepared_dir: str | Path) -> dict[str, Contributor]:
    """contributors.jsonl of a prepared directory: id -> Contributor (with consent)."""
    path = Path(prepared_dir) / "contributors.jsonl"
    if not path.exists():
        return {}
    records = [
        Contributor.model_validate_json(line)
        for line in path.read_text(encoding="utf-8").splitlines()
        if line
    ]
    return {c.id: c for c in records}

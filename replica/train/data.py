"""Reading the prepared data a contributor's stages train on (see docs/internals.md, "Prepared data").

Training reads only `prepare`'s output directory. The per-split reader is
`replica.data.prepared.load_split` once the data stage provides it; until then the same
`save_to_disk` layout is read here directly, so both paths see identical rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, load_from_disk

from replica.artifacts import read_json
from replica.errors import UserError


def load_split(prepared_dir: str | Path, contributor: str, split: str) -> Dataset | None:
    """One split (`sft/train`, `pref/heldout`, ...) of a contributor, or None when it was not written."""
    try:
        from replica.data.prepared import load_split as data_load_split
    except ImportError:
        data_load_split = None
    if data_load_split is not None:
        try:
            return data_load_split(prepared_dir, contributor, split)
        except FileNotFoundError:
            return None
    path = Path(prepared_dir) / contributor / split
    if not (path / "dataset_info.json").exists():
        return None
    return load_from_disk(str(path))


def list_contributors(prepared_dir: str | Path) -> list[str]:
    """Contributors with SFT training data, sorted (the order shards and runs agree on)."""
    root = Path(prepared_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no prepared data (run `replica data prepare CONFIG` first)")
    return sorted(p.name for p in root.iterdir() if (p / "sft" / "train").is_dir())


@dataclass
class PreparedInfo:
    """What provenance needs from the prepared directory: fingerprint and consent records."""

    fingerprint: str | None
    contributors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def consent(self, contributor: str) -> dict[str, Any]:
        """The contributor's consent record (empty when the data stage recorded none)."""
        record = self.contributors.get(contributor) or {}
        return record.get("consent") or {}


def read_prepared_info(prepared_dir: str | Path) -> PreparedInfo:
    """Read `manifest.json` (fingerprint) and `contributors.jsonl` (consent), both optional."""
    root = Path(prepared_dir)
    manifest = read_json(root / "manifest.json") if (root / "manifest.json").exists() else {}
    records: dict[str, dict[str, Any]] = {}
    path = root / "contributors.jsonl"
    if path.exists():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            records[str(record.get("id"))] = record
    return PreparedInfo(fingerprint=manifest.get("fingerprint"), contributors=records)


def check_one_contributor(dataset: Dataset, contributor: str, where: str) -> None:
    """Refuse rows of another contributor: packing must never mix two contributors' records."""
    if "contributor_id" not in dataset.column_names:
        return
    others = sorted(set(dataset["contributor_id"]) - {contributor})
    if others:
        raise UserError(f"{where}: rows of contributor(s) {others} in {contributor}'s split")

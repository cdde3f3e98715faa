"""Reading the prepared data a contributor's stages train on (see docs/internals.md, "Prepared data").

Training reads only `prepare`'s output directory, through the data stage's own reader
(`replica.data.prepared.load_split`), so both stages agree on the layout and columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from replica.artifacts import read_json
from replica.data import prepared
from replica.errors import UserError


def load_split(prepared_dir: str | Path, contributor: str, split: str) -> Dataset | None:
    """One split (`sft/train`, `pref/heldout`, ...) of a contributor, or None when it was not written."""
    try:
        return prepared.load_split(prepared_dir, contributor, split)
    except prepared.MissingSplit:
        return None


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

    def training_refused(self, contributor: str) -> str | None:
        """Why consent forbids training this contributor's replica, or None when it allows it.

        `prepare` already drops such records; checking again here means a stale or hand-edited
        prepared directory cannot train a replica its contributor refused.
        """
        consent = self.consent(contributor)
        if not consent:
            return None
        if consent.get("revoked_at"):
            return f"consent revoked at {consent['revoked_at']}"
        if consent.get("train", "allowed") != "allowed":
            return f"consent.train is {consent.get('train')!r}"
        return None


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

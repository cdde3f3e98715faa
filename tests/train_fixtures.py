"""Shared helpers for the training tests: prepared data and run configs in the contract's layout.

Prepared datasets are written exactly as docs/internals.md ("Prepared data") describes them:
`messages` is List(Json), `tools` is Json, each split saved with `save_to_disk`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from datasets import Dataset, Features, Json, List, Value

FIXTURES = Path(__file__).parent / "fixtures"

SFT_FEATURES = Features(
    {
        "id": Value("string"),
        "contributor_id": Value("string"),
        "task_id": Value("string"),
        "messages": List(Json()),
        "tools": Json(),
        "record_hash": Value("string"),
    }
)
PREF_FEATURES = Features(
    {
        "id": Value("string"),
        "contributor_id": Value("string"),
        "task_id": Value("string"),
        "prompt": List(Json()),
        "chosen": List(Json()),
        "rejected": List(Json()),
        "tools": Json(),
        "source": Value("string"),
        "record_hash": Value("string"),
    }
)


def corpus() -> list[dict]:
    lines = (FIXTURES / "tiny_corpus.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _hash(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def sft_rows(contributor: str, records: list[dict]) -> list[dict]:
    rows = []
    for index, record in enumerate(records):
        rows.append(
            {
                "id": f"{contributor}-d{index}",
                "contributor_id": contributor,
                "task_id": f"{contributor}-t{index}",
                "messages": record["messages"],
                "tools": record.get("tools"),
                "record_hash": _hash([contributor, record]),
            }
        )
    return rows


def pref_rows(contributor: str, records: list[dict]) -> list[dict]:
    """Pairs: the demonstration's final answer is chosen, a curt reply is rejected."""
    rows = []
    for index, record in enumerate(records):
        messages = record["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        chosen = [m for m in messages[last_user + 1 :] if m["role"] == "assistant"][-1:]
        rows.append(
            {
                "id": f"{contributor}-p{index}",
                "contributor_id": contributor,
                "task_id": f"{contributor}-t{index}",
                "prompt": messages[: last_user + 1],
                "chosen": [{"role": "assistant", "content": chosen[0].get("content") or "Done."}],
                "rejected": [{"role": "assistant", "content": "No."}],
                "tools": None,
                "source": "pairwise",
                "record_hash": _hash([contributor, "pref", index]),
            }
        )
    return rows


def write_prepared(
    root: Path,
    contributors: dict[str, dict[str, int]],
    start: int = 0,
    fingerprint: str = "fp-test",
    consent: dict[str, dict] | None = None,
) -> Path:
    """Write prepared/ for contributors {id: {"sft": n, "pref": n}}: 1/4 of each kind held out.

    `consent` overrides consent fields per contributor, e.g. {"bob": {"train": "not_allowed"}}.
    """
    overrides = consent or {}
    data = corpus()
    cursor = start
    manifest_counts = {}
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "contributors.jsonl", "w") as fh:
        for contributor, sizes in contributors.items():
            consent = {"train": "allowed", "serve": "allowed", "share": "not_allowed"}
            consent |= {"license": "cc-by-4.0", "granted_at": "2026-01-01T00:00:00Z"}
            consent |= overrides.get(contributor, {})
            fh.write(json.dumps({"id": contributor, "name": contributor.title(), "consent": consent}) + "\n")
            records = [data[(cursor + i) % len(data)] for i in range(sizes.get("sft", 0))]
            cursor += len(records)
            _save(root / contributor, "sft", sft_rows(contributor, records), SFT_FEATURES)
            if sizes.get("pref", 0):
                pairs = pref_rows(contributor, records[: sizes["pref"]])
                _save(root / contributor, "pref", pairs, PREF_FEATURES)
            manifest_counts[contributor] = sizes
    (root / "manifest.json").write_text(json.dumps({"fingerprint": fingerprint, "counts": manifest_counts}))
    return root


def _save(where: Path, kind: str, rows: list[dict], features: Features) -> None:
    cut = max(1, len(rows) // 4)
    Dataset.from_list(rows[cut:], features=features).save_to_disk(str(where / kind / "train"))
    Dataset.from_list(rows[:cut], features=features).save_to_disk(str(where / kind / "heldout"))


def write_config(tmp: Path, base_dir: Path, prepared: Path, **sections: dict) -> Path:
    """A run config over the tiny base and the given prepared dir; `sections` override defaults."""
    raw = {
        "run_name": "t",
        "output_dir": str(tmp / "runs"),
        "seed": 0,
        "model": {"name_or_path": str(base_dir), "device": "cpu"},
        "data": {"prepared_dir": str(prepared)},
        "lora": {"r": 4, "alpha": 8},
        "sft": {
            "learning_rate": 5e-3,
            "max_steps": 4,
            "batch_size": 2,
            "max_length": 512,
            "logging_steps": 1,
        },
        "dpo": {
            "learning_rate": 5e-3,
            "max_steps": 2,
            "batch_size": 2,
            "max_length": 512,
            "logging_steps": 1,
        },
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path

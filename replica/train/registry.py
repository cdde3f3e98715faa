"""The run-level registry: one SQLite row per published replica stage.

It is derived data, rebuilt from the `replica.json` files under `<run>/replicas/`, never the
source of truth. So shards on many machines never write one SQLite file at once: each writes
only its adapters, and any process (the last shard, `replica list`) rebuilds the registry by
scanning. The rebuild writes a temporary file and renames it into place, so readers never see half a registry.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

from replica.artifacts import MANIFEST_NAME, REPLICA_STAGES, final_stage, read_json

REGISTRY_NAME = "registry.sqlite"

_SCHEMA = """
CREATE TABLE replicas (
    contributor TEXT NOT NULL,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    path TEXT NOT NULL,
    is_final INTEGER NOT NULL,
    base_model TEXT,
    fingerprint TEXT,
    train_records INTEGER,
    metrics TEXT,
    finished_at TEXT,
    PRIMARY KEY (contributor, stage)
)
"""


def scan_replicas(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per stage directory under `<run>/replicas/`: published ones and partial leftovers."""
    root = Path(run_dir) / "replicas"
    rows = []
    for contributor_dir in sorted(p for p in root.glob("*") if p.is_dir() and not p.name.startswith(".")):
        final = final_stage(run_dir, contributor_dir.name)
        for stage in REPLICA_STAGES:
            path = contributor_dir / stage
            if (path / MANIFEST_NAME).is_file():
                rows.append(_row(path, read_json(path / MANIFEST_NAME), stage == final))
        if any(p.name.startswith(".tmp-") for p in contributor_dir.iterdir()):
            rows.append(
                {
                    "contributor": contributor_dir.name,
                    "stage": "?",
                    "status": "interrupted",
                    "path": str(contributor_dir),
                    "is_final": 0,
                }
            )
    return rows


def _row(path: Path, manifest: dict[str, Any], is_final: bool) -> dict[str, Any]:
    return {
        "contributor": manifest["contributor"],
        "stage": manifest["stage"],
        "status": "published",
        "path": str(path),
        "is_final": int(is_final),
        "base_model": (manifest.get("base_model") or {}).get("name_or_path"),
        "fingerprint": (manifest.get("prepared") or {}).get("fingerprint"),
        "train_records": len((manifest.get("records") or {}).get("train") or []),
        "metrics": json.dumps(manifest.get("metrics") or {}, sort_keys=True),
        "finished_at": manifest.get("finished_at"),
    }


def rebuild_registry(run_dir: str | Path) -> Path:
    """Rebuild `<run>/registry.sqlite` from the manifests; return its path."""
    run_dir = Path(run_dir)
    final = run_dir / REGISTRY_NAME
    # Host and pid in the name: shards on several machines may rebuild over one shared filesystem.
    tmp = run_dir / f".{REGISTRY_NAME}.tmp-{socket.gethostname()}-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    rows = [r for r in scan_replicas(run_dir) if r["status"] == "published"]
    with sqlite3.connect(tmp) as db:
        db.execute(_SCHEMA)
        columns = [
            "contributor",
            "stage",
            "status",
            "path",
            "is_final",
            "base_model",
            "fingerprint",
            "train_records",
            "metrics",
            "finished_at",
        ]
        db.executemany(
            f"INSERT INTO replicas ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [tuple(row[c] for c in columns) for row in rows],
        )
    db.close()
    os.replace(tmp, final)
    return final


def list_replicas(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every replica stage of a run, rebuilding the registry first so shards' work shows up."""
    run_dir = Path(run_dir)
    path = rebuild_registry(run_dir)
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM replicas ORDER BY contributor, stage")]
    db.close()
    interrupted = [r for r in scan_replicas(run_dir) if r["status"] == "interrupted"]
    return rows + interrupted


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of `list_replicas` rows (final stage marked with *)."""
    lines = [f"{'contributor':<20} {'stage':<5} {'status':<12} {'eval_loss':>9}  path"]
    for row in rows:
        metrics = json.loads(row.get("metrics") or "{}")
        loss = metrics.get("eval_loss")
        loss_text = f"{loss:9.4f}" if isinstance(loss, float) else f"{'-':>9}"
        stage = row["stage"] + ("*" if row.get("is_final") else "")
        lines.append(f"{row['contributor']:<20} {stage:<5} {row['status']:<12} {loss_text}  {row['path']}")
    return "\n".join(lines) + "\n"

"""JSON Schemas of every record kind, exported to `data/schemas/` for people and other tools.

A test regenerates them and compares, so the files cannot drift from `records.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from replica.data.records import RECORD_TYPES

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "data" / "schemas"


def record_schemas() -> dict[str, str]:
    """File name -> JSON Schema text for each record kind (deterministic, sorted keys)."""
    return {
        f"{kind}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for kind, model in RECORD_TYPES.items()
    }


def write_schemas(directory: str | Path = SCHEMA_DIR) -> list[Path]:
    """Write every record kind's schema into `directory`; returns the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in record_schemas().items():
        (directory / name).write_text(text, encoding="utf-8")
        written.append(directory / name)
    return written


if __name__ == "__main__":
    for path in write_schemas():
        print(path)

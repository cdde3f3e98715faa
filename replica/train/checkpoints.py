"""Finding the checkpoint to resume from after a crash.

The Trainer writes `trainer_state.json` last in a checkpoint, so a checkpoint whose state file
parses is whole; one cut off by a kill is ignored (and the previous one, kept by
`save_total_limit`, is used instead).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def last_complete_checkpoint(folder: str | Path) -> str | None:
    """The newest whole `checkpoint-N` under `folder`, or None to start from scratch."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    )
    for _, path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        return str(path)
    return None


def remove_checkpoints(folder: str | Path) -> None:
    """Drop a stage's checkpoints once its adapter is published (they are only for resuming)."""
    shutil.rmtree(folder, ignore_errors=True)

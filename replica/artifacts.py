"""Run directories, manifests, atomic writes and content fingerprints.

Nothing half-written may look complete: files are written to a temporary name and renamed,
directories are built under a temporary name and renamed into place in one step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

TRACKED_LIBRARIES = ("torch", "transformers", "datasets", "peft", "accelerate", "trl", "replica")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Streamed sha256 of a file (flat memory on large inputs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_dir(path: str | Path, pattern: str = "*") -> str:
    """Hash of every file under a directory (names and contents), independent of mtime."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob(pattern) if p.is_file()):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text to `path` via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_json(path: str | Path, value: Any) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextlib.contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes `final` only if the block finishes.

    A crash inside the block leaves only a `.tmp-` sibling, never a directory that looks done.
    An existing `final` is replaced.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape training and serving results."""
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def prepare_run_dir(run_dir: str | Path, resolved_config_yaml: str) -> Path:
    """Create the run directory and write the fully resolved config into it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", resolved_config_yaml)
    return run_dir


# --------------------------------------------------------------------------- replicas (readers for agents/eval)

REPLICA_STAGES = ("sft", "dpo")  # training order: a later stage supersedes an earlier one
MANIFEST_NAME = "replica.json"


def replica_dir(run_dir: str | Path, contributor: str, stage: str) -> Path:
    """Where a contributor's published adapter of `stage` lives: <run_dir>/replicas/<contributor>/<stage>."""
    if stage not in REPLICA_STAGES:
        raise ValueError(f"stage: expected one of {', '.join(REPLICA_STAGES)}, found {stage!r}")
    if not contributor or "/" in contributor or contributor.startswith("."):
        raise ValueError(f"contributor: expected a slug id, found {contributor!r}")
    return Path(run_dir) / "replicas" / contributor / stage


def is_published(path: str | Path) -> bool:
    """A stage directory counts only once its manifest is in place (it is renamed in whole)."""
    return (Path(path) / MANIFEST_NAME).is_file()


def final_stage(run_dir: str | Path, contributor: str) -> str | None:
    """The latest published stage of a contributor's replica (`dpo` over `sft`), or None."""
    for stage in reversed(REPLICA_STAGES):
        if is_published(replica_dir(run_dir, contributor, stage)):
            return stage
    return None


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read a replica's `replica.json`; `path` is the stage directory or the file itself."""
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no replica manifest (is the stage published?)")
    return read_json(file)

"""A base from a local model folder or a Hugging Face hub id (`model.name_or_path`).

Hub ids respect `HF_HUB_OFFLINE`: offline, a hub id loads only from the local Hugging Face cache,
and one that is not there fails here, in one line, before any stage starts.
"""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import constants, try_to_load_from_cache

from replica.config import ModelConfig
from replica.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def claims(config: ModelConfig) -> bool:
    """Any `name_or_path` the other providers left: a folder on disk or a hub id."""
    return bool(config.name_or_path)


def provide(config: ModelConfig) -> str:
    """An absolute folder path (adapters record it, so it must load from any directory) or the hub id."""
    name = config.name_or_path
    folder = Path(name)
    if folder.exists():
        if not (folder / "config.json").is_file():
            raise UserError(
                f"model.name_or_path: {folder} has no config.json (expected a Hugging Face model folder)"
            )
        return str(folder.resolve())
    if not HUB_ID.match(name):
        raise UserError(f"model.name_or_path: {name!r} is neither a local directory nor a hub id (org/name)")
    if constants.is_offline_mode() and not _cached(name, config.revision):
        raise UserError(
            f"model.name_or_path: {name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"run `hf download {name}` where the hub is reachable, or point to a local folder"
        )
    return name


def _cached(repo_id: str, revision: str | None) -> bool:
    """Whether the hub cache holds this model's config (what `from_pretrained` reads first)."""
    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return isinstance(found, str)

"""What an evaluation reads: prepared held-out splits and published adapters, by the documented layout
(docs/internals.md: `prepared/<contributor>/{sft,pref,tasks}/heldout`, `<run_dir>/replicas/<c>/<stage>/`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from replica.artifacts import is_published, replica_dir, sha256_dir
from replica.errors import UserError

SPLITS = ("tasks/heldout", "sft/heldout", "pref/heldout")


def discover_contributors(prepared_dir: Path) -> list[str]:
    """Contributors with at least one held-out split in the prepared directory, sorted."""
    if not prepared_dir.is_dir():
        raise UserError(f"{prepared_dir}: no prepared data (run `replica data prepare CONFIG` first)")
    found = [p.name for p in prepared_dir.iterdir() if p.is_dir() and any((p / s).is_dir() for s in SPLITS)]
    return sorted(found)


def load_rows(prepared_dir: Path, contributor: str, split: str) -> list[dict[str, Any]]:
    """A prepared split as a list of plain dicts ([] when the contributor has none of that kind)."""
    path = prepared_dir / contributor / split
    if not path.is_dir():
        return []
    try:
        from replica.data.prepared import load_split  # the data stage's reader, when installed
    except ImportError:
        from datasets import load_from_disk

        return [dict(row) for row in load_from_disk(str(path))]
    return [dict(row) for row in load_split(prepared_dir, contributor, split)]


def published_adapter(run_dir: Path, contributor: str, stage: str) -> Path | None:
    """The stage's adapter directory if it is published (complete), else None."""
    path = replica_dir(run_dir, contributor, stage)
    return path if is_published(path) or (path / "adapter_config.json").is_file() else None


def adapter_fingerprint(path: Path) -> str:
    """Content hash of the adapter weights and config: what a report's numbers came from."""
    return sha256_dir(path, "adapter_*")


def scored_replica_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of a script that scores one replica on its contributor's held-out rows:
    CONFIG, --contributor, --stage, --limit and `--set a.b=c` overrides (as on `replica`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config")
    parser.add_argument("--contributor", required=True)
    parser.add_argument("--stage", default="sft", choices=["sft", "dpo"])
    parser.add_argument("--limit", type=int, default=24, help="held-out demonstrations to score")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="config override a.b=c (as `replica --set`)",
    )
    return parser


def load_scored_replica(config: Any, contributor: str, stage: str) -> tuple[Any, Any, str]:
    """(tokenizer, base model with the contributor's published `stage` adapter, adapter name), as a
    config names them: what the analysis scripts score held-out demonstrations with."""
    from replica.agents.adapters import adapter_name, load_adapters
    from replica.bases import provide_base
    from replica.model import load_base_model, load_tokenizer, resolve_device

    adapter = published_adapter(config.run_dir, contributor, stage)
    if adapter is None:
        raise UserError(
            f"{replica_dir(config.run_dir, contributor, stage)}: no published {stage} adapter of {contributor} "
            f"(run `replica train CONFIG --contributor {contributor}` with the same --set overrides first)"
        )
    base_path = provide_base(config.model)
    tokenizer = load_tokenizer(base_path, config.model.revision, config.model.chat_template)
    base = load_base_model(config.model, resolve_device(config.model), base_path)
    name = adapter_name(contributor, stage)
    model = load_adapters(base, {name: adapter})
    return tokenizer, model, name

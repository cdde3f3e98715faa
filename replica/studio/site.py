"""Where the studio reads and writes: the run, its config, each contributor's file, consent files.

The studio serves one run directory. From the run's config (`<run>/config.yaml`, the resolved
config every run keeps, or `--config`) it learns which input file holds each contributor's
records and which contributors file `prepare` reads; from the serve config it learns where the
usage ledger and the served consent file are. Its own state (hashed sign-in tokens, unsaved
drafts) lives under `<run>/studio/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replica.agents.serve_config import ServeConfig, load_serve_config
from replica.artifacts import read_json
from replica.config import RunConfig, load_config
from replica.data.records import SLUG_PATTERN
from replica.errors import UserError

DRAFT_ID = re.compile(r"^[0-9a-f]{12}$")  # the 12-hex-digit ids of drafts and reviews


@dataclass(frozen=True)
class StudioSite:
    """The files of one run that the studio works on."""

    run_dir: Path
    config: RunConfig
    serve: ServeConfig
    config_path: Path

    @property
    def home(self) -> Path:
        """The studio's own state: tokens.sqlite and drafts/."""
        return self.run_dir / "studio"

    @property
    def tokens_db(self) -> Path:
        return self.home / "tokens.sqlite"

    @property
    def ledger_db(self) -> Path:
        return self.serve.path(self.run_dir, self.serve.usage_db)

    def drafts_dir(self, contributor: str, kind: str) -> Path:
        """Unsaved work of one contributor (`record` or `review`), one JSON file per draft."""
        return self.home / "drafts" / check_slug(contributor) / kind

    def draft_file(self, contributor: str, kind: str, draft_id: str) -> Path:
        """One draft's file; an id that is not a draft id is "not found", never a path built from it."""
        if not DRAFT_ID.match(draft_id):
            raise FileNotFoundError(draft_id)
        return self.drafts_dir(contributor, kind) / f"{draft_id}.json"

    def read_draft(self, contributor: str, kind: str, draft_id: str) -> dict[str, Any]:
        path = self.draft_file(contributor, kind, draft_id)
        if not path.is_file():
            raise FileNotFoundError(draft_id)
        return read_json(path)

    def consent_files(self) -> list[Path]:
        """Every contributors file whose consent must change together, existing ones only.

        The one `prepare` reads (data.contributors_file) and the one `replica serve` reads (serve
        config's contributors_file, else <run>/prepared/contributors.jsonl, written by prepare).
        """
        served = self.serve.contributors_file or self.run_dir / "prepared" / "contributors.jsonl"
        candidates = [self.config.data.contributors_file, served]
        found: list[Path] = []
        for candidate in candidates:
            if candidate and Path(candidate).is_file():
                path = Path(candidate)
                if all(path.resolve() != other.resolve() for other in found):
                    found.append(path)
        return found

    def data_file(self, contributor: str) -> Path:
        """The contributor's own input file: the data.inputs entry with `contributor: <id>`, else
        the native-format JSONL file named `<id>.jsonl`. Records the studio makes are appended to it."""
        check_slug(contributor)
        inputs = self.config.data.inputs
        for spec in inputs:
            if spec.contributor == contributor:
                return Path(spec.path)
        for spec in inputs:
            if spec.format in ("auto", "replica") and Path(spec.path).name == f"{contributor}.jsonl":
                return Path(spec.path)
        raise UserError(
            f"{self.config_path}: data.inputs has no file for contributor {contributor!r}; add "
            f"`- {{path: data/{contributor}.jsonl, format: replica}}` so prepare reads what the studio saves"
        )


def check_slug(contributor: str) -> str:
    """Contributor ids are slugs (they name files): anything else is refused, never used in a path."""
    if not isinstance(contributor, str) or not re.match(SLUG_PATTERN, contributor):
        raise UserError(f"contributor {contributor!r}: expected a slug (lowercase letters, digits, - and _)")
    return contributor


def load_site(
    run_dir: str | Path, config_path: str | Path | None = None, serve_config_path: str | Path | None = None
) -> StudioSite:
    """The studio's view of `run_dir`; the run config defaults to the copy the run keeps."""
    run_dir = Path(run_dir)
    path = Path(config_path) if config_path else run_dir / "config.yaml"
    if not path.is_file():
        raise UserError(
            f"{path}: no run config (a run keeps its resolved config there once `replica train` ran; "
            "or pass --config RUN.yaml)"
        )
    return StudioSite(run_dir, load_config(path), load_serve_config(serve_config_path), path)

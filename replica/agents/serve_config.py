"""Serving settings (`configs/serve.yaml`): metering rates, request limits, where keys and usage live."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from replica.errors import UserError


class ServeConfig(BaseModel):
    """What `replica serve` and `replica usage` read. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field("serve", pattern="^serve$")
    currency: str = Field("USD", description="Label printed next to amounts.")
    rate_per_1k_tokens: Decimal = Field(
        Decimal("0.002"), ge=0, description="Price of 1,000 tokens (prompt + completion) of a replica."
    )
    contributor_share_percent: Decimal = Field(
        Decimal("70"), ge=0, le=100, description="Percent of that price owed to the replica's contributor."
    )
    max_body_bytes: int = Field(1_000_000, gt=0, description="Larger request bodies get 413.")
    default_max_tokens: int = Field(256, gt=0, description="Completion budget when a request sets none.")
    max_tokens_limit: int = Field(2048, gt=0, description="Largest `max_tokens` a request may ask for.")
    max_batch: int = Field(8, gt=0, description="Requests generated together in one batch.")
    batch_wait_ms: float = Field(10, ge=0, description="How long the batcher waits to fill a batch.")
    keys_db: str = Field("serve/keys.sqlite", description="API keys (hashed); relative to the run dir.")
    usage_db: str = Field("serve/usage.sqlite", description="Usage ledger; relative to the run dir.")
    contributors_file: str | None = Field(
        None, description="Consent records; default <run>/prepared/contributors.jsonl."
    )

    def path(self, run_dir: str | Path, value: str) -> Path:
        """A configured path, relative to the run directory unless absolute."""
        return Path(value) if Path(value).is_absolute() else Path(run_dir) / value


DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "serve.yaml"


def load_serve_config(path: str | Path | None = None) -> ServeConfig:
    """Read a serve YAML (default `configs/serve.yaml` when present, else built-in defaults)."""
    if path is None:
        if not DEFAULT_CONFIG.is_file():
            return ServeConfig()
        path = DEFAULT_CONFIG
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: serve config not found")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of serve settings, found {type(raw).__name__}")
    try:
        return ServeConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path}: {key}: {first['msg']}; found {first.get('input')!r}") from None

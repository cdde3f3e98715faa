"""Helpers shared by the serving tests: a run directory of real PEFT adapters on the tiny base.

Each adapter is a LoRA with random (non-zero) weights, so every replica answers differently from
the base and from the others. The layout follows docs/internals.md (`replicas/<id>/<stage>/` with
tokenizer files and `replica.json`; `prepared/contributors.jsonl` with consent records).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from replica.model import load_tokenizer
from replica.templates import template_hash, training_chat_template


def write_adapter(base_dir: Path, target: Path, contributor: str, stage: str, seed: int) -> Path:
    """Save a random LoRA adapter, the training tokenizer and a minimal replica.json at `target`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, lora)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer = load_tokenizer(str(base_dir))
    tokenizer.chat_template = training_chat_template(tokenizer)
    tokenizer.save_pretrained(target)
    manifest = {
        "contributor": contributor,
        "stage": stage,
        "base_model": {"path": str(base_dir), "chat_template_hash": template_hash(tokenizer)},
    }
    (target / "replica.json").write_text(json.dumps(manifest, indent=2))
    return target


def consent_record(contributor: str, serve: str = "allowed", revoked_at: str | None = None) -> dict:
    """A Contributor record (replica/data/records.py) with the given serve consent."""
    return {
        "kind": "contributor",
        "id": contributor,
        "name": contributor.title(),
        "consent": {
            "train": "allowed",
            "serve": serve,
            "share": "not_allowed",
            "license": "CC-BY-4.0",
            "granted_at": "2026-01-01T00:00:00Z",
            "revoked_at": revoked_at,
        },
    }


def write_consent(run_dir: Path, records: list[dict]) -> Path:
    path = run_dir / "prepared" / "contributors.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def make_run(base_dir: Path, run_dir: Path, contributors: list[str], stage: str = "sft") -> Path:
    """A run directory with one adapter per contributor (seeded by position) and serve consent."""
    for seed, contributor in enumerate(contributors):
        write_adapter(base_dir, run_dir / "replicas" / contributor / stage, contributor, stage, seed + 1)
    write_consent(run_dir, [consent_record(c) for c in contributors])
    return run_dir


CONTRIBUTORS = ["alice", "bob", "carol"]


@pytest.fixture(scope="session")
def serve_run(tiny_base_dir, tmp_path_factory) -> Path:
    """A run with three replicas (alice, bob, carol) on the tiny base, all consenting to serve."""
    return make_run(tiny_base_dir, tmp_path_factory.mktemp("serve") / "run", CONTRIBUTORS)

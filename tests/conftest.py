"""Shared test set-up: offline, deterministic, tiny."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """A tiny Qwen2 base (tokenizer trained locally, a few pretraining steps), built once per session.

    Its tokenizer carries Qwen2.5's chat template, so TRL's training template and tool-call
    response parser apply. Load it with `replica.model.load_tokenizer(str(path))` and
    `AutoModelForCausalLM.from_pretrained(path)`.
    """
    import yaml

    from replica.bases.tiny import ensure_base

    raw = yaml.safe_load((FIXTURES / "tiny_base.yaml").read_text())
    raw["corpus"] = [str(FIXTURES / c) for c in raw["corpus"]]
    raw["cache_dir"] = str(tmp_path_factory.mktemp("bases"))
    config_path = tmp_path_factory.mktemp("base_config") / "tiny_base.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    return ensure_base(config_path)

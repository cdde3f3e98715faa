"""Base providers (`replica.bases`): which provider answers, and the errors a user sees."""

import pytest
from huggingface_hub import constants

from replica.bases import provide_base
from replica.config import ModelConfig
from replica.errors import UserError


def test_a_hub_id_online_is_passed_through_to_from_pretrained(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert provide_base(ModelConfig(name_or_path="Qwen/Qwen2.5-0.5B")) == "Qwen/Qwen2.5-0.5B"


def test_an_uncached_hub_id_offline_fails_in_one_line_saying_how_to_fetch_it(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(UserError) as err:
        provide_base(ModelConfig(name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct"))
    message = str(err.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message and "hf download" in message


def test_a_name_that_is_neither_a_folder_nor_a_hub_id_is_an_error():
    with pytest.raises(UserError, match="neither a local directory nor a hub id"):
        provide_base(ModelConfig(name_or_path="no-such-model"))


def test_a_folder_without_config_json_is_an_error(tmp_path):
    with pytest.raises(UserError, match="has no config.json"):
        provide_base(ModelConfig(name_or_path=str(tmp_path)))


def test_the_tiny_base_provider_answers_model_build_with_its_cached_absolute_path(tiny_base_dir, tmp_path):
    import yaml
    from train_fixtures import FIXTURES

    raw = yaml.safe_load((FIXTURES / "tiny_base.yaml").read_text())
    raw["corpus"] = [str(FIXTURES / c) for c in raw["corpus"]]
    raw["cache_dir"] = str(tiny_base_dir.parent)  # the session's build: same config, same key
    build = tmp_path / "tiny_base.yaml"
    build.write_text(yaml.safe_dump(raw))
    assert provide_base(ModelConfig(build=str(build))) == str(tiny_base_dir.resolve())


def test_providers_import_no_stage_and_the_loader_imports_no_training():
    """ARCHITECTURE.md's direction: stages -> {bases, model}; providers -> neither a stage nor model.py."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "replica"

    def imported(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        return names | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}

    stages = (
        "replica.train",
        "replica.eval",
        "replica.agents",
        "replica.data",
        "replica.studio",
        "replica.demo",
    )
    for path in [*(package / "bases").glob("*.py"), package / "templates.py", package / "precision.py"]:
        found = imported(path)
        assert not [m for m in found if m.startswith((*stages, "replica.model", "replica.cli"))], path
    assert not [m for m in imported(package / "model.py") if m.startswith(stages)]

"""Run configs: YAML + extends + --set, validated with errors that name file and key."""

from pathlib import Path

import pytest
import yaml

from replica.cli import main
from replica.config import ConfigError, dump_config, load_config

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_yaml_and_set_precedence(tmp_path):
    write(
        tmp_path / "parent.yaml",
        "model: {name_or_path: org/base}\nsft: {learning_rate: 1.0e-3, batch_size: 4}\n",
    )
    child = write(tmp_path / "child.yaml", "extends: parent.yaml\nsft: {batch_size: 2}\n")
    config = load_config(child, ["sft.learning_rate=2e-4", "lora.r=8"])
    assert config.sft.learning_rate == 2e-4  # --set beats YAML
    assert config.sft.batch_size == 2  # child beats parent
    assert config.lora.r == 8
    assert config.dpo.beta == 0.1  # default
    assert config.model.name_or_path == "org/base"  # inherited


def test_set_overrides_are_recorded_but_hash_as_their_values(tmp_path):
    """A run's report and demo.json say which --set made its figures; the resolved dump (what
    every hash is of) holds the values only, so a --set equal to the YAML changes no hash."""
    path = write(tmp_path / "run.yaml", "model: {name_or_path: org/base}\nsft: {epochs: 3}\n")
    plain, overridden = load_config(path), load_config(path, ["sft.epochs=3"])
    assert plain.overrides == [] and overridden.overrides == ["sft.epochs=3"]
    assert dump_config(plain) == dump_config(overridden)
    assert "overrides" not in yaml.safe_load(dump_config(overridden))


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path / "typo.yaml", "model: {name_or_path: org/base}\nsft: {learnin_rate: 1.0e-3}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "sft.learnin_rate" in message and "unknown key" in message
    assert "learning_rate" in message  # says what was expected


def test_unknown_key_in_parent_names_parent_file(tmp_path):
    write(tmp_path / "parent.yaml", "model: {name_or_path: org/base}\nlora: {rank: 8}\n")
    child = write(tmp_path / "child.yaml", "extends: parent.yaml\n")
    with pytest.raises(ConfigError, match=r"parent\.yaml: lora\.rank: unknown key"):
        load_config(child)


def test_wrong_type_says_expected_and_found(tmp_path):
    path = write(tmp_path / "bad.yaml", "model: {name_or_path: org/base}\nsft: {batch_size: many}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "sft.batch_size" in str(err.value) and "'many'" in str(err.value)


@pytest.mark.parametrize("section", ["eval", "model", "data"])
def test_a_section_that_is_not_a_mapping_is_named(tmp_path, section):
    """Found by tests/test_fuzz_config.py: `eval: '{...}'` (a string) once failed with an
    AttributeError while relative paths were resolved, before validation could name it."""
    model = "" if section == "model" else "model: {name_or_path: org/base}\n"
    path = write(tmp_path / "flat.yaml", f"{model}{section}: '{{stages: [base]}}'\n")
    with pytest.raises(ConfigError, match=rf"flat\.yaml: {section}: .*dictionary"):
        load_config(path)


def test_bad_set_override_is_named(tmp_path):
    path = write(tmp_path / "ok.yaml", "model: {name_or_path: org/base}\n")
    with pytest.raises(ConfigError, match=r"--set: dpo\.beta"):
        load_config(path, ["dpo.beta=-1"])


def test_bad_combination_fails_at_load(tmp_path):
    path = write(tmp_path / "q.yaml", "model: {name_or_path: org/base, device: cpu, quantization: 4bit}\n")
    with pytest.raises(ConfigError, match="4bit"):
        load_config(path)


def test_missing_model_source(tmp_path):
    path = write(tmp_path / "m.yaml", "model: {}\n")
    with pytest.raises(ConfigError, match="model"):
        load_config(path)


def test_resolved_config_round_trips(tmp_path):
    path = write(tmp_path / "r.yaml", "model: {name_or_path: org/base}\nseed: 7\n")
    config = load_config(path)
    again = write(tmp_path / "again.yaml", dump_config(config))
    assert load_config(again).model_dump(exclude={"source"}) == config.model_dump(exclude={"source"})


def test_cli_config_error_is_one_line_exit_2(tmp_path, capsys):
    path = write(tmp_path / "typo.yaml", "model: {name_or_path: org/base}\nsftt: {}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "show", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "sftt" in err and "Traceback" not in err


def test_cli_missing_file_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "show", str(tmp_path / "nope.yaml")])
    assert exit_info.value.code == 2
    assert "not found" in capsys.readouterr().err


RUN_CONFIGS = sorted(
    p for p in (REPO / "configs").rglob("*.yaml") if "accelerate" not in p.parts and "slurm" not in p.parts
)


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_loads(path):
    """Every YAML under configs/ validates against its schema (see STYLE.md: recipes drift otherwise)."""
    import yaml

    raw = yaml.safe_load(path.read_text())
    if raw.get("kind") == "base_build":
        from replica.bases.tiny import load_build_config

        load_build_config(path)
    elif raw.get("kind") == "serve":
        from replica.agents.serve_config import load_serve_config

        load_serve_config(path)
    elif "model" in raw or "extends" in raw:
        load_config(path)
    else:  # a shared fragment such as base.yaml: valid once a model is named
        load_config(path, ["model.name_or_path=org/any"])

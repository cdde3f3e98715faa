"""Fuzzing config loading: generated YAML (mutated shipped configs, random text and bytes, `--set`).

Whatever the file holds, `load_config` returns a validated config or raises `ConfigError` whose
message starts with the file (or `--set`) it is about: never another exception.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fuzz_support import JSON, TEXT, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replica.config import ConfigError, RunConfig, load_config

CONFIGS = Path(__file__).parents[1] / "configs"
EXAMPLES = [
    yaml.safe_load(path.read_text())
    for path in sorted(CONFIGS.glob("*.yaml"))
    if isinstance(yaml.safe_load(path.read_text()), dict) and "kind" not in yaml.safe_load(path.read_text())
]
OVERRIDES = st.builds(
    lambda key, value: f"{key}={value}",
    st.sampled_from(["sft.epochs", "data.max_length", "run_name", "dpo", "eval.stages", "a.b.c", ""]) | TEXT,
    TEXT,
)


def as_yaml(value) -> str:
    """Block YAML, or JSON (flow YAML) for values nested too deep for PyYAML's writer."""
    try:
        return yaml.safe_dump(value, allow_unicode=True)
    except RecursionError:
        return json.dumps(value)


YAML_TEXT = st.builds(as_yaml, mutated(EXAMPLES, max_edits=4))


def assert_loads_or_explains(path: Path, overrides: list[str]) -> None:
    try:
        config = load_config(path, overrides)
    except ConfigError as err:
        message = str(err)  # names this file, the file it extends, or the --set item at fault
        assert message.startswith((str(path.parent), "--set")), message
    else:
        assert isinstance(config, RunConfig)


def fuzz_config(cases: int):
    @settings(max_examples=cases, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        content=YAML_TEXT
        | st.builds(as_yaml, JSON)
        | TEXT
        | st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
        overrides=st.lists(OVERRIDES, max_size=2),
    )
    def check(tmp_path_factory, content, overrides):
        path = tmp_path_factory.mktemp("cfg") / "run.yaml"
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
        assert_loads_or_explains(path, overrides)

    return check


def test_generated_configs_load_or_explain(tmp_path_factory):
    fuzz_config(60)(tmp_path_factory)


@pytest.mark.slow
def test_generated_configs_load_or_explain_long(tmp_path_factory):
    fuzz_config(3000)(tmp_path_factory)


def test_config_bytes_that_are_not_utf8_are_explained(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"run_name: \xff\xfe\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


def test_yaml_nested_thousands_deep_is_explained(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("sft: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)

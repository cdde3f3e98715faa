"""scripts/base_candidates.py: candidate bases built from a config plus overrides, each gated."""

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from replica.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("base_candidates", ROOT / "scripts" / "base_candidates.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _first_lines(source: Path, target: Path, n: int) -> Path:
    target.write_text("\n".join(gzip.decompress(source.read_bytes()).decode().splitlines()[:n]) + "\n")
    return target


def test_overrides_parse_yaml_values_and_keep_commas_inside_lists():
    path, overrides = _script().parse_candidate("configs/demo_base.yaml:pretrain.steps=300,corpus=[a, b]")
    assert path == Path("configs/demo_base.yaml")
    assert overrides == {"pretrain.steps": 300, "corpus": ["a", "b"]}
    with pytest.raises(UserError, match="not key=value"):
        _script().parse_candidate("configs/demo_base.yaml:steps")


def test_unknown_override_key_lists_the_keys(tmp_path):
    with pytest.raises(UserError, match=r"pretrain.stepz: no such key \(keys: .*steps"):
        _script().write_variant(ROOT / "configs" / "demo_base.yaml", {"pretrain.stepz": 3}, tmp_path)


def test_a_reduced_candidate_is_built_gated_and_written_as_one_line(tmp_path):
    corpus = _first_lines(ROOT / "data" / "demo" / "base_corpus.jsonl.gz", tmp_path / "corpus.jsonl", 40)
    gate = _first_lines(ROOT / "data" / "demo" / "copy_gate.jsonl.gz", tmp_path / "gate.jsonl", 2)
    spec = (
        f"{ROOT / 'configs' / 'demo_base_scratch.yaml'}:corpus=[{corpus}],vocab_size=500,hidden_size=32,"
        "intermediate_size=64,pretrain.steps=2,pretrain.batch_size=4"
    )
    out = tmp_path / "candidates.jsonl"
    _script().main([spec, "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--gate", str(gate)])
    (line,) = out.read_text().splitlines()
    result = json.loads(line)
    assert result["candidate"] == spec and result["device"] == "cpu" and result["build_seconds"] > 0
    assert result["gate"]["conversations"] == 2 and "C-digit1" in result["gate"]["kinds"]
    built = Path(result["base"])
    assert (built / "build.json").is_file() and json.loads((built / "config.json").read_text())[
        "hidden_size"
    ] == 32

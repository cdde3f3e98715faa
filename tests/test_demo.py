"""The embedded demo: its committed base, the tokenizer designed for copying ids, and a reduced
`replica demo` run end to end (prepare → SFT → eval) that must beat the base."""

import gzip
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

from replica.bases.tiny import build_key, export_prebuilt, install_prebuilt, load_build_config
from replica.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DEMO_BASE = ROOT / "data" / "demo" / "base"


@pytest.mark.parametrize(
    ("config_name", "folder"), [("demo_base", "base"), ("demo_base_scratch", "base_scratch")]
)
def test_committed_bases_are_the_builds_of_their_configs(config_name, folder):
    """The demo base (stage 2) and the base it continues from (stage 1, its `init_from`): each
    committed build's key is its config's, so an edit to either config retrains instead."""
    config = load_build_config(ROOT / "configs" / f"{config_name}.yaml")
    committed = ROOT / "data" / "demo" / folder
    manifest = json.loads((committed / "manifest.json").read_text())
    assert manifest["key"] == build_key(config)
    assert set(manifest["files"]) >= {"model.safetensors", "tokenizer.json", "config.json", "build.json"}
    assert sum(p.stat().st_size for p in committed.iterdir()) <= 25 * 2**20
    if config.init_from:
        assert Path(config.init_from).resolve() == ROOT / "data" / "demo" / "base_scratch"


def test_demo_tokenizer_gives_a_value_the_same_tokens_in_text_and_in_json():
    """Ids in digits, street names spelled from letters, a status one word: what a replica copies
    from a tool's JSON into a reply (or back) is the same tokens in both (configs/demo_base.yaml)."""
    from replica.model import load_tokenizer

    tokenizer = load_tokenizer(str(DEMO_BASE))
    in_text = tokenizer.tokenize("my order O-482 moved to 28 River Lane. It is delayed.")
    in_json = tokenizer.tokenize('{"order_id": "O-482", "address": "28 River Lane", "status": "delayed"}')
    street = ["2", "8", "ĠR", "i", "v", "e", "r", "ĠL", "a", "n", "e"]
    for piece in (["O-", "4", "8", "2"], street, ["delayed"]):
        assert _contains(in_text, piece) and _contains(in_json, piece), (piece, in_text, in_json)


def _contains(tokens: list[str], piece: list[str]) -> bool:
    return any(tokens[i : i + len(piece)] == piece for i in range(len(tokens)))


def test_prebuilt_base_installs_only_for_its_key_and_intact(tiny_base_dir, tmp_path):
    exported = export_prebuilt(tiny_base_dir, tmp_path / "prebuilt", key="abc")
    assert install_prebuilt(exported, tmp_path / "other", key="def") is False
    assert install_prebuilt(exported, tmp_path / "cache", key="abc") is True
    weights = (tmp_path / "cache" / "model.safetensors").read_bytes()
    assert weights == (tiny_base_dir / "model.safetensors").read_bytes()
    (exported / "config.json").write_text("{}")
    with pytest.raises(UserError, match="sha256"):
        install_prebuilt(exported, tmp_path / "cache2", key="abc")


def _script(name: str):
    """scripts/<name>.py as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generator():
    return _script("make_demo_data")


def reduced_config(tmp_path: Path, who: tuple[str, ...] = ("alice", "bob"), tasks: int = 80) -> Path:
    """configs/demo.yaml on fewer records of two contributors, SFT only, each replica also run on
    the other's tasks."""
    data = tmp_path / "data"
    _generator().generate(data, tasks=tasks, base_conversations=1)
    shutil.copy(ROOT / "data" / "demo" / "contributors.jsonl", data / "contributors.jsonl")
    config = {
        "extends": str(ROOT / "configs" / "demo.yaml"),
        "output_dir": str(tmp_path / "runs"),
        "run_name": "reduced",
        "data": {
            "inputs": [{"path": str(data / f"{name}.jsonl"), "format": "replica"} for name in who],
            "contributors_file": str(data / "contributors.jsonl"),
            "contributors": list(who),
        },
        "dpo": {"enabled": False},
        "eval": {"stages": ["base", "sft"], "cross": True},
    }
    path = tmp_path / "reduced.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_reduced_demo_end_to_end_replica_beats_base_and_does_its_own_tasks_best(tmp_path):
    from replica.demo import run_demo

    result = run_demo(reduced_config(tmp_path))
    assert result.report_md is not None and result.report_md.is_file()
    success = {(r["contributor"], r["stage"]): r["success"] for r in result.report["results"]}
    assert set(success) == {(who, stage) for who in ("alice", "bob") for stage in ("base", "sft")}
    assert (result.run_dir / "replicas" / "alice" / "sft" / "adapter_model.safetensors").is_file()
    gate = json.loads((result.run_dir / "copy_gate.json").read_text())  # printed before training
    assert gate["conversations"] == 100 and "street" in gate["kinds"]
    # Each SFT replica beats the base on its contributor's tasks and does them better than the
    # other contributor's (the full demo's direction, docs/demo.md "Results").
    rows = json.loads((result.run_dir / "demo.json").read_text())["cross_success"]
    for who, other in (("alice", "bob"), ("bob", "alice")):
        assert success[(who, "sft")] > success[(who, "base")], success
        assert rows[who][who] > rows[who][other], rows


@pytest.mark.slow
def test_reduced_demo_base_builds_end_to_end_from_the_demo_config(tmp_path):
    """configs/demo_base_scratch.yaml (stage 1 of the demo base) on 60 neutral conversations, a
    smaller model and 4 steps: the real builder."""
    from transformers import AutoModelForCausalLM

    from replica.bases.tiny import ensure_base
    from replica.model import load_tokenizer

    raw = yaml.safe_load((ROOT / "configs" / "demo_base_scratch.yaml").read_text())
    corpus = tmp_path / "corpus.jsonl"
    lines = (
        gzip.decompress((ROOT / "data" / "demo" / "base_corpus.jsonl.gz").read_bytes())
        .decode()
        .splitlines()[:60]
    )
    corpus.write_text("\n".join(lines) + "\n")
    raw |= {
        "corpus": [str(corpus)],
        "hidden_size": 32,
        "intermediate_size": 64,
        "cache_dir": str(tmp_path / "c"),
    }
    raw |= {"pretrain": {"steps": 4, "batch_size": 4, "max_length": 768}, "prebuilt": None, "vocab_size": 600}
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(raw))
    built = ensure_base(path)
    model = AutoModelForCausalLM.from_pretrained(built)
    assert model.config.model_type == "llama" and model.config.hidden_size == 32
    tokenizer = load_tokenizer(str(built))
    assert _contains(tokenizer.tokenize('{"order_id": "O-482"}'), ["O-", "4", "8", "2"])
    assert not (built / "_trainer").exists()
    assert ensure_base(path) == built  # cached: same key, no rebuild


def test_demo_json_turns_the_evaluation_cross_matrix_to_rows_per_replica():
    from replica.demo import _by_replica

    cross = {  # replica/eval/summary.py's cross_success: matrix[task owner][replica]
        "replicas": ["alice", "bob"],
        "matrix": {"alice": {"alice": 0.75, "bob": 0.5}, "bob": {"alice": 0.25, "bob": 0.5}},
    }
    assert _by_replica(cross) == {"alice": {"alice": 0.75, "bob": 0.25}, "bob": {"alice": 0.5, "bob": 0.5}}
    assert _by_replica({}) == {}


def test_copy_drills_reply_only_with_values_read_from_the_request():
    """A drill teaches copying only if every value of the reply can be read from the request."""
    import random
    import re

    generator = _generator()
    rng = random.Random(0)
    value = re.compile(r"[CTO]-\d{3}|\d+ [A-Z][a-z]+ (?:Street|Avenue|Road|Lane)|delayed|shipped|delivered")
    for _ in range(50):
        system, request, reply = generator.copy_drill(rng)
        assert (system["role"], request["role"], reply["role"]) == ("system", "user", "assistant")
        values = value.findall(reply["content"]) + re.findall(r"\$(\d+)", reply["content"])
        assert values, reply["content"]
        assert all(v in request["content"] for v in values), (request["content"], reply["content"])
    pool = set(generator.STREET_POOL)
    assert set(generator.STREETS) < pool and len(pool) >= 150


def test_varied_openings_state_the_same_ids_and_words_in_other_places():
    """The base corpus's openings: a request keeps its words and both ids, in one of several places."""
    import random
    import re

    generator = _generator()
    rng = random.Random(3)
    used = set()
    for row in generator.base_corpus(random.Random(3), 60):
        asked = row["messages"][1]["content"]
        ticket, customer, body = re.fullmatch(
            r"Ticket (T-\d+) \(customer (C-\d+)\): (.*)", asked, re.S
        ).groups()
        rewritten = generator.vary_opening(rng, asked)
        assert ticket in rewritten and customer in rewritten and body[1:] in rewritten, (asked, rewritten)
        forms = [
            f
            for f in generator.OPENINGS
            if rewritten
            == f.format(ticket=ticket, customer=customer, body=body, Body=body[:1].upper() + body[1:])
        ]
        assert len(forms) >= 1, rewritten
        used.update(forms)
    assert used == set(generator.OPENINGS)  # every form, not one fixed place
    varied = generator.base_corpus(random.Random(3), 20, vary_ids=True)
    assert {r["messages"][1]["content"].startswith("Ticket T-") for r in varied} == {True, False}
    with pytest.raises(ValueError, match="does not open with"):
        generator.vary_opening(rng, "Hello there")

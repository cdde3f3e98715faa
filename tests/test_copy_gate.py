"""The copy gate (replica/eval/copy_gate.py): which values it scores, its report, its cache, and
`replica demo` printing it next to the base."""

import gzip
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from replica.copy_values import copy_targets
from replica.errors import UserError
from replica.eval.copy_gate import (
    THRESHOLD,
    embedding_cosine,
    first_piece,
    format_report,
    gate_base,
    read_conversations,
)

ROOT = Path(__file__).resolve().parents[1]
GATE_FILE = ROOT / "data" / "demo" / "copy_gate.jsonl.gz"
STREETS = ["Elm", "Oak", "Maple", "Cedar", "Pine", "Birch", "Willow", "Hill", "Lake", "River"]
TEN_STREETS = " ".join(f"{n} {name} Road." for n, name in enumerate(STREETS, 1))  # how the gate finds them


def test_copy_gate_counts_only_values_seen_before():
    text = 'T-573 to 1 Lake Road, $45. {"ticket_id": "T-573", "address": "1 Lake Road", "total": 45} T-123 delayed'
    pieces = [
        "T-",
        *"573",
        " to",
        " ",
        "1",
        " Lake",
        " Road",
        ",",
        " $",
        "4",
        "5",
        ". {",
        '"ticket_id":',
        ' "',
    ]
    pieces += [
        "T-",
        *"573",
        '",',
        ' "address":',
        ' "',
        "1",
        " La",
        "ke",
        " Road",
        '",',
        ' "total":',
        " ",
        "4",
    ]
    pieces += ["5", "}", " ", "T-", *"123", " delayed"]
    assert "".join(pieces) == text
    offsets, at = [], 0
    for piece in pieces:
        offsets.append((at, at + len(piece)))
        at += len(piece)
    targets = copy_targets(text, offsets)
    # Second T-573 (tokens 16-19): digit by digit; the street spelled in two tokens counts as one
    # value, its house number "1" as another; the amount after "total": is the $45 reused. T-123
    # and "delayed" are first mentions.
    assert targets == [
        ("T-digit1", [17], True),
        ("T-digit2", [18], True),
        ("T-digit3", [19], True),
        ("house", [23], True),
        ("street", [24, 25], True),
        ("suffix", [26], True),
        ("amount", [30, 31], True),
    ]


def test_a_street_suffix_counts_only_after_the_same_street_and_is_weighted_only_when_asked():
    """`Road` after `Oak` is no copy of `Lake Road`, nor `2` before it a house number's; the base
    build's loss weights suffixes only when `pretrain.copy_kinds` names them (earlier builds
    weighted street names alone)."""
    from replica.copy_values import copied_token_mask

    pieces = ["1", " Lake", " Road", ".", " 2", " Oak", " Road", ".", " 1", " Lake", " Road"]
    text = "".join(pieces)
    offsets, at = [], 0
    for piece in pieces:
        offsets.append((at, at + len(piece)))
        at += len(piece)
    assert copy_targets(text, offsets) == [
        ("house", [8], True),
        ("street", [9], True),
        ("suffix", [10], True),
    ]

    class Pieces:  # a tokenizer whose token i decodes to pieces[i]
        def batch_decode(self, rows):
            return [pieces[i] for (i,) in rows]

    ids = list(range(len(pieces)))
    assert [i for i, m in enumerate(copied_token_mask(Pieces(), ids)) if m] == [9]
    weighted = copied_token_mask(Pieces(), ids, kinds=["street", "suffix"])
    assert [i for i, m in enumerate(weighted) if m] == [9, 10]
    weighted = copied_token_mask(Pieces(), ids, kinds=["house", "suffix"])
    assert [i for i, m in enumerate(weighted) if m] == [8, 10]


def test_copy_gate_measures_how_alike_the_values_embeddings_are():
    import torch
    from transformers import AutoModelForCausalLM

    from replica.model import load_tokenizer

    base = ROOT / "data" / "demo" / "base"
    tokenizer = load_tokenizer(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base))
    weights = model.get_input_embeddings().weight
    digits = tokenizer.convert_tokens_to_ids(list("0123456789"))
    streets = [tokenizer.convert_tokens_to_ids(first_piece(tokenizer, f" {s}")) for s in STREETS]
    with torch.no_grad():
        weights[digits] = torch.eye(10, weights.shape[1])  # ten orthogonal vectors
        weights[streets] = torch.ones(weights.shape[1])  # one vector for every street
    cosine = embedding_cosine(model, tokenizer, [{"messages": [{"role": "user", "content": TEN_STREETS}]}])
    assert cosine["digit"] == 0.0
    assert cosine["street"] == 1.0


def test_committed_gate_conversations_are_the_generators_fresh_ones():
    rows = read_conversations(GATE_FILE)
    assert len(rows) == 100 and all(row["tools"] and row["messages"] for row in rows)
    corpus = gzip.decompress((ROOT / "data" / "demo" / "base_corpus.jsonl.gz").read_bytes()).decode()
    trained = set(corpus.splitlines())
    assert not any(json.dumps(row, ensure_ascii=False) in trained for row in rows)  # never trained on


def test_bad_gate_file_names_file_and_line(tmp_path):
    bad = tmp_path / "gate.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    with pytest.raises(UserError, match=r"gate.jsonl:2: corpus line is not JSON"):
        read_conversations(bad)
    with pytest.raises(UserError, match="does not exist"):
        read_conversations(tmp_path / "missing.jsonl")


def _small_gate(tmp_path: Path, n: int = 3) -> Path:
    lines = gzip.decompress(GATE_FILE.read_bytes()).decode().splitlines()[:n]
    path = tmp_path / "gate.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_gate_report_on_a_tiny_base_is_measured_cached_and_remeasured_for_new_weights(
    tiny_base_dir, tmp_path
):
    gate = _small_gate(tmp_path)
    cache = tmp_path / "run" / "copy_gate.json"
    report = gate_base(tiny_base_dir, gate, cache)
    assert report["conversations"] == 3 and report["threshold"] == THRESHOLD
    assert {"C-digit1", "O-digit1", "street"} <= set(report["kinds"])
    for figures in report["kinds"].values():
        assert figures["n"] >= figures["first_n"] and 0 <= figures["copied"] <= 1
        # The mean lowest true-token probability at first reuse: a copied value's is above one half.
        assert figures["first_p"] is None or 0 <= figures["first_p"] <= 1
        if figures["first_reuse"] == 1.0:
            assert figures["first_p"] > 0.5
    assert report["passed"] is False  # a few steps of pretraining copy nothing reliably
    assert "digit" in report["embedding_cosine"]

    # The cache answers for the same weights and conversations, and only for them.
    cached = json.loads(cache.read_text())
    cached["kinds"]["street"]["copied"] = 0.5
    cache.write_text(json.dumps(cached))
    assert gate_base(tiny_base_dir, gate, cache)["kinds"]["street"]["copied"] == 0.5
    # A report from before a kind of value was added (house numbers came later) is measured again.
    cached["key"]["kinds"] = [kind for kind in cached["key"]["kinds"] if kind != "house"]
    cache.write_text(json.dumps(cached))
    assert gate_base(tiny_base_dir, gate, cache)["kinds"]["street"]["copied"] != 0.5
    other = tmp_path / "other_base"
    shutil.copytree(tiny_base_dir, other)
    weights = other / "model.safetensors"
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] * 1.01
    save_file(tensors, weights, metadata={"format": "pt"})
    assert gate_base(other, gate, cache)["kinds"]["street"]["copied"] != 0.5


def test_format_report_names_each_kind_and_the_verdict():
    report = {
        "conversations": 100,
        "threshold": 0.95,
        "passed": False,
        "kinds": {
            "T-digit2": {"n": 123, "copied": 0.67, "first_reuse": 0.0, "first_n": 41, "first_p": 0.1},
            "street": {"n": 85, "copied": 0.96, "first_reuse": 0.97, "first_n": 28},  # an older report
        },
    }
    text = format_report(report)
    assert "ticket id, digit 2" in text and "67% of 123" in text
    # A uniform guess among ten digits (p 0.10) shows as such beside its 0%.
    assert "first reuse    0% (p 0.10)   below 95%" in text
    assert "first reuse   97% (p    -)" in text
    assert "street" in text and text.splitlines()[2].endswith("ok")
    assert "gate NOT passed" in text


def test_demo_prints_the_gate_next_to_the_base(tiny_base_dir, tmp_path):
    from replica.config import load_config
    from replica.demo import _print_copy_gate

    _small_gate(tmp_path, n=2)  # gate.jsonl, beside the config
    config_path = tmp_path / "run.yaml"
    config_path.write_text(
        f"model: {{name_or_path: {tiny_base_dir}}}\noutput_dir: {tmp_path / 'runs'}\n"
        "eval: {copy_gate: gate.jsonl}\n"  # relative to the config file
    )
    config = load_config(config_path)
    console = Console(record=True, width=120)
    _print_copy_gate(config, Path(tiny_base_dir), console)
    printed = console.export_text()
    assert "copy gate on 2 conversations the base never saw" in printed and "customer id, digit 1" in printed
    assert (config.run_dir / "copy_gate.json").is_file()

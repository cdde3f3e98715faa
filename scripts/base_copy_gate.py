"""The demo base's first gate: can it copy what a task needs copied? Teacher-forced on fresh neutral
conversations (never trained on), per kind of value: each id's digits by position, street names and
order statuses, wherever the value already appeared earlier in the conversation.

    .venv/bin/python scripts/base_copy_gate.py                      # the committed base, 100 conversations
    .venv/bin/python scripts/base_copy_gate.py --base .cache/bases/demo-base-<key> --n 200

A value counts as copied when the model gives its true token a probability above one half.
The report also gives, per kind of value, the mean cosine similarity between the values' token
embeddings: a kind whose values were never predictable in training collapses toward one vector
(the committed base: 0.93 for street names, 0.58 for digits); a model cannot copy values it
cannot tell apart, though telling them apart is not enough on its own (docs/demo.md).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from replica.model import load_tokenizer  # noqa: E402

STATUSES = ("delayed", "shipped", "delivered")  # an order's status words (make_demo_data.py)


@functools.cache
def _generator():
    spec = importlib.util.spec_from_file_location("make_demo_data", ROOT / "scripts" / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_targets(tokens: list[str]) -> list[tuple[str, int]]:
    """(kind, token index) of every token that repeats a value seen earlier in the conversation."""
    targets, seen = [], set()
    streets = set(_generator().STREETS)
    words = streets | set(STATUSES)
    for i, token in enumerate(tokens):
        if token in ("T-", "C-", "O-") and i + 3 < len(tokens):
            value = "".join(tokens[i : i + 4])
            if value in seen:
                targets += [(f"{token}digit{k}", i + k) for k in (1, 2, 3)]
            seen.add(value)
        elif token.strip() in words:  # a word is one value with or without its leading space
            word = token.strip()
            if word in seen:
                targets.append(("street" if word in streets else "status", i))
            seen.add(word)
    return targets


def embedding_cosine(model, tokenizer) -> dict[str, float]:
    """Mean pairwise cosine similarity of the input embeddings of each kind's one-token values."""
    generator = _generator()
    kinds = {
        "digit": list("0123456789"),
        "street": [f" {name}" for name in generator.STREETS],
        "street_suffix": [f" {name}" for name in generator.SUFFIXES],
        "status": [f" {status}" for status in STATUSES],
    }
    weights = model.get_input_embeddings().weight.detach().float()
    report = {}
    for kind, values in kinds.items():
        ids = [tokenizer.convert_tokens_to_ids(t[0]) for t in map(tokenizer.tokenize, values) if len(t) == 1]
        if len(ids) < 2:
            continue
        vectors = torch.nn.functional.normalize(weights[ids], dim=-1)
        similarity = vectors @ vectors.T
        report[kind] = round(((similarity.sum() - len(ids)) / (len(ids) * (len(ids) - 1))).item(), 3)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=str(ROOT / "data" / "demo" / "base"))
    parser.add_argument("--n", type=int, default=100, help="fresh neutral conversations")
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.base)
    model = AutoModelForCausalLM.from_pretrained(args.base).eval()
    rows = _generator().base_corpus(random.Random("copy-gate"), args.n)
    hits: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        ids = tokenizer.apply_chat_template(row["messages"], tools=row["tools"], return_dict=True)[
            "input_ids"
        ]
        with torch.no_grad():
            probs = torch.softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        tokens = [tokenizer.decode([i]) for i in ids]
        for kind, index in copy_targets(tokens):
            hits[kind].append(probs[index - 1, ids[index]].item() > 0.5)
    report = {kind: {"n": len(v), "copied": round(sum(v) / len(v), 3)} for kind, v in sorted(hits.items())}
    cosine = embedding_cosine(model, tokenizer)
    print(
        json.dumps(
            {"base": args.base, "conversations": args.n, "copy": report, "embedding_cosine": cosine}, indent=1
        )
    )


if __name__ == "__main__":
    main()

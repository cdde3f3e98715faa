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
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from replica.model import load_tokenizer  # noqa: E402

STATUSES = ("delayed", "shipped", "delivered")  # an order's status words (make_demo_data.py)
# Every kind of value a task reuses, found in the rendered conversation by its characters (group 1
# is the value), so a value counts whatever tokens it is spelled with.
VALUE_PATTERNS = {
    "id": re.compile(r"\b([CTO]-\d{3})\b"),
    "street": re.compile(r"\d+ ([A-Z][a-z]+) (?:Street|Avenue|Road|Lane)\b"),
    "status": re.compile(r"\b(" + "|".join(STATUSES) + r")\b"),
    "amount": re.compile(r'(?:\$|"(?:total|amount|store_credit)": )(\d+)\b'),
}


@functools.cache
def _generator():
    spec = importlib.util.spec_from_file_location("make_demo_data", ROOT / "scripts" / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_targets(text: str, offsets: list[tuple[int, int]]) -> list[tuple[str, list[int], bool]]:
    """(kind, token indices, first reuse?) of every value that repeats one seen earlier in `text`.

    Ids are scored digit by digit (kind `T-digit2` is a ticket id's second digit); a street,
    status or amount as a whole (all of its tokens). `offsets` are the tokens' character spans.
    """
    found = []
    for kind, pattern in VALUE_PATTERNS.items():
        found += [(match.start(1), match.end(1), kind, match.group(1)) for match in pattern.finditer(text)]
    targets, seen = [], {}
    for start, end, kind, value in sorted(found):
        count = seen.get(value, 0)
        seen[value] = count + 1
        if count == 0:
            continue
        # A token belongs to the value when its span ends inside it (a leading space may come first).
        tokens = [i for i, (a, b) in enumerate(offsets) if start < b <= end and b > a]
        if kind == "id":
            digits = [i for i in tokens if offsets[i][1] > start + 2]
            targets += [(f"{value[:2]}digit{k}", [i], count == 1) for k, i in enumerate(digits[-3:], 1)]
        else:
            targets.append((kind, tokens, count == 1))
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
        text = tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=False)
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        with torch.no_grad():
            probs = torch.softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        for kind, indices, first in copy_targets(text, encoded["offset_mapping"]):
            copied = all(probs[i - 1, ids[i]].item() > 0.5 for i in indices)
            hits[kind].append(copied)
            if first:
                hits[f"{kind} (first reuse)"].append(copied)
    report = {kind: {"n": len(v), "copied": round(sum(v) / len(v), 3)} for kind, v in sorted(hits.items())}
    cosine = embedding_cosine(model, tokenizer)
    print(
        json.dumps(
            {"base": args.base, "conversations": args.n, "copy": report, "embedding_cosine": cosine}, indent=1
        )
    )


if __name__ == "__main__":
    main()

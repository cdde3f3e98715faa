"""The values a support-desk task copies from earlier in its conversation: ids, street names,
order statuses and amounts, found by their characters so that a value counts whatever tokens
spell it.

Two readers: the copy gate (replica/eval/copy_gate.py) scores whether a base predicts these
tokens, and a base build with `pretrain.copy_weight` (replica/bases/tiny.py) weights them in its
loss, because they are the few tokens of a conversation that only the context can predict.
"""

from __future__ import annotations

import re

STATUSES = ("delayed", "shipped", "delivered")  # an order's status words (scripts/make_demo_data.py)
# Every kind of value a task reuses (group 1 is the value).
VALUE_PATTERNS = {
    "id": re.compile(r"\b([CTO]-\d{3})\b"),
    "street": re.compile(r"\d+ ([A-Z][a-z]+) (?:Street|Avenue|Road|Lane)\b"),
    "status": re.compile(r"\b(" + "|".join(STATUSES) + r")\b"),
    "amount": re.compile(r'(?:\$|"(?:total|amount|store_credit)": )(\d+)\b'),
}


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
        elif tokens:
            targets.append((kind, tokens, count == 1))
    return targets


def copied_token_mask(tokenizer, input_ids: list[int]) -> list[bool]:
    """For each token of `input_ids`, whether it belongs to a value repeated from earlier in the row.

    The row is decoded token by token to find each token's characters (byte-level BPE: a token
    that holds part of a multi-byte character decodes to a replacement character, which no value
    pattern matches, so such a token is simply never marked).
    """
    pieces = tokenizer.batch_decode([[i] for i in input_ids])
    offsets, at = [], 0
    for piece in pieces:
        offsets.append((at, at + len(piece)))
        at += len(piece)
    mask = [False] * len(input_ids)
    for _, indices, _ in copy_targets("".join(pieces), offsets):
        for i in indices:
            mask[i] = True
    return mask

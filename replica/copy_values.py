"""The values a support-desk task copies from earlier in its conversation: ids, house numbers,
street names and suffixes, order statuses and amounts, found by their characters so that a value
counts whatever tokens spell it.

Two readers: the copy gate (replica/eval/copy_gate.py) scores whether a base predicts these
tokens, and a base build with `pretrain.copy_weight` (replica/bases/tiny.py) weights them in its
loss, because they are the few tokens of a conversation that only the context can predict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

STATUSES = ("delayed", "shipped", "delivered")  # an order's status words (scripts/make_demo_data.py)
SUFFIXES = ("Street", "Avenue", "Road", "Lane")  # a street's last word (scripts/make_demo_data.py)
_NAME = r"[A-Z][a-z]+"  # a street's name, as in "14 Pine Lane"
_SUFFIX = "(?:" + "|".join(SUFFIXES) + ")"
# Every kind of value a task reuses: group `value` is what is scored; group `key`, where there is
# one, what makes two of them the same value (the same suffix after another street name is no copy).
VALUE_PATTERNS = {
    "id": re.compile(r"\b(?P<value>[CTO]-\d{3})\b"),
    # A house number is the same value only on the same street ("14" of "14 Oak Road" is no copy
    # of "14 Pine Lane"); scored whole, so a second digit guessed fails it.
    "house": re.compile(rf"(?<![\w-])(?P<key>(?P<value>\d+) {_NAME} {_SUFFIX})\b"),
    "street": re.compile(rf"\d+ (?P<value>{_NAME}) {_SUFFIX}\b"),
    "suffix": re.compile(rf"\d+ (?P<key>{_NAME} (?P<value>{_SUFFIX}))\b"),
    "status": re.compile(r"\b(?P<value>" + "|".join(STATUSES) + r")\b"),
    "amount": re.compile(r'(?:\$|"(?:total|amount|store_credit)": )(?P<value>\d+)\b'),
}
# The kinds a base build weights by default (`pretrain.copy_kinds`): a street's suffix came later,
# when the demo's replicas were seen to write "Hill Lane" for "Hill Avenue" (docs/demo.md).
DEFAULT_COPY_KINDS = ("id", "street", "status", "amount")


def copy_targets(
    text: str, offsets: list[tuple[int, int]], kinds: Iterable[str] = VALUE_PATTERNS
) -> list[tuple[str, list[int], bool]]:
    """(kind, token indices, first reuse?) of every value that repeats one seen earlier in `text`.

    Ids are scored digit by digit (kind `T-digit2` is a ticket id's second digit); a street name,
    a street's suffix, a status or an amount as a whole (all of its tokens). `offsets` are the
    tokens' character spans; `kinds` the kinds of value to look for.
    """
    found = []
    for kind in kinds:
        pattern = VALUE_PATTERNS[kind]
        key = "key" if "key" in pattern.groupindex else "value"
        found += [
            (match.start("value"), match.end("value"), kind, match.group(key))
            for match in pattern.finditer(text)
        ]
    targets, seen = [], {}
    for start, end, kind, value in sorted(found):
        count = seen.get((kind, value), 0)
        seen[(kind, value)] = count + 1
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


def copied_token_mask(
    tokenizer, input_ids: list[int], kinds: Iterable[str] = DEFAULT_COPY_KINDS
) -> list[bool]:
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
    for _, indices, _ in copy_targets("".join(pieces), offsets, kinds):
        for i in indices:
            mask[i] = True
    return mask

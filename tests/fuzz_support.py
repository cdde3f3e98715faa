"""Hypothesis strategies shared by the fuzz tests: arbitrary JSON, and mutations of a real example.

Random JSON alone rarely gets past the first check of a parser; a real record (a fixture line, a
valid request body) with a few parts deleted, retyped or replaced reaches the deep checks too.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

# Text that exercises the edges: control characters, surrogate-free unicode, brackets and quotes.
TEXT = st.text(st.characters(blacklist_categories=["Cs"]) | st.sampled_from('[]{}"\\\x00\n'), max_size=20)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON value (the value itself is `()`)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw, examples: list[Any], max_edits: int = 3) -> Any:
    """One of `examples`, deep-copied, with up to `max_edits` parts deleted, replaced or retyped."""
    value = copy.deepcopy(draw(st.sampled_from(examples)))
    for _ in range(draw(st.integers(0, max_edits))):
        where = draw(st.sampled_from(paths(value)))
        action = draw(st.sampled_from(["replace", "delete", "as_text", "in_list", "deep"]))
        if not where:
            value = draw(JSON) if action == "replace" else value
            continue
        parent = value
        for key in where[:-1]:
            parent = parent[key]
        key, old = where[-1], parent[where[-1]]
        if action == "delete":
            del parent[key]
        elif action == "as_text":
            parent[key] = str(old)
        elif action == "in_list":
            parent[key] = [old]
        elif action == "deep":  # nested past any sane depth
            parent[key] = nest(old, draw(st.integers(30, 300)))
        else:
            parent[key] = draw(JSON)
    return value


def nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value

"""Episode-level metrics: success with a Wilson interval, pass^k, BFCL-style tool-call checks,
step agreement with the contributor's own demonstration.

Everything here is a pure function of recorded episodes, so each number in a report can be
recomputed from `results.csv` and checked by hand.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

# BFCL-style error categories for one predicted tool call, in the order they are checked.
UNKNOWN_FUNCTION = "unknown_function"  # not one of the task's tools (hallucinated)
WRONG_FUNCTION = "wrong_function"  # a real tool, but the reference never calls it (or not that often)
MISSING_REQUIRED = "missing_required"  # a required parameter is absent
UNEXPECTED_ARGUMENT = "unexpected_argument"  # a parameter the schema does not declare
WRONG_TYPE = "wrong_type"  # a value of another JSON type than the schema says
WRONG_VALUE = "wrong_value"  # right type, but not the value the contributor used
MISSED_CALL = "missed_call"  # a reference call no predicted call matched
CALL_CATEGORIES = (
    UNKNOWN_FUNCTION,
    WRONG_FUNCTION,
    MISSING_REQUIRED,
    UNEXPECTED_ARGUMENT,
    WRONG_TYPE,
    WRONG_VALUE,
    MISSED_CALL,
)

_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def wilson_interval(successes: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (sane at 0/n and n/n, unlike the normal one)."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # At 0/n and n/n the bound equals the rate exactly; floating point would miss it by an ulp.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == total else min(1.0, centre + half)
    return (low, high)


def pass_hat_k(successes_per_task: list[tuple[int, int]], k: int) -> float:
    """tau-bench's pass^k: the chance that k i.i.d. trials of a task ALL succeed, averaged over tasks.

    Each item is (successes c, trials n) with n >= k; per task it is C(c, k) / C(n, k).
    """
    rates = []
    for successes, trials in successes_per_task:
        if trials < k:
            raise ValueError(f"pass^{k} needs at least {k} trials per task, found a task with {trials}")
        rates.append(math.comb(successes, k) / math.comb(trials, k))
    return sum(rates) / len(rates) if rates else 0.0


def call_signature(call: dict[str, Any]) -> tuple[str | None, str]:
    """(name, canonical arguments) of a tool call: equal signatures are the same action."""
    from replica.artifacts import canonical_json

    function = call.get("function", call)
    return function.get("name"), canonical_json(function.get("arguments") or {})


def check_tool_calls(
    predicted: list[dict[str, Any]], reference: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """BFCL-style checks of every predicted call against the task's schemas and the reference calls.

    Each predicted call is matched to an unused reference call of the same function (an identical
    one first, so a reordering is not punished). Returns counts: `calls`, `correct`, and one count per
    category in CALL_CATEGORIES (a call can fall in several; `correct` means none).
    """
    schemas = {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools or []}
    unused = list(reference)
    counts: Counter[str] = Counter()
    for call in predicted:
        name, _ = call_signature(call)
        arguments = call.get("function", call).get("arguments") or {}
        errors = _schema_errors(name, arguments, schemas)
        match = _take_match(call, unused)
        if match is None and UNKNOWN_FUNCTION not in errors:
            errors.append(WRONG_FUNCTION)
        elif match is not None:
            expected = match.get("function", match).get("arguments") or {}
            if any(k in expected and not _same_value(v, expected[k]) for k, v in _as_dict(arguments).items()):
                errors.append(WRONG_VALUE)
        counts.update(set(errors))
        counts["calls"] += 1
        counts["correct"] += not errors
    counts[MISSED_CALL] += len(unused)
    return {key: counts.get(key, 0) for key in ("calls", "correct", *CALL_CATEGORIES)}


def step_agreement(predicted: list[dict[str, Any]], reference: list[dict[str, Any]]) -> float:
    """Action match rate with the contributor's demonstration: position i agrees when both took the
    same action (name and arguments); divided by the longer sequence, so extra or missing steps count
    against. 1.0 when both took no action."""
    longest = max(len(predicted), len(reference))
    if longest == 0:
        return 1.0
    same = sum(call_signature(p) == call_signature(r) for p, r in zip(predicted, reference, strict=False))
    return same / longest


def _schema_errors(name: str | None, arguments: Any, schemas: dict[str, dict]) -> list[str]:
    if name not in schemas:
        return [UNKNOWN_FUNCTION]
    arguments = _as_dict(arguments)
    schema = schemas[name]
    properties = schema.get("properties") or {}
    errors = []
    if any(required not in arguments for required in schema.get("required") or []):
        errors.append(MISSING_REQUIRED)
    if any(key not in properties for key in arguments):
        errors.append(UNEXPECTED_ARGUMENT)
    if any(key in properties and not _has_type(value, properties[key]) for key, value in arguments.items()):
        errors.append(WRONG_TYPE)
    return errors


def _has_type(value: Any, schema: dict[str, Any]) -> bool:
    declared = schema.get("type")
    if declared is None:
        return True
    names = declared if isinstance(declared, list) else [declared]
    for type_name in names:
        python_types = _JSON_TYPES.get(type_name, (object,))
        # bool is an int in Python but not a JSON integer or number.
        if isinstance(value, python_types) and not (isinstance(value, bool) and type_name != "boolean"):
            return True
    return False


def _take_match(call: dict[str, Any], unused: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Remove and return the reference call this one answers: identical first, else same function."""
    signature = call_signature(call)
    for candidates in (
        [r for r in unused if call_signature(r) == signature],
        [r for r in unused if call_signature(r)[0] == signature[0]],
    ):
        if candidates:
            unused.remove(candidates[0])
            return candidates[0]
    return None


def _same_value(predicted: Any, expected: Any) -> bool:
    """Values compare as JSON, strings case- and surrounding-space-insensitively (BFCL's leniency)."""
    if isinstance(predicted, str) and isinstance(expected, str):
        return predicted.strip().casefold() == expected.strip().casefold()
    return (
        call_signature({"arguments": {"v": predicted}})[1]
        == call_signature({"arguments": {"v": expected}})[1]
    )


def _as_dict(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, str):
        import json

        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return {}
    return arguments if isinstance(arguments, dict) else {}

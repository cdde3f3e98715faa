"""Fidelity (does a replica do the job its contributor's way?) and held-out preference accuracy.

Fidelity matrix: rows are contributors, columns are replicas, each cell the NLL of that
contributor's held-out demonstrations under that replica. A faithful replica fits its own
contributor best, so attribution accuracy = share of contributors whose lowest-NLL replica is
their own. A replica that solves tasks but in someone else's way scores low here, whatever its
task success.

Preference accuracy: on `pref/heldout`, the replica's implicit DPO reward of an answer is
log pi(answer | prompt) - log pi_ref(answer | prompt); accuracy is how often it ranks the chosen
answer above the rejected one.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from replica.eval.likelihood import Scored, completion_rows, demonstration_rows, mean_nll, score_rows


def fidelity_matrix(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    demonstrations: dict[str, list[dict[str, Any]]],
    replicas: dict[str, str | None],
    chat_template: str,
) -> dict[str, dict[str, float]]:
    """matrix[contributor][replica] = mean assistant-token NLL of the contributor's held-out
    demonstrations under the replica (`replicas` maps a replica's label to its loaded adapter name)."""
    matrix: dict[str, dict[str, float]] = {}
    for contributor, examples in demonstrations.items():
        rows = demonstration_rows(tokenizer, examples, chat_template)
        matrix[contributor] = {
            label: mean_nll(score_rows(model, rows, adapter, tokenizer.pad_token_id))
            for label, adapter in replicas.items()
        }
    return matrix


def attribution(matrix: dict[str, dict[str, float]]) -> dict[str, Any]:
    """For each contributor, the replica that fits them best; accuracy over contributors that have
    a replica of their own (ties go against attribution: a tie is not evidence). With fewer than
    two replicas there is nothing to choose between: accuracy is NaN, not a trivial 1."""
    if len({label for row in matrix.values() for label in row}) < 2:
        return {"accuracy": float("nan"), "best": dict.fromkeys(matrix), "contributors": 0}
    best: dict[str, str | None] = {}
    hits = counted = 0
    for contributor, row in matrix.items():
        finite = {label: v for label, v in row.items() if not math.isnan(v)}
        if not finite:
            best[contributor] = None
            continue
        lowest = min(finite.values())
        winners = [label for label, v in finite.items() if v == lowest]
        best[contributor] = winners[0] if len(winners) == 1 else None
        if contributor in row:
            counted += 1
            hits += best[contributor] == contributor
    return {"accuracy": hits / counted if counted else float("nan"), "best": best, "contributors": counted}


def preference_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: list[dict[str, Any]],
    adapter: str | None,
) -> tuple[list[float], list[float]]:
    """log pi(chosen | prompt) and log pi(rejected | prompt) of each `pref/*` row under `adapter`."""
    chosen = [completion_rows(tokenizer, p["prompt"], p["chosen"], p.get("tools")) for p in pairs]
    rejected = [completion_rows(tokenizer, p["prompt"], p["rejected"], p.get("tools")) for p in pairs]
    pad = tokenizer.pad_token_id
    return _logps(score_rows(model, chosen, adapter, pad)), _logps(score_rows(model, rejected, adapter, pad))


def preference_accuracy(
    policy: tuple[list[float], list[float]], reference: tuple[list[float], list[float]]
) -> dict[str, float]:
    """Share of pairs whose implicit reward ranks chosen above rejected, and the mean reward margin.

    `policy` and `reference` are (chosen log-probs, rejected log-probs) from `preference_logprobs`.
    """
    margins = [
        (pc - rc) - (pr - rr)
        for pc, pr, rc, rr in zip(policy[0], policy[1], reference[0], reference[1], strict=True)
    ]
    if not margins:
        return {"accuracy": float("nan"), "margin": float("nan"), "pairs": 0}
    return {
        "accuracy": sum(m > 0 for m in margins) / len(margins),
        "margin": sum(margins) / len(margins),
        "pairs": len(margins),
    }


def _logps(scores: list[Scored]) -> list[float]:
    return [-s.nll for s in scores]

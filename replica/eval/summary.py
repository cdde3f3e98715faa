"""Per contributor × stage numbers from the scored episodes (the rows of results.csv)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from replica.eval.metrics import CALL_CATEGORIES, pass_hat_k, wilson_interval


def summarize_episodes(rows: list[dict[str, Any]], k: int) -> dict[tuple[str, str], dict[str, Any]]:
    """Success rate with its 95% Wilson interval, pass^1 and pass^k, tool-call quality, step
    agreement and tool-error counts for each (contributor, stage)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["replica"] == row["contributor"]:  # cross-success rows are summarized apart
            groups[(row["contributor"], row["stage"])].append(row)
    return {key: _summarize_group(group, k) for key, group in groups.items()}


def cross_success(rows: list[dict[str, Any]], final_stages: dict[str, str]) -> dict[str, Any]:
    """matrix[task owner][replica] = success of that replica (at its final stage) on the owner's
    held-out tasks, and for each replica whether its own contributor's tasks score strictly highest."""
    totals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        if final_stages.get(row["replica"]) == row["stage"]:
            totals[(row["contributor"], row["replica"])].append(float(row["reward"]))
    owners = sorted({owner for owner, _ in totals})
    replicas = [r for r in final_stages if any(key[1] == r for key in totals)]
    matrix = {
        owner: {
            r: sum(totals[(owner, r)]) / len(totals[(owner, r)]) for r in replicas if totals.get((owner, r))
        }
        for owner in owners
    }
    own_best = {}
    for r in replicas:
        own = matrix.get(r, {}).get(r)
        others = [matrix[o][r] for o in owners if o != r and r in matrix[o]]
        own_best[r] = None if own is None or not others else own > max(others)
    return {"replicas": replicas, "stages": final_stages, "matrix": matrix, "own_tasks_best": own_best}


def _summarize_group(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    successes = sum(int(r["reward"] >= 1.0) for r in rows)
    low, high = wilson_interval(successes, len(rows))
    per_task: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        per_task[row["task_id"]].append(int(row["reward"] >= 1.0))
    trials = [(sum(v), len(v)) for v in per_task.values()]
    calls = {name: 0 for name in ("calls", "correct", *CALL_CATEGORIES)}
    errors: dict[str, int] = defaultdict(int)
    for row in rows:
        for name, count in json.loads(row["call_checks"]).items():
            calls[name] += count
        for name, count in json.loads(row["tool_errors"]).items():
            errors[name] += count
    return {
        "tasks": len(per_task),
        "episodes": len(rows),
        "successes": successes,
        "success": successes / len(rows) if rows else float("nan"),
        "success_ci95": [low, high],
        "pass^1": pass_hat_k(trials, 1),
        f"pass^{k}": pass_hat_k(trials, k) if all(n >= k for _, n in trials) else None,
        "tool_call_accuracy": calls["correct"] / calls["calls"] if calls["calls"] else None,
        "tool_call_checks": calls,
        "step_agreement": sum(r["step_agreement"] for r in rows) / len(rows) if rows else float("nan"),
        "tool_errors": dict(sorted(errors.items())),
        "mean_turns": sum(r["turns"] for r in rows) / len(rows) if rows else float("nan"),
    }

"""Feedback -> preference pairs: what DPO trains on, from the three kinds of judgment experts give.

- Pairwise choices pass through.
- Ratings: responses to the same prompt (same contributor, same prompt, same tools) are ranked by
  `Rating.value` (the mean of the aspect ratings, else the overall score). A candidate pair is
  kept when chosen scores >= `min_chosen_score` and beats rejected by >= `min_margin`; equal
  scores are ties. Candidate pairs per prompt, by `strategy`:
  `best_vs_worst` (one), `best_vs_random` (best against a seeded-random response far enough
  below it), `all_pairs` (every ordered pair that qualifies). Dropped candidates are counted by
  reason (`tie`, `chosen_below_min`, `margin_below_min`), prompts with one response as
  `single_response`.
- Rewrites: the expert's rewrite is chosen, the original response rejected.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from replica.artifacts import canonical_json, sha256_text
from replica.config import FeedbackConfig
from replica.data.records import Message, PreferencePair, Rating, Rewrite, ToolSchema, content_hash


def chat(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as plain dicts, without keys nobody set (what the prepared datasets store)."""
    return [m.to_chat() for m in messages]


def tools_json(tools: list[ToolSchema] | None) -> list[dict[str, Any]] | None:
    """Tool schemas exactly as recorded."""
    return [t.model_dump(mode="json") for t in tools] if tools else None


def preference_row(
    row_id: str,
    contributor_id: str,
    task_id: str,
    prompt: list[dict],
    chosen: list[dict],
    rejected: list[dict],
    tools: Any,
    source: str,
    record_hash: str,
) -> dict[str, Any]:
    """One `pref/*` row of a prepared directory, from plain (already `chat`-ed) messages."""
    return {
        "id": row_id,
        "contributor_id": contributor_id,
        "task_id": task_id,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "tools": tools,
        "source": source,
        "record_hash": record_hash,
    }


def _row(
    record_id: str,
    record: PreferencePair | Rating | Rewrite,
    chosen: list[Message],
    rejected: list[Message],
    source: str,
    record_hash: str,
) -> dict[str, Any]:
    return preference_row(
        record_id,
        record.contributor_id,
        record.task_id or "",
        chat(record.prompt),
        chat(chosen),
        chat(rejected),
        tools_json(record.tools),
        source,
        record_hash,
    )


def pair_rows(pairs: list[PreferencePair]) -> list[dict[str, Any]]:
    """Pairwise records, as they are."""
    return [_row(p.id, p, p.chosen, p.rejected, "pairwise", content_hash(p)) for p in pairs]


def rewrite_rows(rewrites: list[Rewrite]) -> list[dict[str, Any]]:
    """The rewrite is chosen over the original it corrects."""
    return [_row(r.id, r, r.rewritten, r.original, "rewrite", content_hash(r)) for r in rewrites]


@dataclass(frozen=True, slots=True)
class Rated:
    """What pairing needs of one rating; `ref` finds the rating again (the Rating, or where it was spooled)."""

    value: float
    id: str
    ref: Any


def rating_rows(
    ratings: list[Rating], config: FeedbackConfig, seed: int = 0
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Pairs from ratings (see module docstring) and the count of what was dropped, by reason."""
    groups: dict[str, list[Rated]] = defaultdict(list)
    for rating in ratings:
        key = prompt_key(rating.contributor_id, chat(rating.prompt), tools_json(rating.tools))
        groups[key].append(Rated(rating.value, rating.id, rating))
    pairs, dropped = pair_ratings(groups, config, seed)
    rows = [
        _row(
            f"{chosen.id}>{rejected.id}",
            chosen.ref,
            chosen.ref.response,
            rejected.ref.response,
            "rating",
            sha256_text(f"{content_hash(chosen.ref)}>{content_hash(rejected.ref)}"),
        )
        for chosen, rejected in pairs
    ]
    return rows, dropped


def pair_ratings(
    groups: dict[str, list[Rated]], config: FeedbackConfig, seed: int = 0
) -> tuple[list[tuple[Rated, Rated]], dict[str, int]]:
    """The (chosen, rejected) pairs of rated responses grouped by `prompt_key`, in a fixed order,
    and the count of dropped candidates by reason."""
    pairs: list[tuple[Rated, Rated]] = []
    dropped: Counter = Counter()
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: (-r.value, r.id))
        if len(group) < 2:
            dropped["single_response"] += 1
            continue
        for chosen, rejected in _candidates(group, config, random.Random(f"{seed}:{key}")):
            reason = _drop_reason(chosen.value, rejected.value, config)
            if reason:
                dropped[reason] += 1
                continue
            pairs.append((chosen, rejected))
    return pairs, {reason: dropped[reason] for reason in sorted(dropped)}


def prompt_key(contributor_id: str, prompt: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """Ratings are compared only within one contributor, prompt and tool set (plain dicts, `chat`)."""
    return sha256_text(canonical_json([contributor_id, prompt, tools]))


def _candidates(group: list[Rated], config: FeedbackConfig, rng: random.Random) -> list[tuple[Rated, Rated]]:
    """Candidate (chosen, rejected) pairs of one prompt; `group` is sorted best first."""
    best = group[0]
    if config.strategy == "best_vs_worst":
        return [(best, group[-1])]
    if config.strategy == "best_vs_random":
        below = [r for r in group[1:] if best.value - r.value >= config.min_margin and r.value < best.value]
        return [(best, rng.choice(below) if below else group[-1])]
    return [(a, b) for i, a in enumerate(group) for b in group[i + 1 :]]


def _drop_reason(chosen: float, rejected: float, config: FeedbackConfig) -> str | None:
    if chosen == rejected:
        return "tie"
    if chosen < config.min_chosen_score:
        return "chosen_below_min"
    if chosen - rejected < config.min_margin:
        return "margin_below_min"
    return None

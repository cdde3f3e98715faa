"""UltraFeedback-style ratings: `{"instruction", "completions": [{"model", "response", "annotations", "critique", "overall_score"}]}`.

Each completion becomes one `Rating`: `annotations` is keyed by aspect (`helpfulness`,
`honesty`, `instruction_following`, `truthfulness`), each `{"Rating": "1".."5" | "N/A",
"Rationale"}`. "N/A" aspects are left out (and listed in `source.not_rated`). `overall_score`
is on UltraFeedback's 1-10 critique scale, so it is kept in `source`, not used as the 1-5 score.
"""

from __future__ import annotations

from typing import Any

from replica.data.formats.common import FormatError, Where, task_id_for

NAME = "ultrafeedback"


def detect(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("instruction"), str) and isinstance(obj.get("completions"), list)


def convert(obj: dict[str, Any], where: Where) -> list[dict[str, Any]]:
    prompt = [{"role": "user", "content": obj["instruction"]}]
    task_id = task_id_for(prompt)
    if not obj["completions"]:
        raise FormatError("completions", "no completions: a row needs at least one rated response")
    records = []
    for index, completion in enumerate(obj["completions"]):
        path = f"completions[{index}]"
        if not isinstance(completion, dict) or "response" not in completion:
            raise FormatError(path, "expected a completion object with `response`")
        aspects, not_rated = _aspects(completion.get("annotations") or {}, f"{path}.annotations")
        records.append(
            {
                "kind": "rating",
                "id": where.record_id(str(index)),
                "contributor_id": where.contributor_id,
                "task_id": task_id,
                "prompt": prompt,
                "response": [{"role": "assistant", "content": completion["response"]}],
                "aspects": aspects or None,
                "critique": completion.get("critique") or None,
                "source": where.source(
                    NAME,
                    model=completion.get("model"),
                    overall_score=completion.get("overall_score"),
                    not_rated=not_rated,
                ),
            }
        )
    return records


def _aspects(annotations: Any, path: str) -> tuple[dict[str, Any], list[str]]:
    if not isinstance(annotations, dict):
        raise FormatError(path, f"expected an object keyed by aspect, found {type(annotations).__name__}")
    aspects, not_rated = {}, []
    for aspect, value in annotations.items():
        rating = value.get("Rating") if isinstance(value, dict) else value
        if rating in (None, "N/A", "n/a"):
            not_rated.append(aspect)
            continue
        try:
            aspects[aspect] = float(rating)
        except (TypeError, ValueError):
            raise FormatError(
                f"{path}.{aspect}.Rating", f"expected a number 1-5 or 'N/A', found {rating!r}"
            ) from None
    return aspects, not_rated

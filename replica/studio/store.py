"""Saving what a contributor made: validated exactly as `replica data validate` would, then appended.

The new records are written to a scratch file and validated with `data`'s own validator after
the contributors file and the contributor's existing records (so unknown contributors, tool
calls that break a schema, a task id already defined differently or a duplicate are caught as
they would be later). Only when every new record is accepted are they appended, all together,
to the contributor's file (`jsonl.append_lines`: one locked, fsynced write).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from pydantic import BaseModel, ValidationError

from replica.config import InputConfig
from replica.data.records import Task, to_line
from replica.data.validate import Validator, collect_registry, explain
from replica.studio.jsonl import append_lines
from replica.studio.site import StudioSite


class NotSaved(Exception):
    """The records would be rejected; `problems` says why, one line each (`kind path: reason`)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def new_id(kind: str) -> str:
    """Record ids the studio makes: `studio-<kind>-<12 hex digits>` (unique without coordination)."""
    return f"studio-{kind}-{uuid.uuid4().hex[:12]}"


def build(model: type[BaseModel], data: dict) -> BaseModel:
    """A record from what the forms gave; a value the model refuses becomes NotSaved (path: reason)."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        path, reason = explain(err)
        raise NotSaved([f"{model.__name__.lower()} {path}: {reason}"]) from None


def save_records(site: StudioSite, contributor: str, records: list[BaseModel]) -> list[str]:
    """Validate and append `records` to the contributor's file; returns the ids saved.

    A task already defined in the inputs is not written again. Raises NotSaved with every
    problem when any record would be rejected or is already there.
    """
    target = site.data_file(contributor)
    existing = _inputs(site, target)
    registry = collect_registry(existing)
    records = [r for r in records if not (isinstance(r, Task) and r.id in registry.tasks)]
    lines = [to_line(r) for r in records]
    problems = _problems(site, existing, lines)
    if problems:
        raise NotSaved(problems)
    append_lines(target, lines)
    return [r.id for r in records]  # type: ignore[attr-defined]


def _inputs(site: StudioSite, target: Path) -> list[InputConfig]:
    inputs = []
    if site.config.data.contributors_file:
        inputs.append(InputConfig(path=site.config.data.contributors_file, format="replica"))
    if target.is_file() and target.stat().st_size:
        inputs.append(InputConfig(path=str(target), format="replica"))
    return inputs


def _problems(site: StudioSite, existing: list[InputConfig], lines: list[str]) -> list[str]:
    site.home.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=".new-", suffix=".jsonl", dir=site.home)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
        inputs = [*existing, InputConfig(path=scratch, format="replica")]
        registry = collect_registry(inputs)
        validator = Validator(registry, check_contributors=bool(registry.contributors))
        problems = []
        for outcome in validator.outcomes(inputs):
            if outcome.item.file != scratch:
                continue
            if outcome.status == "rejected":
                problems.append(f"{outcome.kind} {outcome.path or '$'}: {outcome.reason}")
            elif outcome.status == "duplicate":
                problems.append(f"{outcome.kind}: the same {outcome.kind} is already in your file")
        return problems
    finally:
        os.unlink(scratch)

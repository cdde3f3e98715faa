"""Validation with quarantine: every input record ends up accepted, rejected, duplicate or excluded.

Two streaming passes over the inputs. Pass 1 (`collect_registry`) reads only contributor and task
records, so pass 2 can check every other record against them whatever the file order. Pass 2
(`Validator.outcomes`) yields one `Outcome` per record; nothing is held but the consent and task
registry and one 64-bit hash per accepted record (for deduplication), so memory stays flat.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from replica.config import InputConfig
from replica.data import formats
from replica.data.checks import check_record
from replica.data.consent import train_exclusion
from replica.data.formats.common import UNASSIGNED, FormatError, Where
from replica.data.records import RECORD_TYPES, Contributor, Task, content_hash, parse_record
from replica.data.rejections import Rejections
from replica.data.sources import RawItem, iter_items
from replica.data.truncate import truncate_to_fit
from replica.errors import UserError

STATUSES = ("accepted", "rejected", "duplicate", "consent_excluded", "not_selected")
UNKNOWN = "(unknown)"  # contributor or kind of a record too broken to tell


@dataclass
class Outcome:
    """What happened to one record."""

    status: str
    kind: str
    contributor_id: str
    item: RawItem
    record: BaseModel | None = None
    path: str = ""
    reason: str = ""
    hash: str = ""
    parts: dict[str, Any] | None = None  # the plain dicts the length check rendered (template.plain_parts)

    def describe(self) -> str:
        """`file:line: json.path: reason`, the form every error is shown in."""
        return f"{self.item.file}:{self.item.line}: {self.path or '$'}: {self.reason}"

    def rejected_entry(self) -> dict[str, Any]:
        """The line written to rejected.jsonl: position, reason and the record verbatim."""
        return {
            "file": self.item.file,
            "line": self.item.line,
            "path": self.path or "$",
            "reason": self.reason,
            "kind": self.kind,
            "contributor_id": self.contributor_id,
            "record": self.item.raw,
        }


@dataclass
class Counts:
    """Records per contributor, kind and status; `read` is the sum of the statuses by construction."""

    table: dict[str, dict[str, Counter]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Counter))
    )

    def add(self, outcome: Outcome) -> None:
        self.table[outcome.contributor_id][outcome.kind][outcome.status] += 1

    def totals(self) -> dict[str, int]:
        total: Counter = Counter()
        for kinds in self.table.values():
            for counter in kinds.values():
                total.update(counter)
        return {"read": sum(total[s] for s in STATUSES), **{s: total[s] for s in STATUSES}}

    def as_dict(self) -> dict[str, Any]:
        per = {
            cid: {
                kind: {"read": sum(c[s] for s in STATUSES), **{s: c[s] for s in STATUSES}}
                for kind, c in sorted(kinds.items())
            }
            for cid, kinds in sorted(self.table.items())
        }
        return {"total": self.totals(), "per_contributor": per}

    def summary(self) -> str:
        t = self.totals()
        extra = f" + {t['not_selected']} not selected" if t["not_selected"] else ""
        return (
            f"read {t['read']} = accepted {t['accepted']} + rejected {t['rejected']} + duplicates "
            f"{t['duplicate']} + consent-excluded {t['consent_excluded']}{extra}"
        )


@dataclass
class Registry:
    """Contributors and tasks found in pass 1: id -> (record, file, line)."""

    contributors: dict[str, tuple[Contributor, str, int]] = field(default_factory=dict)
    tasks: dict[str, tuple[Task, str, int]] = field(default_factory=dict)

    def contributor(self, cid: str) -> Contributor | None:
        entry = self.contributors.get(cid)
        return entry[0] if entry else None

    def task(self, task_id: str | None) -> Task | None:
        entry = self.tasks.get(task_id) if task_id else None
        return entry[0] if entry else None


def collect_registry(inputs: list[InputConfig]) -> Registry:
    """Pass 1: the first valid definition of every contributor and task in native-format inputs."""
    registry = Registry()
    for spec in inputs:
        if spec.format not in ("auto", "replica"):
            continue
        for item in iter_items(spec.path):
            if item.obj is None or item.obj.get("kind") not in ("contributor", "task"):
                continue
            try:
                record = parse_record(item.obj)
            except ValidationError:
                continue  # pass 2 rejects it with the reason
            table = registry.contributors if isinstance(record, Contributor) else registry.tasks
            table.setdefault(record.id, (record, item.file, item.line))
    return registry


class Validator:
    """Pass 2: turns the items of every input into outcomes (see module docstring)."""

    def __init__(
        self,
        registry: Registry,
        check_contributors: bool = True,
        measure: Callable[[BaseModel, list | None], tuple[int, dict[str, Any]]] | None = None,
        max_length: int | None = None,
        selected: set[str] | None = None,
        strict: bool = False,
        too_long: str = "reject",
    ) -> None:
        self.registry = registry
        self.check_contributors = check_contributors
        self.measure = measure  # (record, tools) -> (tokens, parts): template.token_counter
        self.max_length = max_length
        self.selected = selected
        self.strict = strict
        self.too_long = too_long  # data.too_long: "reject", or "truncate" demonstrations (truncate.py)
        self.truncated = 0
        self.counts = Counts()
        self.rejections = Rejections()
        self.formats: dict[str, str] = {}  # input path -> format used
        self._seen: set[int] = set()  # content hashes of accepted records (64-bit prefixes)
        self._ids: set[int] = set()  # hashes of (kind, contributor, id) of accepted records

    def outcomes(self, inputs: list[InputConfig]) -> Iterator[Outcome]:
        """Every record of every input, in order; counts are kept in `self.counts`."""
        for spec in inputs:
            if not Path(spec.path).exists():
                raise UserError(f"data.inputs: {spec.path}: file or directory not found")
            module = formats.get_format(spec.format) if spec.format not in ("auto", "hf_disk") else None
            for item in iter_items(spec.path):
                if item.obj is not None and module is None:
                    module = self._detect(item)
                    self.formats[spec.path] = module.NAME
                for outcome in self._item_outcomes(item, module, spec):
                    self.counts.add(outcome)
                    if outcome.status == "rejected":
                        if self.strict:
                            raise UserError(outcome.describe())
                        self.rejections.add(outcome)
                    yield outcome

    def _detect(self, item: RawItem) -> ModuleType:
        module = formats.detect_format(item.obj or {})
        if module is None:
            raise UserError(
                f"{item.file}:{item.line}: cannot tell the format of this file: the first record is "
                f"{formats.describe(item.obj or {})}; name it with `format:` in data.inputs "
                f"(known: {', '.join(formats.FORMATS)})"
            )
        return module

    def _item_outcomes(self, item: RawItem, module: ModuleType | None, spec: InputConfig) -> list[Outcome]:
        if item.obj is None or module is None:
            return [Outcome("rejected", UNKNOWN, UNKNOWN, item, reason=item.error or "no record")]
        where = Where(item.file, item.line, spec.contributor)
        try:
            converted = module.convert(item.obj, where)
        except FormatError as err:
            return [
                Outcome("rejected", UNKNOWN, _owner(item.obj, spec), item, path=err.path, reason=err.reason)
            ]
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as err:
            reason = f"row does not fit the {module.NAME} format ({type(err).__name__}: {err})"
            return [Outcome("rejected", UNKNOWN, _owner(item.obj, spec), item, reason=reason)]
        if not converted:  # nothing silently dropped: a row that yields no record is a rejection
            reason = f"the row holds no record the {module.NAME} format can import"
            return [Outcome("rejected", UNKNOWN, _owner(item.obj, spec), item, reason=reason)]
        return [self._check(data, item) for data in converted]

    def _check(self, data: dict[str, Any], item: RawItem) -> Outcome:
        kind = (
            data.get("kind")
            if isinstance(data.get("kind"), str) and data["kind"] in RECORD_TYPES
            else UNKNOWN
        )
        owned = kind not in ("contributor", "task")
        cid = data.get("contributor_id") if owned and isinstance(data.get("contributor_id"), str) else UNKNOWN
        outcome = Outcome("rejected", kind, cid if owned else "-", item)
        if owned and self.selected is not None and cid not in self.selected:
            outcome.status = "not_selected"
            return outcome
        if owned and (why := train_exclusion(self.registry.contributor(cid))):
            outcome.status, outcome.reason = "consent_excluded", why
            return outcome
        try:
            record = parse_record(data)
        except ValidationError as err:
            outcome.path, outcome.reason = explain(err)
            return outcome
        outcome.record = record
        problem = self._problem(record, item, outcome)
        if problem:
            outcome.path, outcome.reason = problem
            return outcome
        return self._dedupe(outcome, outcome.record)

    def _problem(self, record: BaseModel, item: RawItem, outcome: Outcome) -> tuple[str, str] | None:
        if isinstance(record, Contributor | Task):
            return self._conflict(record, item)
        cid = record.contributor_id  # type: ignore[attr-defined]
        if self.check_contributors and self.registry.contributor(cid) is None:
            hint = (
                "set `contributor:` on this input in data.inputs"
                if cid == UNASSIGNED
                else "add a contributor record with consent (data.contributors_file)"
            )
            return "contributor_id", f"unknown contributor {cid!r}: {hint}"
        task = self.registry.task(getattr(record, "task_id", None))
        tools = record.tools or (task.tools if task else None)  # type: ignore[attr-defined]
        found = check_record(record, tools)
        if found:
            more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
            return found[0][0], found[0][1] + more
        if self.measure is not None and self.max_length is not None:
            length, outcome.parts = self.measure(record, tools)
            if length > self.max_length:
                cut = None
                if self.too_long == "truncate":
                    cut = truncate_to_fit(record, tools, self.measure, self.max_length)
                if cut is None:
                    why = (
                        " (data.too_long: truncate found no turn boundary that fits)"
                        if self.too_long == "truncate"
                        else ""
                    )
                    return (
                        "$",
                        f"{length} tokens after templating, longer than data.max_length={self.max_length}{why}",
                    )
                outcome.record, outcome.parts = cut
                self.truncated += 1
        return None

    def _conflict(self, record: Contributor | Task, item: RawItem) -> tuple[str, str] | None:
        table = self.registry.contributors if isinstance(record, Contributor) else self.registry.tasks
        first, file, line = table.get(record.id, (record, item.file, item.line))
        if (file, line) != (item.file, item.line) and content_hash(first) != content_hash(record):
            return "id", f"{record.kind} {record.id!r} is already defined differently at {file}:{line}"
        return None

    def _dedupe(self, outcome: Outcome, record: BaseModel) -> Outcome:
        """Same content as an earlier record: duplicate. Same id, other content: rejected."""
        outcome.hash = content_hash(record)
        key = int(outcome.hash[:16], 16)
        if key in self._seen:
            outcome.status = "duplicate"
            return outcome
        id_key = hash((outcome.kind, outcome.contributor_id, record.id))  # type: ignore[attr-defined]
        if outcome.kind not in ("contributor", "task") and id_key in self._ids:
            outcome.path = "id"
            outcome.reason = (
                f"id {record.id!r} is already used by an earlier {outcome.kind} with other content"  # type: ignore[attr-defined]
            )
            return outcome
        self._seen.add(key)
        self._ids.add(id_key)
        outcome.status = "accepted"
        return outcome


def _owner(obj: dict[str, Any], spec: InputConfig) -> str:
    value = obj.get("contributor_id") or spec.contributor
    return value if isinstance(value, str) else UNKNOWN


def explain(err: ValidationError) -> tuple[str, str]:
    """Pydantic's first error as (JSON path, reason a person can act on)."""
    errors = err.errors()
    first = errors[0]
    loc = list(first["loc"])
    if loc and loc[0] in RECORD_TYPES:
        loc = loc[1:]  # the discriminator tag pydantic puts in front
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".") or "$"
    if first["type"] == "missing":
        reason = "required field is missing"
    elif first["type"] == "extra_forbidden":
        reason = "unknown field (not part of this record kind; check the spelling)"
    elif first["type"] == "value_error":
        reason = first["msg"].removeprefix("Value error, ")  # our validators already say what was found
    else:
        found = repr(first.get("input"))
        found = found if len(found) <= 80 else found[:77] + "..."
        reason = f"{first['msg'].removeprefix('Value error, ')}; found {found}"
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more problems)"
    return path, reason


@dataclass
class ValidationReport:
    """What `replica data validate` found."""

    counts: Counts
    problems: list[str]  # the first `max_problems` rejections, as `file:line: path: reason`
    rejections: list[dict[str, Any]]  # the most common kinds of reason, with counts (Rejections)
    formats: dict[str, str]
    contributors_checked: bool

    @property
    def ok(self) -> bool:
        return self.counts.totals()["rejected"] == 0


def validate_paths(
    paths: list[str | Path], strict: bool = False, contributor: str | None = None, max_problems: int = 200
) -> ValidationReport:
    """Validate input files without preparing anything (no tokenizer, so no length check).

    Contributor ids are checked only when some of the files hold contributor records;
    `contributor` attributes rows of foreign formats (which name nobody) to that id.
    """
    inputs = [InputConfig(path=str(p), contributor=contributor) for p in paths]
    registry = collect_registry(inputs)
    validator = Validator(registry, check_contributors=bool(registry.contributors), strict=strict)
    problems: list[str] = []
    for outcome in validator.outcomes(inputs):
        if outcome.status == "rejected" and len(problems) < max_problems:
            problems.append(outcome.describe())
    return ValidationReport(
        validator.counts,
        problems,
        validator.rejections.most_common(),
        validator.formats,
        bool(registry.contributors),
    )

"""The usage ledger: one SQLite row per answered request, and the report that pays contributors.

The ledger is SQLite in WAL mode with `synchronous=FULL`: a row is committed (on disk) before the
server sends the answer it meters, so a crash never loses a row of an answered request. The
request id is the primary key and rows are inserted with `INSERT OR IGNORE`, so a retried request
id is counted once. Amounts are computed with Decimal (exact cents, no float drift).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from replica.errors import UserError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    request_id TEXT PRIMARY KEY,
    ts TEXT NOT NULL,
    consumer TEXT NOT NULL,
    replica_id TEXT NOT NULL,
    contributor_id TEXT NOT NULL,
    adapter_hash TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    status TEXT NOT NULL
)
"""
_CENT = Decimal("0.000001")  # amounts are kept to a millionth of the currency unit


def now_iso() -> str:
    """UTC timestamps in one fixed format, so string order is time order."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class UsageRow:
    """One metered request. `status` is "ok" for an answered request; only those are billed."""

    request_id: str
    consumer: str
    replica_id: str
    contributor_id: str
    adapter_hash: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    status: str = "ok"
    ts: str = ""


class UsageLedger:
    """Append-only ledger of requests (thread-safe; one connection guarded by a lock)."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # durable at commit, not just at checkpoint
        self._db.execute(_SCHEMA)
        self._db.commit()

    def record(self, row: UsageRow) -> bool:
        """Append a row in its own transaction; False when that request id was already counted."""
        values = asdict(row) | {"ts": row.ts or now_iso()}
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO usage (request_id, ts, consumer, replica_id, contributor_id, "
                "adapter_hash, prompt_tokens, completion_tokens, latency_ms, status) VALUES (:request_id, "
                ":ts, :consumer, :replica_id, :contributor_id, :adapter_hash, :prompt_tokens, "
                ":completion_tokens, :latency_ms, :status)",
                values,
            )
        return cursor.rowcount == 1

    def count(self, status: str | None = None) -> int:
        with self._lock:
            if status is None:
                return self._db.execute("SELECT COUNT(*) FROM usage").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM usage WHERE status = ?", (status,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------- the report


def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_EVEN)


def usage_report(
    db_path: str | Path,
    rate_per_1k_tokens: Decimal,
    share_percent: Decimal,
    since: str | None = None,
    contributor: str | None = None,
    by_day: bool = False,
) -> dict[str, Any]:
    """Requests, tokens and money per contributor and per consumer (and per UTC day with
    `by_day`, under "days"), from answered requests.

    amount = (prompt + completion tokens) / 1000 x rate; contributor share = amount x share% / 100.
    With `contributor`, only that contributor's rows are read. `since` is an ISO date or datetime.
    """
    if not Path(db_path).is_file():
        raise UserError(f"{db_path}: no usage ledger yet (it is created by `replica serve`)")
    where, params = _filters(since, contributor)
    columns = [("contributors", "contributor_id"), ("consumers", "consumer")]
    if by_day:
        columns.append(("days", "substr(ts, 1, 10)"))  # ts is ISO UTC, so its first 10 characters are the day
    with sqlite3.connect(db_path, timeout=30) as db:
        failed = db.execute(f"SELECT COUNT(*) FROM usage WHERE status != 'ok'{where}", params).fetchone()[0]
        groups = {
            name: db.execute(
                f"SELECT {column}, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) FROM usage "
                f"WHERE status = 'ok'{where} GROUP BY {column} ORDER BY {column}",
                params,
            ).fetchall()
            for name, column in columns
        }
    rate, share = Decimal(rate_per_1k_tokens), Decimal(share_percent)
    report: dict[str, Any] = {
        "since": since,
        "contributor": contributor,
        "rate_per_1k_tokens": str(rate),
        "contributor_share_percent": str(share),
        "failed_requests": failed,
    }
    for name, rows in groups.items():
        report[name] = [_line(key, n, p, c, rate, share) for key, n, p, c in rows]
    report["total"] = _line("total", *_sums(report["contributors"]), rate, share)
    return report


def _filters(since: str | None, contributor: str | None) -> tuple[str, list[str]]:
    clauses, params = [], []
    if since:
        try:
            moment = datetime.fromisoformat(since)
        except ValueError:
            raise UserError(
                f"--since {since!r}: expected a date like 2026-11-26 or an ISO datetime"
            ) from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        clauses.append(" AND ts >= ?")
        params.append(moment.astimezone(timezone.utc).isoformat(timespec="microseconds"))
    if contributor:
        clauses.append(" AND contributor_id = ?")
        params.append(contributor)
    return "".join(clauses), params


def _sums(lines: list[dict[str, Any]]) -> tuple[int, int, int]:
    return (
        sum(line["requests"] for line in lines),
        sum(line["prompt_tokens"] for line in lines),
        sum(line["completion_tokens"] for line in lines),
    )


def _line(key: str, requests: int, prompt: int, completion: int, rate: Decimal, share: Decimal) -> dict:
    tokens = prompt + completion
    amount = Decimal(tokens) * rate / 1000
    return {
        "id": key,
        "requests": requests,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": tokens,
        "amount": str(_money(amount)),
        "contributor_share": str(_money(amount * share / 100)),
    }


def render_report(report: dict[str, Any], fmt: str = "table", currency: str = "USD") -> str:
    """The report as a table (for people), CSV (one row per contributor or consumer) or JSON."""
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        fields = ["group", "id", "requests", "prompt_tokens", "completion_tokens", "tokens", "amount"]
        writer = csv.DictWriter(out, fieldnames=[*fields, "contributor_share"], lineterminator="\n")
        writer.writeheader()
        for group in ("contributors", "consumers"):
            for line in report[group]:
                writer.writerow({"group": group[:-1], **line})
        writer.writerow({"group": "total", **report["total"]})
        return out.getvalue()
    if fmt == "table":
        return _table(report, currency)
    raise UserError(f"--format {fmt!r}: expected table, csv or json")


def _table(report: dict[str, Any], currency: str) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=120, file=io.StringIO())
    head = f"rate {report['rate_per_1k_tokens']} {currency} / 1k tokens, contributor share {report['contributor_share_percent']}%"
    console.print(head + (f", since {report['since']}" if report["since"] else ""))
    for group, title in (("contributors", "per contributor"), ("consumers", "per consumer")):
        table = Table(title=title)
        for column in ("id", "requests", "prompt_tokens", "completion_tokens", "tokens", "amount"):
            table.add_column(column, justify="left" if column == "id" else "right")
        if group == "contributors":
            table.add_column("contributor_share", justify="right")
        for line in [*report[group], report["total"]]:
            cells = [str(line[c]) for c in ("id", "requests", "prompt_tokens", "completion_tokens", "tokens")]
            cells.append(line["amount"])
            if group == "contributors":
                cells.append(line["contributor_share"])
            table.add_row(*cells)
        console.print(table)
    console.print(f"failed requests (not billed): {report['failed_requests']}")
    return console.export_text()


def report_usage(
    run_dir: str | Path | None,
    config_path: str | Path | None = None,
    db_path: str | Path | None = None,
    since: str | None = None,
    contributor: str | None = None,
    fmt: str = "table",
) -> str:
    """`replica usage`: read the serve config and the run's ledger, and render the report."""
    from replica.agents.serve_config import load_serve_config

    config = load_serve_config(config_path)
    if db_path is None:
        if run_dir is None:
            raise UserError("replica usage: pass --run DIR (the served run) or --db PATH (a usage ledger)")
        db_path = config.path(run_dir, config.usage_db)
    report = usage_report(
        db_path, config.rate_per_1k_tokens, config.contributor_share_percent, since, contributor
    )
    return render_report(report, fmt, config.currency)

"""Per-row reports: one line per input row, in CSV or JSON, and the summary.

Written at the end of every run and on demand (``bulkops report``). Files are
created readable by their owner only: they list every number of the account.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bulkops.errors import InputError
from bulkops.journal.records import Item, JobRecord
from bulkops.journal.sqlite import load_extra
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops.models import Counts, Problem

REPORT_COLUMNS = [
    "line", "phone_number", "prior_profile_id", "desired_profile_id", "final_state",
    "attempts", "http_status", "error_code", "error_title", "error_detail", "note", "via",
]


def item_record(item: Item) -> dict[str, Any]:
    record: dict[str, Any] = {
        "line": item.line,
        "phone_number": item.phone_number,
        "prior_profile_id": item.prior,
        "desired_profile_id": item.desired,
        "final_state": item.state.value,
        "attempts": item.attempts,
        "http_status": item.http_status,
        "error_code": item.error_code,
        "error_title": item.error_title,
        "error_detail": item.error_detail,
        "note": item.note,
        "via": item.via or ("patch" if item.attempts else None),  # the order id, or patch
    }
    for key, value in item.extra:
        record.setdefault(key, _inert(value))
    return record


def _inert(value: str) -> str:
    """Extra CSV cells are the operator's own text: keep a spreadsheet from running them."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def rejected_record(problem: Problem) -> dict[str, Any]:
    return {
        "line": problem.line, "phone_number": None, "prior_profile_id": None,
        "desired_profile_id": None, "final_state": "rejected", "attempts": 0,
        "http_status": None, "error_code": None, "error_title": "invalid input",
        "error_detail": str(problem), "note": None, "via": None,
    }


@dataclass(frozen=True)
class ReportResult:
    path: Path
    rows: int
    counts: Counts


def summary_dict(job: JobRecord, counts: Counts) -> dict[str, Any]:
    return {
        "job": job.name,
        "kind": job.kind.value,
        "state": job.state.value,
        "total": counts.total,
        "done": counts.get(ItemState.DONE),
        "skipped": counts.get(ItemState.SKIPPED),
        "failed": counts.get(ItemState.FAILED),
        "pending": (counts.get(ItemState.PENDING) + counts.get(ItemState.IN_FLIGHT)
                    + counts.get(ItemState.ORDERED)),
        "rejected": counts.rejected,
    }


async def _records(journal: Journal, job_id: int) -> Any:
    async with aclosing(journal.iter_items(job_id, None, batch=5000)) as pages:
        async for page in pages:
            for item in page:
                yield item_record(item)
    async with aclosing(journal.iter_rejected(job_id)) as rejected:
        async for problems in rejected:
            for problem in problems:
                yield rejected_record(problem)


async def write_report(
    journal: Journal, job_id: int, output: Path, fmt: str = "csv"
) -> ReportResult:
    """Stream every row of the job into ``output`` (mode 0600)."""
    if fmt not in ("csv", "json"):
        raise InputError(f"--format must be csv or json, not {fmt!r}")
    fd = open_private(output)
    job = await journal.job(job_id)
    counts = await journal.counts(job_id)
    rows = 0
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        if fmt == "csv":
            rows = await _write_csv(handle, journal, job_id)
        else:
            handle.write('{"summary": ' + json.dumps(summary_dict(job, counts)) + ', "rows": [\n')
            first = True
            async for record in _records(journal, job_id):
                handle.write(("" if first else ",\n") + json.dumps(record))
                first = False
                rows += 1
            handle.write("\n]}\n")
    return ReportResult(output, rows, counts)


# The item columns of REPORT_COLUMNS, in order, then the extra cells as stored.
_CSV_SELECT = ("line, phone_number, prior, desired, state, attempts, http_status, error_code, "
               "error_title, error_detail, note, "
               "COALESCE(via, CASE WHEN attempts > 0 THEN 'patch' END), extra")


async def _write_csv(handle: IO[str], journal: Journal, job_id: int) -> int:
    """Straight from the journal's columns (csv writes None as an empty cell): building an
    Item and a dict for each of a million rows cost more than the writing."""
    writer = csv.writer(handle)
    columns: list[str] | None = None
    extra_columns: list[str] = []
    rows = 0
    async with aclosing(journal.iter_rows(job_id, _CSV_SELECT)) as pages:
        async for page in pages:
            for r in page:
                if columns is None:  # the extra CSV columns of the first row name the rest
                    extra_columns = list(dict.fromkeys(
                        k for k, _ in load_extra(r[12]) if k not in REPORT_COLUMNS))
                    columns = REPORT_COLUMNS + extra_columns
                    writer.writerow(columns)
                if extra_columns:
                    cells: dict[str, str] = {}
                    for key, value in load_extra(r[12]):
                        cells.setdefault(key, _inert(value))
                    writer.writerow([*r[:12], *(cells.get(k) for k in extra_columns)])
                else:
                    writer.writerow(r[:12])
                rows += 1
    if columns is None:
        columns = REPORT_COLUMNS
        writer.writerow(columns)
    async with aclosing(journal.iter_rejected(job_id)) as rejected:
        async for problems in rejected:
            for problem in problems:
                record = rejected_record(problem)
                writer.writerow([record.get(k) for k in columns])
                rows += 1
    return rows


def summary_lines(job: JobRecord, counts: Counts) -> Iterator[str]:
    s = summary_dict(job, counts)
    yield (
        f"job {s['job']} ({s['kind']}, {s['state']}): {s['total']} numbers: done {s['done']}, "
        f"skipped {s['skipped']}, failed {s['failed']}, pending {s['pending']}"
        + (f", rejected {s['rejected']}" if s["rejected"] else "")
    )
def open_private(path: Path, what: str = "report", option: str = "--output") -> int:
    """A file readable by its owner only (reports and plans name every number)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InputError(f"cannot write the {what} {path}: {exc.strerror}; choose another "
                         f"{option}") from None
    os.fchmod(fd, 0o600)
    return fd



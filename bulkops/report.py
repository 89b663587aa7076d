"""Per-row reports: one line per input line, in input order, in CSV or JSON, and the summary.

Written at the end of every run and on demand (``bulkops report``). Files are
created readable by their owner only: they list every number of the account.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from bulkops.errors import InputError
from bulkops.input.header import FROM, PHONE, PROFILE, TO
from bulkops.journal.records import JobRecord
from bulkops.journal.sqlite import load_extra
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops.models import Counts, Extra, Problem
from bulkops.outputs import Inputs, check_output, record_own

# bulkops' own columns, under these names; the input CSV's other columns follow, each under
# INPUT_PREFIX + its header ("note" -> "input_note"), so neither can ever overwrite the other.
# (report column, the items column it is read from); a new column is one line here.
ITEM_FIELDS: tuple[tuple[str, str], ...] = (
    ("line", "line"),
    ("phone_number", "phone_number"),
    ("prior_profile_id", "prior"),
    ("desired_profile_id", "desired"),
    ("final_state", "state"),
    ("attempts", "attempts"),
    ("http_status", "http_status"),
    ("error_code", "error_code"),
    ("error_title", "error_title"),
    ("error_detail", "error_detail"),
    ("note", "note"),
    # the order that applied the number, or "patch" once a PATCH was sent for it
    ("via", "COALESCE(via, CASE WHEN attempts > 0 THEN 'patch' END)"),
    # what the line changed: phone_number, or short_code (phone_number then holds its digits)
    ("resource", "COALESCE(resource, 'phone_number')"),
)
REPORT_COLUMNS = [name for name, _ in ITEM_FIELDS]
INPUT_PREFIX = "input_"
_AT = {name: i for i, name in enumerate(REPORT_COLUMNS)}
# A rejected row's required cells, as written, go into the bulkops column they would have fed.
_REQUIRED_CELLS = {PHONE: "phone_number", PROFILE: "desired_profile_id", FROM: "prior_profile_id",
                   TO: "desired_profile_id"}

# Only when the job named profiles by name: the name of the desired profile, after the others.
NAME_COLUMN = "desired_profile_name"

Line = tuple[list[Any], Extra]  # one report line: bulkops' values (REPORT_COLUMNS), input cells


def input_column(header: str) -> str:
    return INPUT_PREFIX + header


def inert(value: str) -> str:
    """Input cells are the operator's own text: keep a spreadsheet from running them."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def rejected_line(problems: list[Problem]) -> Line:
    """One line for a rejected input row (it may have several problems), with its cells."""
    values: list[Any] = [None] * len(REPORT_COLUMNS)
    values[_AT["line"]], values[_AT["final_state"]], values[_AT["attempts"]] = \
        problems[0].line, "rejected", 0
    values[_AT["error_title"]] = "invalid input"
    values[_AT["error_detail"]] = "; ".join(str(p) for p in problems)
    extra: list[tuple[str, str]] = []
    for column, text in problems[0].cells:
        if column in _REQUIRED_CELLS:  # the operator's own text, as every input cell is
            values[_AT[_REQUIRED_CELLS[column]]] = inert(text)
        else:
            extra.append((column, text))
    return values, tuple(extra)


def duplicate_line(line: int, number: str, desired: str, first_line: int, extra: Extra) -> Line:
    values: list[Any] = [None] * len(REPORT_COLUMNS)
    values[_AT["line"]], values[_AT["phone_number"]] = line, number
    values[_AT["desired_profile_id"]], values[_AT["final_state"]] = desired, "duplicate"
    values[_AT["attempts"]] = 0
    values[_AT["note"]] = (f"repeats line {first_line} (same number and target): collapsed "
                           f"into it; see line {first_line} for the outcome")
    return values, extra


def _record(columns: list[str], values: list[Any], extra: Extra) -> dict[str, Any]:
    record = dict(zip(columns, values))
    for key, value in extra:
        record.setdefault(input_column(key), inert(value))
    return record


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


A = TypeVar("A")
B = TypeVar("B")


async def by_line(first: AsyncGenerator[tuple[int, A], None],
                  second: AsyncGenerator[tuple[int, B], None],
                  ) -> AsyncGenerator[tuple[int, A | B], None]:
    """Two sources, each in input-line order, merged into one in input-line order (both are
    closed when the merge is)."""
    async with aclosing(first), aclosing(second):
        head_a, head_b = await anext(first, None), await anext(second, None)
        while head_a is not None or head_b is not None:
            if head_b is None or (head_a is not None and head_a[0] <= head_b[0]):
                assert head_a is not None
                yield head_a
                head_a = await anext(first, None)
            else:
                yield head_b
                head_b = await anext(second, None)


def side_lines(journal: Journal, job_id: int) -> AsyncGenerator[tuple[int, Line], None]:
    """Rejected rows and collapsed duplicates (lines with no item), in input order, for the
    report and the plan."""
    async def rejected() -> AsyncGenerator[tuple[int, Line], None]:
        group: list[Problem] = []
        async with aclosing(journal.iter_rejected(job_id)) as pages:
            async for page in pages:
                for problem in page:
                    if group and problem.line != group[0].line:
                        yield group[0].line, rejected_line(group)
                        group = []
                    group.append(problem)
        if group:
            yield group[0].line, rejected_line(group)

    async def duplicates() -> AsyncGenerator[tuple[int, Line], None]:
        async with aclosing(journal.iter_duplicates(job_id)) as pages:
            async for page in pages:
                for line, number, desired, first, extra in page:
                    yield line, duplicate_line(line, number, desired, first, extra)

    return by_line(rejected(), duplicates())


# A row left IN_FLIGHT by a run that is gone (kill -9) is not in flight: it is pending, as
# `status` counts it, and is read back before it is sent again.
_STALE = {
    "final_state": "CASE state WHEN 'in_flight' THEN 'pending' ELSE state END",
    "note": "CASE WHEN state = 'in_flight' THEN 'was in flight when its run stopped: read back "
            "before it is sent again' ELSE note END",
}


async def _lines(journal: Journal, job_id: int, names: Mapping[str, str], *,
                 stale: bool = False) -> AsyncGenerator[Line, None]:
    """Every line of the report in input order: one per data line of the input (a migrate
    row: one per number it moved). With ``names``, each line ends with NAME_COLUMN.
    ``stale``: no run holds the journal, so nothing is in flight (see _STALE)."""
    select = ", ".join(_STALE.get(name, column) if stale else column
                       for name, column in ITEM_FIELDS) + ", extra"
    line_at, extra_at = _AT["line"], len(ITEM_FIELDS)  # the extra cells follow ITEM_FIELDS

    async def item_lines() -> AsyncGenerator[tuple[int, Line], None]:
        async with aclosing(journal.iter_rows(job_id, select)) as pages:
            async for page in pages:
                for r in page:
                    yield r[line_at], (list(r[:extra_at]), load_extra(r[extra_at]))

    async with aclosing(by_line(item_lines(), side_lines(journal, job_id))) as lines:
        async for _, (values, extra) in lines:
            if names:
                values.append(names.get(values[_AT["desired_profile_id"]]))
            yield values, extra


async def write_report(
    journal: Journal, job_id: int, output: Path, fmt: str = "csv", *, state: str | None = None,
    stale: bool = False, inputs: Inputs = (), force: bool = False,
) -> ReportResult:
    """Stream every line of the job into ``output`` (mode 0600, replaced only once complete,
    refused as ``AtomicFile`` refuses), or stdout for "-". ``state``: the job's state for the
    JSON summary, when it is not the journal's (a run that died: ``stopped``); ``stale``: no
    run holds the journal, so a row in flight is reported pending, as `status` counts it."""
    if fmt not in ("csv", "json"):
        raise InputError(f"--format must be csv or json, not {fmt!r}")
    to_stdout = str(output) == "-"
    target = None if to_stdout else AtomicFile(output, "report", inputs=inputs, force=force)
    handle = sys.stdout if target is None else target.handle
    job = await journal.job(job_id)
    counts = await journal.counts(job_id)
    names = await journal.profile_names()
    fixed = REPORT_COLUMNS + [NAME_COLUMN] if names else REPORT_COLUMNS
    rows = 0
    try:
        if fmt == "csv":
            rows = await _write_csv(handle, _lines(journal, job_id, names, stale=stale), fixed)
        else:
            summary = summary_dict(job, counts) | ({"state": state} if state else {})
            handle.write('{"summary": ' + json.dumps(summary) + ', "rows": [\n')
            first = True
            async for values, extra in _lines(journal, job_id, names, stale=stale):
                handle.write(("" if first else ",\n") + json.dumps(_record(fixed, values, extra)))
                first = False
                rows += 1
            handle.write("\n]}\n")
        if target is not None:
            target.commit()
    finally:
        if target is None:
            handle.flush()
        else:
            target.abandon()  # after a commit: nothing left to remove
    return ReportResult(output, rows, counts)


async def _write_csv(handle: IO[str], lines: AsyncGenerator[Line, None], fixed: list[str]) -> int:
    """Straight from the journal's columns (csv writes None as an empty cell): building an
    Item and a dict for each of a million rows cost more than the writing. The input's own
    columns are named by the first line that has them (every line of one CSV has the same)."""
    writer = csv.writer(handle)
    columns: list[str] | None = None
    headers: list[str] = []
    rows = 0
    async with aclosing(lines):
        async for values, extra in lines:
            if columns is None:
                headers = list(dict.fromkeys(k for k, _ in extra))
                columns = fixed + [input_column(h) for h in headers]
                writer.writerow(columns)
            if headers:
                cells: dict[str, str] = {}
                for key, value in extra:
                    cells.setdefault(key, inert(value))
                writer.writerow([*values, *(cells.get(k) for k in headers)])
            else:
                writer.writerow(values)
            rows += 1
    if columns is None:
        writer.writerow(fixed)
    return rows


def summary_lines(job: JobRecord, counts: Counts, *, state: str | None = None) -> Iterator[str]:
    """``state``: the state to show, when it is not the journal's (a run that died)."""
    s = summary_dict(job, counts)
    yield (
        f"job {s['job']} ({s['kind']}, {state or s['state']}): {s['total']} numbers: done {s['done']}, "
        f"skipped {s['skipped']}, failed {s['failed']}, pending {s['pending']}"
        + (f", rejected {s['rejected']}" if s["rejected"] else "")
    )


class AtomicFile:
    """A file created 0600 under a temporary name beside ``path``, renamed over it on commit:
    a command that fails halfway leaves the file that was there untouched. Made before any
    request, so a path that cannot be written fails first, and so does one bulkops may not
    replace (``outputs.check_output``: a journal, an input of the job, a file bulkops did not
    write, unless ``force``). On commit the file is recorded as bulkops' own."""

    def __init__(self, path: Path, what: str, option: str = "--output", *,
                 inputs: Inputs = (), force: bool = False) -> None:
        check_output(path, what, option, inputs=inputs, force=force)
        self.path = path
        self.what = what
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise InputError(f"cannot write the {what} {path}: {exc.strerror}; choose another "
                             f"{option}") from None
        os.fchmod(fd, 0o600)
        self.tmp = Path(tmp)
        self.handle = os.fdopen(fd, "w", newline="", encoding="utf-8")

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.path)
        record_own(self.path, self.what)
        try:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)  # the rename survives a power cut
        finally:
            os.close(dir_fd)

    def abandon(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)

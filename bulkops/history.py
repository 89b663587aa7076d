"""A journal's run history, and a live view of a run another process holds.

``job_histories`` is what `bulkops status` lists: each job with when it ran (its runs, schema
3; before that, its own stamps), which job undid which, and which of them is in effect.
``watch`` follows the run in progress (`status --watch`, say on a cron job's journal) from a
read-only connection, once a second: progress, rate against the learned limit, time left,
orders open; it returns when that run ends, or when the process running it is gone.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from bulkops.errors import InputError
from bulkops.htmlreport import RunSpan, duration_text
from bulkops.journal.records import JobRecord, RunRecord
from bulkops.journal.sqlite import sidecar
from bulkops.journal.states import ItemState, JobState
from bulkops.journal.store import Journal
from bulkops.models import Counts, Kind

WATCH_EVERY = 1.0  # seconds between two looks at the journal
RATE_OVER = 30.0  # seconds of progress the watched rate is measured over


@dataclass(frozen=True)
class JobHistory:
    job: JobRecord
    counts: Counts
    orders_open: int
    span: RunSpan
    undoes: int | None  # a rollback: the job it undoes
    rolled_back_by: int | None  # the latest rollback of this job that started writing
    in_effect: str  # "yes", "partly", "no" or "not run"

    def effect_text(self) -> str:
        """Which job undid which, and what is in effect: one phrase."""
        parts = []
        if self.undoes is not None:
            parts.append(f"undoes #{self.undoes}")
        if self.rolled_back_by is not None:
            parts.append(f"rolled back by #{self.rolled_back_by}")
        parts.append({"yes": "in effect", "no": "not in effect (undone)", "not run": "not run",
                      "partly": "partly in effect"}[self.in_effect])
        return "; ".join(parts)

    def ran_text(self) -> str:
        s = self.span
        if s.started is None:
            return "never ran"
        text = f"started {s.started}, " + (f"ended {s.ended}" if s.ended else "not ended")
        if s.runs:
            text += f", {duration_text(s.seconds)}" + (f" over {s.runs} runs" if s.runs > 1 else "")
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"started_at": self.span.started, "ended_at": self.span.ended,
                "duration_s": round(self.span.seconds, 3), "runs": self.span.runs,
                "last_exit_code": self.span.exit_code, "undoes": self.undoes,
                "rolled_back_by": self.rolled_back_by, "in_effect": self.in_effect}


def undoers(jobs: list[JobRecord]) -> dict[int, JobRecord]:
    """Job id -> the latest rollback of it that started writing."""
    undoer: dict[int, JobRecord] = {}
    for job in jobs:
        if job.kind is Kind.ROLLBACK and job.state.ran and job.parent_id is not None:
            undoer[job.parent_id] = job
    return undoer


def effect(job: JobRecord, undoer: dict[int, JobRecord]) -> str:
    """What of ``job`` is in effect, down its chain of rollbacks: a rollback that was itself
    rolled back whole puts its job's profiles back in effect."""
    if not job.state.ran:
        return "not run"
    own = "yes" if job.state is JobState.FINISHED else "partly"
    by = undoer.get(job.id)
    if by is None:
        return own
    undone = effect(by, undoer)  # the rollback's own effect
    return {"yes": "no", "no": own}.get(undone, "partly")


async def job_histories(journal: Journal) -> list[JobHistory]:
    jobs = await journal.jobs()
    runs = await journal.runs()
    undoer = undoers(jobs)
    out = []
    for job in jobs:
        by = undoer.get(job.id)
        out.append(JobHistory(job, await journal.counts(job.id),
                              await journal.open_order_count(job.id),
                              RunSpan.of(job, [r for r in runs if r.job_id == job.id]),
                              job.parent_id if job.kind is Kind.ROLLBACK else None,
                              by.id if by else None, effect(job, undoer)))
    return out


def _holder(journal_path: Path) -> int | None:
    """The process id a bulkops holding the journal wrote into its lock file (it may have
    ended since: the file stays)."""
    try:
        text = sidecar(journal_path, ".lock").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) != os.getpid() else None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


@dataclass(frozen=True)
class WatchLine:
    """One look at the run in progress (or its end)."""

    job: JobRecord
    counts: Counts
    finished: int  # rows of the job finished (done, failed, skipped)
    rate: float | None  # rows/s over the last RATE_OVER seconds; None until measured
    limit: float | None  # requests/s the run's limiter allowed at its last sample
    eta_s: float | None
    orders_open: int
    ended: RunRecord | None  # set on the last line: the run that ended
    gone: bool = False  # the process running it is gone without ending it (killed)

    def text(self) -> str:
        c, total = self.counts, self.counts.total
        line = (f"#{self.job.id} {self.job.name}: {self.finished}/{total} done "
                f"{c.get(ItemState.DONE)} failed {c.get(ItemState.FAILED)} skipped "
                f"{c.get(ItemState.SKIPPED)}")
        if self.ended is not None:
            return line + f"; run ended {self.ended.ended_at}: {self.ended.state}, exit code " \
                          f"{self.ended.exit_code}"
        if self.gone:
            return line + ("; the process running it is gone without ending the run (killed?): "
                           "run the same command again to resume it")
        line += f"; {self.rate:.1f} rows/s" if self.rate is not None else "; rate ?"
        line += f" (limit {self.limit:.1f} req/s)" if self.limit is not None else ""
        line += f"; time left {duration_text(self.eta_s)}" if self.eta_s is not None else ""
        return line + (f"; orders open {self.orders_open}" if self.orders_open else "")

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        return {"job": self.job.name, "id": self.job.id, "state": self.job.state.value,
                "total": c.total, "finished": self.finished, "done": c.get(ItemState.DONE),
                "failed": c.get(ItemState.FAILED), "skipped": c.get(ItemState.SKIPPED),
                "rate": None if self.rate is None else round(self.rate, 2),
                "limit": self.limit, "eta_s": None if self.eta_s is None else round(self.eta_s),
                "orders_open": self.orders_open, "ended": self.ended is not None or self.gone,
                "exit_code": self.ended.exit_code if self.ended else None}


def _finished(counts: Counts) -> int:
    return counts.get(ItemState.DONE) + counts.get(ItemState.FAILED) + counts.get(ItemState.SKIPPED)


async def watch(journal_path: Path, show: Callable[[WatchLine], None], *,
                every: float = WATCH_EVERY) -> WatchLine | None:
    """Show the run in progress once every ``every`` seconds until it ends; None when no run
    is in progress (nothing shown). A bulkops that holds the journal but has not started
    writing yet (loading its CSV, reading back) is waited for."""
    if not journal_path.exists():
        raise InputError(f"{journal_path}: no such journal; check the --journal path")
    async with await Journal.open(journal_path, lock=False) as journal:
        while not (open_runs := [r for r in await journal.runs()
                                 if r.ended_at is None and _alive(r.pid)]):
            if not _alive(_holder(journal_path)):
                return None
            await anyio.sleep(every)  # a run is loading its CSV or reading back: not yet writing
        run = open_runs[-1]
        seen: deque[tuple[float, int]] = deque()
        while True:
            job, counts = await journal.job(run.job_id), await journal.counts(run.job_id)
            ended = next((r for r in await journal.runs(run.job_id) if r.id == run.id
                          and r.ended_at is not None), None)
            now, finished = time.monotonic(), _finished(counts)
            seen.append((now, finished))
            while len(seen) > 2 and now - seen[1][0] >= RATE_OVER:
                seen.popleft()
            rate = None
            if len(seen) > 1 and now > seen[0][0]:
                rate = (finished - seen[0][1]) / (now - seen[0][0])
            points = await journal.series(run.job_id)
            limit = points[-1].rate_limit if points else None
            left = counts.total - finished
            eta = left / rate if rate else None
            line = WatchLine(job, counts, finished, rate, limit, eta,
                             await journal.open_order_count(run.job_id), ended,
                             gone=ended is None and not _alive(run.pid))
            show(line)
            if line.ended is not None or line.gone:
                return line
            await anyio.sleep(every)

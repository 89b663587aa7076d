"""Commands on a journal after (or while) its job ran: status, report, retry-failed, rollback."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunSettings, Secret
from .errors import JournalError
from .jobs import Confirm, JobResult, execute, make_client, snapshot_pending
from .journal import Journal, JobRecord, JobState
from .models import Counts, ItemState
from .report import ReportResult, summary_dict, write_report
from .runner import StopSignal

log = logging.getLogger("bulkops")


def _require(path: Path) -> None:
    if not path.exists():
        raise JournalError(f"{path}: no such journal; check the --journal path")


@dataclass(frozen=True)
class JobStatus:
    job: JobRecord
    counts: Counts


async def job_status(journal_path: Path) -> list[JobStatus]:
    """Every job in the journal with its counts; works while a run holds the journal."""
    _require(journal_path)
    async with await Journal.open(journal_path, lock=False) as journal:
        return [JobStatus(job, await journal.counts(job.id)) for job in await journal.jobs()]


def status_dict(statuses: list[JobStatus]) -> dict[str, Any]:
    return {"jobs": [summary_dict(s.job, s.counts) | {"id": s.job.id} for s in statuses]}


async def report_job(journal_path: Path, output: Path | None, fmt: str = "csv",
                     job_id: int | None = None) -> ReportResult:
    _require(journal_path)
    async with await Journal.open(journal_path, lock=False) as journal:
        jobs = await journal.jobs()
        chosen = jobs[-1].id if job_id is None else job_id
        if chosen not in {j.id for j in jobs}:
            raise JournalError(f"{journal_path} has no job {chosen}; `bulkops status` lists its jobs")
        target = output or journal_path.with_name(
            journal_path.stem + ("" if chosen == 1 else f"-job{chosen}") + f".report.{fmt}")
        return await write_report(journal, chosen, target, fmt)


async def retry_failed(journal_path: Path, settings: RunSettings, api_key: Secret, *,
                       interactive: bool = False, confirm: Confirm | None = None) -> JobResult:
    """Run the failed rows of the latest job again (after their cause was fixed)."""
    _require(journal_path)
    started = time.monotonic()
    client = make_client(settings, api_key)
    async with await Journal.open(journal_path) as journal:
        job = (await journal.jobs())[-1]
        if job.state is JobState.LOADING:
            raise JournalError(f"{journal_path} never finished loading its CSV; run the job first")
        reset = await journal.reset_failed(job.id)
        log.info("retry-failed job=%d rows=%d", job.id, reset)
        async with client:
            return await execute(journal, job.id, client, settings, interactive=interactive,
                                 confirm=confirm, started=started)


async def rollback(journal_path: Path, settings: RunSettings, api_key: Secret, *,
                   interactive: bool = False, confirm: Confirm | None = None) -> JobResult:
    """Put every number the job changed back on its prior profile (journaled, resumable).

    A number whose profile is no longer the one the job set was changed by someone
    since; it is left alone and reported, unless ``settings.force``.
    """
    _require(journal_path)
    started = time.monotonic()
    client = make_client(settings, api_key)
    async with await Journal.open(journal_path) as journal:
        parent = await journal.job(1)
        if parent.state is JobState.LOADING:
            raise JournalError(f"{journal_path}: the job never started writing; nothing to roll back")
        async with client:
            counts = await journal.counts(1)
            if counts.get(ItemState.PENDING) + counts.get(ItemState.IN_FLIGHT):
                # Writes of an interrupted run may have landed unrecorded: read them back first
                # so they count as done and are rolled back too.
                await journal.reset_in_flight(1)
                await snapshot_pending(journal, 1, client, settings, StopSignal())
            rollback_id = await journal.create_rollback_job(
                1, name=f"{parent.name}-rollback", settings=settings.journal_view())
            log.info("rollback job=%d of job=%d force=%s", rollback_id, parent.id, settings.force)
            return await execute(journal, rollback_id, client, settings, interactive=interactive,
                                 confirm=confirm, started=started)


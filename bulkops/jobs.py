"""The library's entry points: every operation the CLI offers, as one async function each.

``run_job``, ``plan_job`` and ``validate_file`` start from a CSV; ``job_status``,
``report_job``, ``retry_failed`` and ``rollback`` work on a journal after (or while) its job
ran. They never print (the ledger goes to the ``bulkops`` logger) and raise only the
``BulkOpsError`` tree; ``bulkops/__init__.py`` exports them.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkops.config import RunSettings, Secret
from bulkops.errors import InputError, JournalError
from bulkops.execute import Confirm, JobResult, execute, make_client, snapshot_pending
from bulkops.input.loading import (
    LoadReport, check_profiles, freeze_migrations, load_rows, profiles_in_use,
)
from bulkops.input.rows import file_sha256
from bulkops.journal.records import JobRecord
from bulkops.journal.states import ItemState, JobState
from bulkops.journal.store import Journal
from bulkops.models import Counts, Kind
from bulkops.plan import write_plan_csv
from bulkops.report import ReportResult, open_private, summary_dict, write_report
from bulkops.runner import StopSignal, gave_up_error
from bulkops.telnyx.client import TelnyxClient
from bulkops.telnyx.retry import GaveUp

log = logging.getLogger("bulkops")


def _require(path: Path) -> None:
    if not path.exists():
        raise JournalError(f"{path}: no such journal; check the --journal path")


@dataclass(frozen=True)
class JobStatus:
    job: JobRecord
    counts: Counts
    orders_open: int = 0  # bulk orders journaled and not settled (SUBMITTING or OPEN)


async def job_status(journal_path: Path) -> list[JobStatus]:
    """Every job in the journal with its counts; works while a run holds the journal."""
    _require(journal_path)
    async with await Journal.open(journal_path, lock=False) as journal:
        return [JobStatus(job, await journal.counts(job.id), await journal.open_order_count(job.id))
                for job in await journal.jobs()]


def status_dict(statuses: list[JobStatus]) -> dict[str, Any]:
    return {"jobs": [summary_dict(s.job, s.counts) | {"id": s.job.id, "orders_open": s.orders_open}
                     for s in statuses]}


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
        if orders := await journal.open_order_count(1):
            raise JournalError(f"{journal_path}: the job has {orders} bulk order(s) still open; "
                               "run the job again to finish them, then roll it back")
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

@dataclass(frozen=True)
class JobRequest:
    """What to run: a kind, a CSV and the journal that records it."""

    kind: Kind
    csv_path: Path
    journal_path: Path
    name: str
    job_file: Path | None = None
    profile_id: str | None = None


async def _open_or_create(request: JobRequest, settings: RunSettings) -> tuple[Journal, bool]:
    path = request.journal_path
    if path.exists():
        journal = await Journal.open(path)
        try:
            job = await journal.job(1)
            _check_same_job(journal, job, request)
        except BaseException:
            await journal.close()
            raise
        log.info("journal resumed path=%s state=%s", path, job.state.value)
        return journal, False
    if not request.csv_path.exists():
        raise InputError(f"{request.csv_path}: no such CSV file; check the path (it is relative to "
                         "the current folder, or to the job file)")
    csv_sha256 = file_sha256(request.csv_path)  # a folder or an unreadable file: said here
    path.parent.mkdir(parents=True, exist_ok=True)
    journal = await Journal.create(
        path, kind=request.kind, name=request.name,
        job_file=None if request.job_file is None else str(request.job_file),
        csv_path=str(request.csv_path.resolve()), csv_sha256=csv_sha256,
        default_profile_id=request.profile_id, settings=settings.journal_view(),
    )
    log.info("journal created path=%s kind=%s csv=%s", path, request.kind.value, request.csv_path)
    return journal, True


def _check_same_job(journal: Journal, job: JobRecord, request: JobRequest) -> None:
    if job.kind is not request.kind:
        raise JournalError(
            f"{journal.path} holds a {job.kind.value} job, not {request.kind.value}; "
            "pass another --journal to start a new job"
        )
    if not job.csv_sha256:
        return
    if not request.csv_path.is_file():
        log.warning("warning csv %s not found; resuming from the journal alone", request.csv_path)
        return
    if file_sha256(request.csv_path) != job.csv_sha256:
        raise JournalError(
            f"{request.csv_path} has changed since the journal {journal.path} was started from it. "
            "A journal belongs to one exact file: restore the original CSV to resume, or pass a new "
            "--journal to start a new job from the changed file."
        )


async def _load(journal: Journal, request: JobRequest, settings: RunSettings,
                client: TelnyxClient, created: bool) -> None:
    job = await journal.job(1)
    if job.state is not JobState.LOADING:
        return
    if not created:
        log.info("journal was interrupted while loading; loading the CSV again")
        await journal.clear_items(1)
    report = await load_rows(
        journal, 1, request.kind, request.csv_path, default_profile_id=request.profile_id,
        default_region=settings.default_region, skip_invalid=settings.skip_invalid,
    )
    await check_profiles(client, request.csv_path,
                         await profiles_in_use(journal, 1, request.kind, report))
    await journal.set_job_state(1, JobState.READY)
    log.info("csv validated rows=%d rejected=%d collapsed=%d warnings=%d", report.rows,
             report.rejected, report.collapsed, report.warning_count)


async def run_job(
    request: JobRequest,
    settings: RunSettings,
    api_key: Secret,
    *,
    interactive: bool = False,
    confirm: Confirm | None = None,
    dry_run: bool = False,
    plan_output: Path | None = None,
) -> JobResult:
    """Validate, snapshot and run a job, or resume it from its journal."""
    if dry_run:
        return await plan_job(request, settings, api_key, output=plan_output)
    started = time.monotonic()
    client = make_client(settings, api_key)  # refuses an unsafe base URL before anything is written
    journal, created = await _open_or_create(request, settings)
    try:
        async with client:
            try:
                await _load(journal, request, settings, client, created)
            except BaseException:
                if created:
                    await journal.discard()
                raise
            if request.kind is Kind.MIGRATE:
                await freeze_migrations(journal, 1, client)
            return await execute(journal, 1, client, settings, interactive=interactive,
                                 confirm=confirm, started=started)
    except GaveUp as exc:
        raise gave_up_error(exc) from None
    finally:
        await journal.close()


async def plan_job(request: JobRequest, settings: RunSettings, api_key: Secret,
                   *, output: Path | None = None) -> JobResult:
    """Read the current state of every number and say what a run would do; write nothing."""
    started = time.monotonic()
    output = output or request.csv_path.with_name(request.csv_path.stem + ".plan.csv")
    os.close(open_private(output, "plan", "--output / --plan-output"))  # before any request
    client = make_client(settings, api_key)
    with tempfile.TemporaryDirectory(prefix="bulkops-plan-") as tmp:
        scratch = JobRequest(request.kind, request.csv_path, Path(tmp) / "plan.db", request.name,
                             request.job_file, request.profile_id)
        journal, _ = await _open_or_create(scratch, settings)
        try:
            async with client:
                await _load(journal, scratch, settings, client, True)
                if request.kind is Kind.MIGRATE:
                    await freeze_migrations(journal, 1, client)
                await snapshot_pending(journal, 1, client, settings, StopSignal())
                summary = await write_plan_csv(journal, 1, output)
                job = await journal.job(1)
                counts = await journal.counts(1)
                stats = client.stats.as_dict()
        except GaveUp as exc:
            raise gave_up_error(exc) from None
        finally:
            await journal.close()
    return JobResult(request.journal_path, job, counts, plan=summary, plan_path=output,
                     elapsed=time.monotonic() - started, requests=stats)


async def validate_file(
    kind: Kind,
    csv_path: Path,
    *,
    default_profile_id: str | None,
    default_region: str,
    client: TelnyxClient | None,
) -> LoadReport:
    """`bulkops validate`: every check a run makes before writing, in a scratch journal.

    Profiles are checked against the account only when a client is given.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bulkops-validate-") as tmp:
        # A scratch journal: no hash of the CSV (nothing will resume it); read_rows says
        # what is wrong with a missing, unreadable or folder path.
        journal = await Journal.create(
            Path(tmp) / "validate.db", kind=kind, name=csv_path.stem, job_file=None,
            csv_path=str(csv_path), csv_sha256=None,
            default_profile_id=default_profile_id, settings={},
        )
        try:
            report = await load_rows(journal, 1, kind, csv_path, default_profile_id=default_profile_id,
                                     default_region=default_region, skip_invalid=False)
            if client is not None:
                await check_profiles(client, csv_path, await profiles_in_use(journal, 1, kind, report))
        finally:
            await journal.close()
    return report

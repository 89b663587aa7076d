"""The library entry points: one async function per CLI command.

Each one can be called from Python; the CLI only parses options, calls one of
these, and prints. They never print themselves (the ledger goes to the
``bulkops`` logger) and raise only the ``BulkOpsError`` tree.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .client import TelnyxClient
from .config import RunSettings, Secret
from .csvjobs import file_sha256
from .errors import ApiError, BulkOpsError, ExitCode, InputError, Interrupted, JournalError
from .journal import Item, Journal, JobRecord, JobState
from .loading import check_profiles, freeze_migrations, load_rows, profiles_in_use
from .models import Counts, ItemState, Kind
from .plan import (
    SNAPSHOT_CONCURRENCY, PlanSummary, item_batches, open_private, read_states,
    snapshot_and_write, summarize, take_snapshot, write_plan_csv,
)
from .progress import Tracker, show_progress
from .ratelimit import RateLimiter
from .report import write_report
from .retry import GaveUp
from .storm import FailureStorm, FailureStormError
from .runner import FatalBox, StopSignal, gave_up_error, pump, watch_signals, write_items

log = logging.getLogger("bulkops")

Confirm = Callable[[PlanSummary], Awaitable[bool]]


@dataclass(frozen=True)
class JobRequest:
    """What to run: a kind, a CSV and the journal that records it."""

    kind: Kind
    csv_path: Path
    journal_path: Path
    name: str
    job_file: Path | None = None
    profile_id: str | None = None


@dataclass
class JobResult:
    journal_path: Path
    job: JobRecord
    counts: Counts
    plan: PlanSummary | None = None
    report_path: Path | None = None
    plan_path: Path | None = None
    elapsed: float = 0.0
    requests: dict[str, Any] = field(default_factory=dict)
    drift: list[tuple[str, str, str | None]] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        failed = self.counts.get(ItemState.FAILED) + self.counts.rejected + len(self.drift)
        return ExitCode.FAILED_ROWS if failed else ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "journal": str(self.journal_path),
            "job": self.job.name,
            "kind": self.job.kind.value,
            "state": self.job.state.value,
            "counts": {s.value: self.counts.get(s) for s in ItemState} | {"rejected": self.counts.rejected},
            "plan": None if self.plan is None else dict(self.plan.rows()),
            "report": None if self.report_path is None else str(self.report_path),
            "plan_csv": None if self.plan_path is None else str(self.plan_path),
            "elapsed_seconds": round(self.elapsed, 3),
            "requests": self.requests,
            "drift": [{"phone_number": n, "desired": d, "current": c} for n, d, c in self.drift],
            "exit_code": int(self.exit_code),
        }


def make_client(settings: RunSettings, api_key: Secret) -> TelnyxClient:
    limiter = RateLimiter(ceiling=settings.rate, max_server_wait=settings.max_server_wait)
    return TelnyxClient(
        settings.base_url, api_key.reveal(), limiter=limiter, policy=settings.policy,
        timeout=settings.timeout, connections=settings.concurrency + 8, insecure=settings.insecure,
    )


def report_path_for(journal_path: Path, job_id: int = 1) -> Path:
    suffix = "" if job_id == 1 else f"-job{job_id}"
    return journal_path.with_name(journal_path.stem + suffix + ".report.csv")


def _raise_fatal(fatal: FatalBox) -> None:
    if fatal.error is not None:
        raise fatal.error


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


async def snapshot_pending(journal: Journal, job_id: int, client: TelnyxClient,
                           settings: RunSettings, stop: StopSignal) -> None:
    """Read back every PENDING row before any write (see plan.take_snapshot)."""
    counts = await journal.counts(job_id)
    log.info("snapshot started numbers=%d", counts.get(ItemState.PENDING))
    _raise_fatal(await take_snapshot(journal, job_id, client, stop=stop, force=settings.force))


async def execute(
    journal: Journal,
    job_id: int,
    client: TelnyxClient,
    settings: RunSettings,
    *,
    interactive: bool,
    confirm: Confirm | None,
    started: float,
) -> JobResult:
    """Snapshot, confirm, write and report one job of an open journal."""
    stop = StopSignal()
    error: BulkOpsError | None = None
    async with anyio.create_task_group() as signals:
        signals.start_soon(watch_signals, stop)
        try:
            result = await _execute(journal, job_id, client, settings, stop,
                                    interactive=interactive, confirm=confirm, started=started)
        except BulkOpsError as exc:
            error = exc  # raised outside the group, so callers never see an exception group
        finally:
            signals.cancel_scope.cancel()
    if isinstance(error, FailureStormError):
        await journal.flush()
        await journal.set_job_state(job_id, JobState.ABORTED)
        error.message = error.message.replace("<journal>", str(journal.path)) + (
            f"\nEvery row is kept in {journal.path}; `bulkops report --journal {journal.path}` "
            "lists the failed ones.")
    elif isinstance(error, ApiError):
        await journal.flush()
        await journal.set_job_state(job_id, JobState.ABORTED)
        error.message += (f"\nProgress is kept in {journal.path}: fix the cause and run the same "
                          "command again to resume.")
    if error is not None:
        raise error
    return result


async def _execute(journal: Journal, job_id: int, client: TelnyxClient, settings: RunSettings,
                   stop: StopSignal, *, interactive: bool, confirm: Confirm | None,
                   started: float) -> JobResult:
    recovered = await journal.reset_in_flight(job_id)
    if recovered:
        log.info("resume: %d row(s) were in flight when the last run stopped; each is read back "
                 "before it is sent again", recovered)
    # Nobody to approve a plan (--yes, cron): read back and write as one pipeline.
    pipelined = settings.assume_yes or confirm is None
    summary: PlanSummary | None = None
    if not pipelined:
        await snapshot_pending(journal, job_id, client, settings, stop)
        if stop.requested:
            await _interrupted(journal, job_id)
        summary = await summarize(journal, job_id)
        log.info("plan: will change=%d already in place=%d not on account=%d left alone=%d",
                 summary.change, summary.in_place, summary.not_on_account, summary.left_alone)
        if (summary.writes > settings.confirm_threshold and confirm is not None
                and not await confirm(summary)):
            raise Interrupted(f"not confirmed; nothing was sent. The journal {journal.path} is "
                              "kept: run the same command again to resume, with --yes to skip "
                              "the question")
    await journal.set_job_state(job_id, JobState.RUNNING)
    pending = (await journal.counts(job_id)).get(ItemState.PENDING)
    tracker = Tracker("write", total=pending, retries=lambda: client.stats.retries)
    storm = FailureStorm(settings.max_consecutive_failures)
    log.info("writes started rows=%d concurrency=%d rate=%s%s", pending, settings.concurrency,
             settings.rate or "server-paced", " (each batch read back first)" if pipelined else "")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: show_progress(tracker, interactive=interactive))
        if pipelined:
            fatal = await snapshot_and_write(journal, job_id, client, tracker, stop=stop,
                                             concurrency=settings.concurrency, force=settings.force,
                                             storm=storm)
        else:
            fatal = await write_items(journal, job_id, client, tracker,
                                      concurrency=settings.concurrency, stop=stop, storm=storm)
        tg.cancel_scope.cancel()
    _raise_fatal(fatal)
    if stop.requested:
        await _interrupted(journal, job_id)
    drift = await verify_done(journal, job_id, client, stop) if settings.verify else []
    if stop.requested:  # Ctrl-C during the verify: the writes are kept, the job resumes
        await _interrupted(journal, job_id)
    await journal.set_job_state(job_id, JobState.FINISHED)
    report = await write_report(journal, job_id, report_path_for(journal.path, job_id))
    job = await journal.job(job_id)
    result = JobResult(journal.path, job, report.counts, plan=summary, report_path=report.path,
                       elapsed=time.monotonic() - started, requests=client.stats.as_dict(),
                       drift=drift)
    log.info("job finished %s elapsed=%.1fs report=%s", _counts_text(result.counts),
             result.elapsed, report.path)
    return result


def _counts_text(counts: Counts) -> str:
    text = " ".join(f"{s.value}={counts.get(s)}" for s in ItemState if counts.get(s))
    return text + (f" rejected={counts.rejected}" if counts.rejected else "")


async def _interrupted(journal: Journal, job_id: int) -> None:
    await journal.flush()
    await journal.set_job_state(job_id, JobState.INTERRUPTED)
    counts = await journal.counts(job_id)
    raise Interrupted(
        f"interrupted: {_counts_text(counts)}. Everything so far is in {journal.path}: run the "
        "same command again to resume."
    )


async def verify_done(journal: Journal, job_id: int, client: TelnyxClient,
                      stop: StopSignal) -> list[tuple[str, str, str | None]]:
    """Re-read every number the job changed and list the ones that drifted since."""
    drift: list[tuple[str, str, str | None]] = []

    async def check(page: list[Item]) -> None:
        # read_states: the same reads as the snapshot, one-by-one fallback included.
        entries = await read_states(client, [item.phone_number for item in page])
        drift.extend((item.phone_number, item.desired, entry.current)
                     for item, entry in zip(page, entries) if entry.current != item.desired)

    _raise_fatal(await pump(item_batches(journal, job_id, ItemState.DONE), check,
                            concurrency=SNAPSHOT_CONCURRENCY, stop=stop))
    for number, desired, current in drift[:20]:
        log.info("verify drift number=%s desired=%s current=%s", number, desired or "unassigned",
                 "not found" if current is None else current or "unassigned")
    log.info("verify finished drifted=%d", len(drift))
    return drift

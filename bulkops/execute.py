"""One job of an open journal, start to end: snapshot -> confirm -> write -> verify -> report.

Every entry point that writes (run, retry-failed, rollback) ends here, so they share the
pipelining, the signal handling and what an interruption or a fatal API error leaves behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

from bulkops.config import RunSettings, Secret, WriteMode
from bulkops.errors import ApiError, BulkOpsError, ExitCode, Interrupted
from bulkops.journal.records import CSV_JOB, Item, JobRecord
from bulkops.journal.states import ItemState, JobState
from bulkops.journal.store import Journal
from bulkops.models import Counts, Kind
from bulkops.orders import OrderPipeline
from bulkops.plan import PlanSummary, summarize
from bulkops.progress import Tracker, show_progress
from bulkops.report import write_report
from bulkops.runner import FatalBox, StopSignal, pump, watch_signals, write_items, write_pending
from bulkops.snapshot import (
    SNAPSHOT_CONCURRENCY, item_batches, read_states, snapshot_and_write, take_snapshot,
)
from bulkops.storm import FailureStorm, FailureStormError
from bulkops.telnyx.client import TelnyxClient
from bulkops.telnyx.ratelimit import RateLimiter

log = logging.getLogger("bulkops")
# A resume does not read again what a run read this recently and never sent: a number
# changed behind the job within this is taken as it was read (the crash was a moment ago).
SNAPSHOT_FRESH = 600.0

# Asked with the plan (its ``question()`` names what will happen); answers whether to go on.
Confirm = Callable[[PlanSummary], Awaitable[bool]]


@dataclass
class JobResult:
    journal_path: Path | None  # None: a plan, which keeps no journal
    job: JobRecord
    counts: Counts
    plan: PlanSummary | None = None
    report_path: Path | None = None
    plan_path: Path | None = None
    elapsed: float = 0.0
    requests: dict[str, Any] = field(default_factory=dict)
    drift: list[tuple[str, str, str | None]] = field(default_factory=list)
    message: str | None = None  # what the operator must know beyond the counts
    idle: bool = False  # nothing was (or was to be) done: the counts are the job's, not this run's

    @property
    def exit_code(self) -> ExitCode:
        if self.idle:
            return ExitCode.OK
        failed = self.counts.get(ItemState.FAILED) + self.counts.rejected + len(self.drift)
        return ExitCode.FAILED_ROWS if failed else ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "journal": None if self.journal_path is None else str(self.journal_path),
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
            "message": self.message,
            "exit_code": int(self.exit_code),
        }


def make_client(settings: RunSettings, api_key: Secret) -> TelnyxClient:
    limiter = RateLimiter(ceiling=settings.rate, max_server_wait=settings.max_server_wait)
    return TelnyxClient(
        settings.base_url, api_key.reveal(), limiter=limiter, policy=settings.policy,
        timeout=settings.timeout, connections=settings.concurrency + 8, insecure=settings.insecure,
    )


def report_path_for(journal_path: Path, job_id: int = CSV_JOB, fmt: str = "csv") -> Path:
    suffix = "" if job_id == CSV_JOB else f"-job{job_id}"
    return journal_path.with_name(journal_path.stem + suffix + f".report.{fmt}")


async def snapshot_pending(journal: Journal, job_id: int, client: TelnyxClient,
                           settings: RunSettings, stop: StopSignal) -> None:
    """Read back every PENDING row before any write (see snapshot.take_snapshot), but those
    read in the last SNAPSHOT_FRESH seconds and never sent (a resume right after a crash)."""
    counts = await journal.counts(job_id)
    log.info("snapshot started numbers=%d (those read in the last %.0f min and never sent are "
             "not read again)", counts.get(ItemState.PENDING), SNAPSHOT_FRESH / 60)
    fresh_after = datetime.fromtimestamp(time.time() - SNAPSHOT_FRESH, timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")  # the journal's updated_at format
    (await take_snapshot(journal, job_id, client, stop=stop, force=settings.force,
                         fresh_after=fresh_after)).raise_if_set()


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
    """Snapshot, confirm, write and report one job of an open journal.

    A job that a rollback undid is never written again (that would silently undo the
    rollback): the result says so and nothing is sent."""
    if undone := await rolled_back(journal, job_id):
        return undone
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
        await journal.set_job_state(job_id, JobState.ABORTED)
        error.message = error.message.replace("<journal>", str(journal.path)) + (
            f"\nEvery row is kept in {journal.path}; `bulkops report --journal {journal.path}` "
            "lists the failed ones.")
    elif isinstance(error, ApiError):
        await journal.set_job_state(job_id, JobState.ABORTED)
        error.message += (f"\nProgress is kept in {journal.path}: fix the cause and run the same "
                          "command again to resume.")
    if error is not None:
        raise error
    return result


async def rolled_back(journal: Journal, job_id: int) -> JobResult | None:
    """The idle result to give instead of writing ``job_id`` again, when a rollback undid it."""
    undid = []
    for rollback in await journal.rollbacks_of(job_id):
        counts = await journal.counts(rollback.id)  # one that stopped before sending undid nothing
        if (counts.get(ItemState.DONE) + counts.get(ItemState.IN_FLIGHT) + counts.get(ItemState.FAILED)
                + counts.get(ItemState.ORDERED) or await journal.open_order_count(rollback.id)):
            undid.append(rollback)
    if not undid:
        return None
    job, by = await journal.job(job_id), undid[-1]
    return JobResult(journal.path, job, await journal.counts(job_id), idle=True, message=(
        f"job {job.name} (#{job.id}) was rolled back by job #{by.id} ({by.state.value} "
        f"{by.updated_at}); nothing was sent. Running it again would put its numbers back on "
        "the CSV's profiles: to do that, start a new job from the CSV with a new --journal."))


async def _execute(journal: Journal, job_id: int, client: TelnyxClient, settings: RunSettings,
                   stop: StopSignal, *, interactive: bool, confirm: Confirm | None,
                   started: float) -> JobResult:
    recovered = await journal.reset_in_flight(job_id)
    if recovered:
        log.info("resume: %d row(s) were in flight when the last run stopped; each is read back "
                 "before it is sent again", recovered)
    before = await journal.counts(job_id)
    # Rows earlier runs finished: the progress bar starts there, and counts what the snapshot
    # of this run settles as skipped, not as resumed.
    finished_before = before.total - before.get(ItemState.PENDING) - before.get(ItemState.ORDERED)
    # Nobody to approve a plan (--yes, cron): read back and write as one pipeline.
    pipelined = settings.assume_yes or confirm is None
    summary: PlanSummary | None = None
    if not pipelined:
        await snapshot_pending(journal, job_id, client, settings, stop)
        if stop.requested:
            await _interrupted(journal, job_id)
        job = await journal.job(job_id)
        summary = await summarize(journal, job_id, job.kind)
        log.info("plan: will change=%d already in place=%d not on account=%d left alone=%d",
                 summary.change, summary.in_place, summary.not_on_account, summary.left_alone)
        if (summary.writes > settings.confirm_threshold and confirm is not None
                and not await confirm(summary)):
            await _declined(journal, job)
    await journal.set_job_state(job_id, JobState.RUNNING)
    use_orders, snapshotted = await _use_orders(journal, job_id, client, settings, stop,
                                                snapshotted=not pipelined)
    pipelined = pipelined and not snapshotted  # read once: a snapshot taken is not taken again
    storm = FailureStorm(settings.max_consecutive_failures)
    if use_orders:
        return await _finish(journal, job_id, client, settings, stop, started, summary,
                             await _write_by_orders(journal, job_id, client, settings, stop,
                                                    interactive=interactive, storm=storm,
                                                    finished_before=finished_before))
    counts = await journal.counts(job_id)
    pending = counts.get(ItemState.PENDING)
    tracker = _tracker(counts, finished_before, client)
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
    return await _finish(journal, job_id, client, settings, stop, started, summary, fatal)


def _tracker(counts: Counts, finished_before: int, client: TelnyxClient) -> Tracker:
    """The write phase's counters: rows earlier runs finished are ``already``; rows finished
    since this run started (the snapshot found them in place) are ``skipped``."""
    tracker = Tracker("write", total=counts.total, already=finished_before,
                      retries=lambda: client.stats.retries)
    left = counts.get(ItemState.PENDING) + counts.get(ItemState.ORDERED)
    tracker.skipped = counts.total - left - finished_before
    return tracker


async def _declined(journal: Journal, job: JobRecord) -> None:
    """The operator said no. A job that never wrote is cancelled, so no other command
    (retry-failed, report's default) picks it up; one that already wrote keeps its progress
    and stays resumable (a cancelled job could no longer be rolled back)."""
    if not job.state.ran:
        await journal.set_job_state(job.id, JobState.CANCELLED)
        log.info("job cancelled job=%d: not confirmed, nothing was sent", job.id)
        again = ("run `bulkops rollback` again to be asked again" if job.kind is Kind.ROLLBACK
                 else f"the journal {journal.path} is kept: run the same command again to be "
                 "asked again, with --yes to skip the question")
        raise Interrupted(f"not confirmed; nothing was sent and job #{job.id} is cancelled; "
                          + again)
    await journal.set_job_state(job.id, JobState.INTERRUPTED)
    log.info("job interrupted job=%d: not confirmed, nothing more was sent", job.id)
    raise Interrupted(f"not confirmed; nothing more was sent. Job #{job.id} keeps what it did "
                      f"so far in {journal.path}: run the same command again to be asked again, "
                      "with --yes to skip the question")


async def _finish(journal: Journal, job_id: int, client: TelnyxClient, settings: RunSettings,
                  stop: StopSignal, started: float, summary: PlanSummary | None,
                  fatal: FatalBox) -> JobResult:
    fatal.raise_if_set()
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
    log.info("job finished %s elapsed=%.1fs report=%s", _counts_text(result.counts) or "rows=0",
             result.elapsed, report.path)
    return result


async def _use_orders(journal: Journal, job_id: int, client: TelnyxClient,
                      settings: RunSettings, stop: StopSignal, *,
                      snapshotted: bool) -> tuple[bool, bool]:
    """Bulk orders or PATCH for this run, and whether the snapshot is taken now: it is taken
    first when orders may be used (their size is known only after it).

    Orders a crash left open are always finished by orders (never PATCHed over). Otherwise
    --mode patch, and auto with fewer than --bulk-min writes, keep the PATCH path as it is."""
    counts = await journal.counts(job_id)
    resuming = counts.get(ItemState.ORDERED) or await journal.open_order_count(job_id)
    if not resuming and (settings.mode is WriteMode.PATCH or (
            settings.mode is WriteMode.AUTO and counts.get(ItemState.PENDING) < settings.bulk_min)):
        return False, snapshotted  # fewer rows than --bulk-min: fewer writes still, after it
    if not snapshotted:
        await snapshot_pending(journal, job_id, client, settings, stop)
    if stop.requested:
        await _interrupted(journal, job_id)
    writes = (await journal.counts(job_id)).get(ItemState.PENDING)
    return bool(resuming) or settings.mode is WriteMode.BULK or writes >= settings.bulk_min, True


async def _write_by_orders(journal: Journal, job_id: int, client: TelnyxClient,
                           settings: RunSettings, stop: StopSignal, *,
                           interactive: bool, storm: FailureStorm,
                           finished_before: int) -> FatalBox:
    """Orders for what they can take, then one PATCH for each number they left."""
    counts = await journal.counts(job_id)
    total = counts.get(ItemState.PENDING) + counts.get(ItemState.ORDERED)
    tracker = _tracker(counts, finished_before, client)
    orders = OrderPipeline(journal, job_id, client, settings, tracker, stop, storm,
                           submit=settings.mode is not WriteMode.PATCH)
    log.info("writes started rows=%d by bulk orders of up to %d numbers (mode %s), then PATCH "
             "for what orders leave", total, settings.bulk_size, settings.mode.value)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: show_progress(tracker, interactive=interactive))
        fatal = await orders.run()
        if fatal.error is None and not stop.requested:
            left = (await journal.counts(job_id)).get(ItemState.PENDING)
            if left:
                log.info("orders finished posted=%d; %d number(s) left for PATCH", orders.posted,
                         left)
            # The orders' Writer: one failure storm and one failure log cap for the run.
            fatal = await write_pending(journal, job_id, orders.writer,
                                        concurrency=settings.concurrency, stop=stop)
        tg.cancel_scope.cancel()
    return fatal


def _counts_text(counts: Counts) -> str:
    text = " ".join(f"{s.value}={counts.get(s)}" for s in ItemState if counts.get(s))
    return text + (f" rejected={counts.rejected}" if counts.rejected else "")


async def _interrupted(journal: Journal, job_id: int) -> None:
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

    drifted = await pump(item_batches(journal, job_id, ItemState.DONE), check,
                         concurrency=SNAPSHOT_CONCURRENCY, stop=stop)
    drifted.raise_if_set()
    for number, desired, current in drift[:20]:
        log.info("verify drift number=%s desired=%s current=%s", number, desired or "unassigned",
                 "not found" if current is None else current or "unassigned")
    log.info("verify finished drifted=%d", len(drift))
    return drift

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
from bulkops.outputs import free_path
from bulkops.plan import PlanSummary, summarize
from bulkops.progress import Tracker, show_progress
from bulkops.report import ReportResult, write_report
from bulkops.runner import FatalBox, StopSignal, pump, watch_signals, write_items, write_pending
from bulkops.snapshot import (
    SNAPSHOT_CONCURRENCY, item_batches, read_items, snapshot_and_write, take_snapshot,
)
from bulkops.storm import FailureStorm, FailureStormError
from bulkops.story import Recorder
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
    html_path: Path | None = None  # the HTML report (htmlreport.py), beside the CSV one
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
            "plan_targets": None if self.plan is None else [
                {"profile_id": p, "name": self.plan.names.get(p), "numbers": n}
                for p, n in sorted(self.plan.targets.items(), key=lambda t: (-t[1], t[0]))],
            "report": None if self.report_path is None else str(self.report_path),
            "html": None if self.html_path is None else str(self.html_path),
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


async def name_targets(summary: PlanSummary, journal: Journal, client: TelnyxClient) -> None:
    """Give the plan the name of each target profile: the names the job's input resolved,
    else one listing of the account's profiles (only when an id is left unnamed)."""
    names = await journal.profile_names()
    if any(profile_id not in names for profile_id in summary.targets):
        names |= {p.id: p.name for p in await client.list_profiles()}
    summary.names = {p: names[p] for p in summary.targets if p in names}


async def snapshot_pending(journal: Journal, job_id: int, client: TelnyxClient,
                           settings: RunSettings, stop: StopSignal) -> None:
    """Read back every PENDING row before any write (see snapshot.take_snapshot), but those
    read in the last SNAPSHOT_FRESH seconds and never sent (a resume right after a crash)."""
    pending = (await journal.counts(job_id)).get(ItemState.PENDING)
    if not pending:  # a resume with every row settled: nothing to read back, nothing to log
        return
    log.info("snapshot started rows=%d%s", pending, "" if settings.force else (  # numbers, short codes
        f" (those read in the last {SNAPSHOT_FRESH / 60:.0f} min and never sent are not read again)"))
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
    rollback): the result says so and nothing is sent. Each run is journaled (``runs``: start,
    end, exit code) with its series (story.py), and ends with the HTML report beside the CSV
    one, whatever the outcome."""
    if undone := await rolled_back(journal, job_id):
        return undone
    stop = StopSignal()
    error: BulkOpsError | None = None
    recorder = Recorder(journal, job_id, client)
    await recorder.start()
    run_id = await journal.start_run(job_id)
    async with anyio.create_task_group() as signals:
        signals.start_soon(watch_signals, stop)
        signals.start_soon(recorder.run)
        try:
            result = await _execute(journal, job_id, client, settings, stop, recorder,
                                    interactive=interactive, confirm=confirm, started=started)
        except BulkOpsError as exc:
            error = exc  # raised outside the group, so callers never see an exception group
        finally:
            signals.cancel_scope.cancel()
    try:
        await recorder.sample()  # the last part of a second
    except BulkOpsError as exc:
        log.warning("warning: the run's last second was not recorded (%s)", exc)
    if isinstance(error, FailureStormError):
        report = await _stopped(journal, job_id)
        error.message = error.message.replace("<journal>", str(journal.path)) + (
            f"\nEvery row is kept in {journal.path}; " + (
                f"the report so far, {report}, lists the failed ones." if report else
                f"`bulkops report --journal {journal.path}` lists the failed ones."))
    elif isinstance(error, ApiError):
        report = await _stopped(journal, job_id)
        error.message += (f"\nProgress is kept in {journal.path}"
                          + (f" (the report so far: {report})" if report else "")
                          + ": fix the cause and run the same command again to resume.")
    exit_code = int(error.exit_code) if error is not None else int(result.exit_code)
    try:
        await journal.end_run(run_id, (await journal.job(job_id)).state, exit_code)
    except BulkOpsError as exc:
        if error is None:
            raise
        log.warning("warning: the run's end was not recorded (%s)", exc)  # ``error`` says why
    html = await _html(journal, job_id)
    if error is not None:
        raise error
    result.html_path = html
    return result


async def _html(journal: Journal, job_id: int) -> Path | None:
    """The HTML report of the run that just ended; a failure to write it is logged (the
    run's outcome and its journal stand either way)."""
    from bulkops.htmlreport import write_html_report

    path = report_path_for(journal.path, job_id, "html")
    try:
        await write_html_report(journal, job_id, path)
    except (BulkOpsError, OSError) as exc:
        log.warning("warning: the HTML report %s was not written (%s); `bulkops report "
                    "--format html --journal %s` writes it", path, exc, journal.path)
        return None
    log.info("html report written path=%s", path)
    return path


def job_inputs(job: JobRecord, journal_path: Path | None = None) -> list[tuple[str, Path | str | None]]:
    """The files a job reads, which no output of it may replace (outputs.check_output)."""
    return [("the journal", journal_path), ("the job's CSV", job.csv_path),
            ("the job file", job.job_file)]


async def _write_job_report(journal: Journal, job_id: int) -> ReportResult:
    """The report a run writes itself (at its end or its stop): beside the journal, under a
    free name when a file bulkops did not write is in the way, never over an input."""
    inputs = job_inputs(await journal.job(CSV_JOB), journal.path)
    path = free_path(report_path_for(journal.path, job_id), "report", inputs)
    return await write_report(journal, job_id, path, inputs=inputs)


async def _stopped(journal: Journal, job_id: int) -> Path | None:
    """A job a fatal error stopped: ABORTED, its rows in flight back to PENDING (as a resume
    would set them: each is read back before it is sent again, so the report and `status`
    agree), and the report so far written, as at the end of a run."""
    recovered = await journal.reset_in_flight(job_id)
    if recovered:
        log.info("stop: %d row(s) were in flight; pending again, each is read back before it is "
                 "sent again", recovered)
    await journal.set_job_state(job_id, JobState.ABORTED)
    try:
        report = await _write_job_report(journal, job_id)
    except BulkOpsError as err:  # the stop's own error is what the operator must see
        log.warning("warning the report could not be written: %s", err)
        return None
    log.info("job stopped %s report=%s", _counts_text(report.counts) or "rows=0", report.path)
    return report.path


async def undoing(journal: Journal, job_id: int) -> JobRecord | None:
    """The latest rollback of ``job_id`` that undid something (one that stopped before
    sending undid nothing), or None."""
    undid = None
    for rollback in await journal.rollbacks_of(job_id):
        counts = await journal.counts(rollback.id)
        if (counts.get(ItemState.DONE) + counts.get(ItemState.IN_FLIGHT) + counts.get(ItemState.FAILED)
                + counts.get(ItemState.ORDERED) or await journal.open_order_count(rollback.id)):
            undid = rollback
    return undid


async def rollback_chain(journal: Journal, job_id: int) -> list[JobRecord]:
    """``job_id``, the rollback that undid it, the rollback that undid that one, and so on:
    which job's profiles are in effect is decided by the last one (see ``chain_text``)."""
    chain = [await journal.job(job_id)]
    while len(chain) < 100 and (by := await undoing(journal, chain[-1].id)) is not None:
        chain.append(by)
    return chain


def _rollback_command(journal: Journal, job_id: int) -> str:
    job = "" if job_id == CSV_JOB else f" --job {job_id}"
    return f"`bulkops rollback --journal {journal.path}{job}`"


async def chain_text(journal: Journal, chain: list[JobRecord]) -> str:
    """Which state a chain of rollbacks left in effect, and the command that continues.

    A finished rollback restores what its parent found; an unfinished one (interrupted,
    aborted, killed) left the account half-way: its rows put back, the others not."""
    first, last = chain[0], chain[-1]
    text = f"job {first.name} (#{first.id}) was rolled back by job #{chain[1].id}"
    text += "".join(f", which was rolled back by job #{j.id}" for j in chain[2:])
    if last.state is JobState.FINISHED:
        undone = len(chain) - 1  # rollbacks in the chain: an even number undid each other
        if undone % 2:
            state = (f"the numbers job #{first.id} changed are back on the profiles they had "
                     f"before it")
            again = f"puts job #{first.id}'s profiles back"
        else:
            state = f"the profiles job #{first.id} set are in effect again"
            again = f"rolls job #{first.id} back again"
        return (f"{text} (finished {last.updated_at}): {state}. "
                f"{_rollback_command(journal, last.id)} {again}")
    counts = await journal.counts(last.id)
    put = counts.get(ItemState.DONE)
    parent = last.parent_id if last.parent_id is not None else first.id
    return (f"{text}, which stopped before its end ({last.state.value} {last.updated_at}): the "
            f"account is half rolled back: {put} of {counts.total} number(s) of job #{parent} "
            f"are back on their prior profiles, the others still as job #{parent} left them. "
            f"To finish the rollback, run {_rollback_command(journal, parent)} "
            f"(it resumes job #{last.id})")


async def rolled_back(journal: Journal, job_id: int) -> JobResult | None:
    """The idle result to give instead of writing ``job_id`` again, when a rollback undid it:
    what is in effect now, and the command that continues."""
    chain = await rollback_chain(journal, job_id)
    if len(chain) < 2:
        return None
    job, text = chain[0], await chain_text(journal, chain)
    if chain[-1].state is JobState.FINISHED and len(chain) % 2 == 0:  # rolled back, and stays so
        text += (f". Nothing was sent: running job #{job.id} again would undo its rollback "
                 "unasked; to apply its CSV anew instead, start a new job from it with a new "
                 "--journal.")
    else:
        text += ". Nothing was sent."
    return JobResult(journal.path, job, await journal.counts(job_id), idle=True, message=text)


async def _execute(journal: Journal, job_id: int, client: TelnyxClient, settings: RunSettings,
                   stop: StopSignal, recorder: Recorder, *, interactive: bool,
                   confirm: Confirm | None, started: float) -> JobResult:
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
        log.info("plan: will change=%d will unassign=%d already in place=%d not on account=%d "
                 "left alone=%d short codes=%d", summary.change, summary.unassign,
                 summary.in_place, summary.not_on_account, summary.left_alone, summary.short_codes)
        if summary.writes > settings.confirm_threshold and confirm is not None:
            await name_targets(summary, journal, client)  # the question names them
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
                                                    recorder, interactive=interactive,
                                                    storm=storm, finished_before=finished_before))
    counts = await journal.counts(job_id)
    pending = counts.get(ItemState.PENDING)
    tracker = _tracker(counts, finished_before, client)
    recorder.follow(tracker)
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


def next_steps(journal_path: Path, job: JobRecord, counts: Counts, drifted: int) -> str | None:
    """What to do about the rows that make a finished job exit 3: the command that continues."""
    steps = []
    if failed := counts.get(ItemState.FAILED):
        which = "" if job.id == CSV_JOB else f" --job {job.id}"
        steps.append(f"{failed} row(s) failed (the report's error columns say why): once the "
                     f"cause is fixed, `bulkops retry-failed --journal {journal_path}{which}` "
                     "sends them again")
    if counts.rejected:
        steps.append(f"{counts.rejected} row(s) were rejected as invalid and not sent (the "
                     "report says why): fix them in a CSV of their own and run it as a new job "
                     "(with a new --journal)")
    if drifted:
        steps.append(f"{drifted} number(s) drifted: something changed them after they were "
                     "written; run the CSV again with a new --journal to write them again")
    return "\n".join(steps) or None


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
    # Never refused at the end of a job: a file bulkops did not write there is kept, and the
    # report goes beside it under a free name (said in the log and in the result).
    report = await _write_job_report(journal, job_id)
    job = await journal.job(job_id)
    result = JobResult(journal.path, job, report.counts, plan=summary, report_path=report.path,
                       elapsed=time.monotonic() - started, requests=client.stats.as_dict(),
                       drift=drift)
    result.message = next_steps(journal.path, job, report.counts, len(drift))
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
                           settings: RunSettings, stop: StopSignal, recorder: Recorder, *,
                           interactive: bool, storm: FailureStorm,
                           finished_before: int) -> FatalBox:
    """Orders for what they can take, then one PATCH for each number they left."""
    counts = await journal.counts(job_id)
    total = counts.get(ItemState.PENDING) + counts.get(ItemState.ORDERED)
    tracker = _tracker(counts, finished_before, client)
    recorder.follow(tracker)
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
    job = await journal.job(job_id)
    half = (f" The account is half rolled back ({counts.get(ItemState.DONE)} of {counts.total} "
            "number(s) put back) until this rollback finishes." if job.kind is Kind.ROLLBACK
            and counts.get(ItemState.DONE) else "")
    raise Interrupted(
        f"interrupted: {_counts_text(counts)}.{half} Everything so far is in {journal.path}: run "
        "the same command again to resume."
    )


async def verify_done(journal: Journal, job_id: int, client: TelnyxClient,
                      stop: StopSignal) -> list[tuple[str, str, str | None]]:
    """Re-read every number the job changed and list the ones that drifted since."""
    drift: list[tuple[str, str, str | None]] = []

    async def check(page: list[Item]) -> None:
        # read_items: the same reads as the snapshot, one-by-one fallback included.
        entries = await read_items(client, page)
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

"""The library's entry points: every operation the CLI offers, as one async function each.

``run_job``, ``plan_job`` and ``validate_file`` start from a CSV; ``job_status``,
``report_job``, ``retry_failed`` and ``rollback`` work on a journal after (or while) its job
ran; ``list_profiles`` and ``export_numbers`` read the account. They never print (the ledger
goes to the ``bulkops`` logger; a report or export asked for on standard output is the
exception) and raise only the ``BulkOpsError`` tree; ``bulkops/__init__.py`` exports them. A
request that fails for good becomes the operator's error in one place, ``_api_errors``, for
every entry point.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import anyio

from bulkops.account import ExportQuery, ExportResult, ProfileCount, export, profiles_with_counts
from bulkops.config import RunSettings, Secret, base_url_hint
from bulkops.errors import (
    ApiError, ApiUnreachable, BulkOpsError, ExitCode, InputError, Interrupted, JournalError,
)
from bulkops.execute import (
    Confirm, JobResult, chain_text, execute, job_inputs, make_client, name_targets, report_path_for,
    rollback_chain, rolled_back, snapshot_pending,
)
from bulkops.history import JobHistory, job_histories
from bulkops.input.loading import (
    LoadReport, freeze_migrations, load_rows,
)
from bulkops.input.rows import file_sha256
from bulkops.journal.records import CSV_JOB, JobRecord
from bulkops.journal.sql import CHANGED_SINCE
from bulkops.journal.sqlite import lock_held
from bulkops.journal.states import ItemState, JobState
from bulkops.journal.sqlite import now
from bulkops.journal.store import Journal
from bulkops.models import Counts, Kind
from bulkops.notify import check_url, send, summary_text
from bulkops.outputs import Inputs
from bulkops.plan import write_plan_csv
from bulkops.report import AtomicFile, ReportResult, summary_dict, write_report
from bulkops.runner import StopSignal, gave_up_error
from bulkops.storm import FailureStormError
from bulkops.telnyx.client import TelnyxClient
from bulkops.telnyx.retry import GaveUp

log = logging.getLogger("bulkops")


def _require(path: Path) -> None:
    if not path.exists():  # a wrong path on the command line: usage, not a damaged journal
        raise InputError(f"{path}: no such journal; check the --journal path")


async def _job(journal: Journal, job_id: int) -> JobRecord:
    """Job ``job_id`` as named by --job: a number the journal lacks is a usage mistake."""
    if found := [job for job in await journal.jobs() if job.id == job_id]:
        return found[0]
    raise InputError(f"{journal.path} has no job {job_id}; `bulkops status --journal "
                     f"{journal.path}` lists its jobs")


def _api_hint(err: ApiError, base_url: str, then: str) -> ApiError:
    """An unreachable API named as such: the base URL and what to check, then ``then`` (what
    next); any other fatal answer says to fix it first."""
    if err.status == 404 and (hint := base_url_hint(base_url)):
        err.message += f"\n{hint}"  # every path below it is unknown: nothing is "not found"
    if isinstance(err, ApiUnreachable):
        err.message += (f"\nCheck that {base_url} is the API's address (--base-url or "
                        "$TELNYX_API_BASE_URL), that this host can reach it (network, proxy, "
                        "firewall) and the API's status page.")
    if "run the same command again" in err.message or isinstance(err, FailureStormError):
        return err  # it already says what to do next (a storm: retry-failed once fixed)
    if isinstance(err, ApiUnreachable):
        err.message += f"\n{then}" if then else ""
    else:  # a refused key or request: waiting for the API would not help
        err.message += "\nFix that, then run the same command again."
    return err


@contextmanager
def _api_errors(base_url: str, then: str = "") -> Iterator[None]:
    """The one place a request that failed for good (``GaveUp``) becomes the operator's error,
    for every entry point: ``then`` says what that command's next step is."""
    try:
        yield
    except GaveUp as exc:
        raise _api_hint(gave_up_error(exc), base_url, then) from None
    except ApiError as err:
        raise _api_hint(err, base_url, then) from None


SettingsFor = Callable[[Mapping[str, object]], RunSettings]
"""Builds a follow-up's settings from the settings the job was run with (command-line flags
still win): a rollback or retry inherits the job's rate, concurrency and retry limits."""


def _resolve(settings: RunSettings | SettingsFor, job: JobRecord) -> RunSettings:
    return settings if isinstance(settings, RunSettings) else settings(job.settings)


STOPPED = "stopped"  # shown for a job the journal says is active while no process holds it


@dataclass(frozen=True)
class JobStatus:
    job: JobRecord
    counts: Counts
    orders_open: int = 0  # bulk orders journaled and not settled (SUBMITTING or OPEN)
    held: bool = False  # a live process holds the journal's lock

    @property
    def state(self) -> str:
        """The job's state as it truly is: RUNNING (or LOADING) with no process holding the
        journal is a run that died (kill -9, a crash, a reboot): ``stopped``, resumable."""
        if self.job.state in (JobState.RUNNING, JobState.LOADING) and not self.held:
            return STOPPED
        return self.job.state.value

    def stopped_text(self) -> str | None:
        if self.state != STOPPED:
            return None
        again = (f"`bulkops rollback --job {self.job.parent_id}`" if self.job.kind is Kind.ROLLBACK
                 else "`bulkops run`")
        return (f"the journal says {self.job.state.value} but no bulkops process holds it: the "
                f"run stopped without saying so (killed, crashed, or its machine went down); "
                f"run the same command ({again} with this --journal) again to resume it")


async def job_status(journal_path: Path) -> list[JobStatus]:
    """Every job in the journal with its counts; works while a run holds the journal."""
    _require(journal_path)
    async with await Journal.open(journal_path, lock=False) as journal:
        held = lock_held(journal_path)
        return [JobStatus(job, await journal.counts(job.id), await journal.open_order_count(job.id),
                          held) for job in await journal.jobs()]


async def job_history(journal_path: Path) -> list[JobHistory]:
    """Every job with its counts, when it ran, which job undid which and what is in effect
    (history.py); works while a run holds the journal."""
    _require(journal_path)
    async with await Journal.open(journal_path, lock=False) as journal:
        return await job_histories(journal)


def status_dict(statuses: list[JobStatus]) -> dict[str, Any]:
    return {"jobs": [summary_dict(s.job, s.counts) | {"id": s.job.id, "orders_open": s.orders_open,
                                                      "state": s.state, "held": s.held}
                     for s in statuses]}


async def report_job(journal_path: Path, output: Path | None, fmt: str = "csv",
                     job_id: int | None = None, *, force: bool = False) -> ReportResult:
    """The per-row report of ``job_id`` (default: the latest job that ran) as CSV, JSON or
    the HTML page (htmlreport.py); ``output`` "-" is standard output. A path holding a
    journal, an input of the job or a file bulkops did not write is refused before anything
    is written (the last unless ``force``)."""
    _require(journal_path)
    async with await Journal.open(journal_path, lock=False) as journal:
        chosen = await journal.latest_ran() if job_id is None else await _job(journal, job_id)
        target = output or report_path_for(journal_path, chosen.id, fmt)
        inputs = job_inputs(await journal.job(CSV_JOB), journal_path)
        if fmt == "html":
            from bulkops.htmlreport import write_html_report

            page = await write_html_report(journal, chosen.id, target, inputs=inputs, force=force)
            return ReportResult(target, page.rows, await journal.counts(chosen.id))
        held = lock_held(journal_path)
        state = JobStatus(chosen, Counts({}), held=held).state
        return await write_report(journal, chosen.id, target, fmt, state=state, stale=not held,
                                  inputs=inputs, force=force)


async def retry_failed(journal_path: Path, settings: RunSettings | SettingsFor, api_key: Secret,
                       *, job_id: int | None = None, interactive: bool = False,
                       confirm: Confirm | None = None) -> JobResult:
    """Run the failed rows of one job again (after their cause was fixed): ``job_id``, by
    default the latest job that ran. A job that stopped before its end (a failure storm, a
    refused key, Ctrl-C, a crash, "no" at the prompt) also has its unsent rows sent, so one
    command, run again as its own messages say, finishes it. Rows held by a bulk order still
    open are refused: `run` follows the order to its end first."""
    _require(journal_path)
    started = time.monotonic()
    async with await Journal.open(journal_path) as journal:
        job = await journal.latest_ran() if job_id is None else await _job(journal, job_id)
        if not job.state.ran:
            raise InputError(f"job #{job.id} of {journal_path} never ran ({job.state.value}); "
                             "there is nothing to retry")
        if undone := await rolled_back(journal, job.id):
            return undone  # before any reset: a job a rollback undid keeps its rows as they are
        counts = await journal.counts(job.id)
        if ordered := counts.get(ItemState.ORDERED):
            again = "bulkops rollback" if job.kind is Kind.ROLLBACK else "bulkops run"
            raise InputError(f"job #{job.id} of {journal_path} has {ordered} row(s) held by bulk "
                             f"orders still open; `{again}` follows them to their end, then "
                             "retry its failed rows")
        waiting = counts.get(ItemState.PENDING) + counts.get(ItemState.IN_FLIGHT)
        if not counts.get(ItemState.FAILED) and not waiting:
            return JobResult(journal_path, job, counts, idle=True,
                             message=f"job #{job.id} ({job.name}) has no failed rows: nothing to do")
        run_settings = _resolve(settings, job)
        client = make_client(run_settings, api_key)
        with _api_errors(run_settings.base_url):
            reset = await journal.reset_failed(job.id)
            log.info("retry-failed job=%d rows=%d", job.id, reset)
            async with client:
                return await execute(journal, job.id, client, run_settings,
                                     interactive=interactive, confirm=confirm, started=started)


async def rollback(journal_path: Path, settings: RunSettings | SettingsFor, api_key: Secret, *,
                   job_id: int = CSV_JOB, interactive: bool = False,
                   confirm: Confirm | None = None) -> JobResult:
    """Put every number job ``job_id`` changed back on its prior profile (journaled, resumable).

    A number whose profile is no longer the one the job set was changed by someone
    since; it is left alone and reported, unless ``settings.force``. A job already rolled
    back is not rolled back again (nothing would change), unless numbers were left out.
    """
    _require(journal_path)
    started = time.monotonic()
    async with await Journal.open(journal_path) as journal:
        parent = await _job(journal, job_id)
        if parent.state in (JobState.LOADING, JobState.READY, JobState.CANCELLED):
            raise InputError(f"job #{parent.id} of {journal_path} never started writing "
                             f"({parent.state.value}); nothing to roll back")
        if orders := await journal.open_order_count(parent.id):
            raise InputError(f"job #{parent.id} of {journal_path} has {orders} bulk order(s) still "
                             "open; run the job again to finish them, then roll it back")
        run_settings = _resolve(settings, parent)
        if done := await _already_rolled_back(journal, parent, run_settings.force):
            return done
        client = make_client(run_settings, api_key)
        with _api_errors(run_settings.base_url):
            async with client:
                counts = await journal.counts(parent.id)
                if counts.get(ItemState.PENDING) + counts.get(ItemState.IN_FLIGHT):
                    # Writes of an interrupted run may have landed unrecorded: read them back
                    # first so they count as done and are rolled back too.
                    await journal.reset_in_flight(parent.id)
                    await snapshot_pending(journal, parent.id, client, run_settings, StopSignal())
                rollback_id = await journal.create_rollback_job(
                    parent.id, name=f"{parent.name}-rollback", settings=run_settings.journal_view())
                log.info("rollback job=%d of job=%d force=%s", rollback_id, parent.id,
                         run_settings.force)
                return await _left_alone(journal, parent, await execute(
                    journal, rollback_id, client, run_settings, interactive=interactive,
                    confirm=confirm, started=started))


async def _already_rolled_back(journal: Journal, parent: JobRecord, force: bool) -> JobResult | None:
    """A finished rollback that left nothing behind: a second one would change nothing.

    Unless that rollback was itself rolled back: then the parent's profiles are in effect
    again and it is rolled back anew (or, if that second rollback stopped half-way, the
    command that finishes it is named)."""
    finished = [j for j in await journal.rollbacks_of(parent.id) if j.state is JobState.FINISHED]
    if not finished:
        return None
    last = finished[-1]
    chain = await rollback_chain(journal, last.id)  # last, the rollback that undid it, ...
    if len(chain) > 1:
        text = await chain_text(journal, [parent, *chain])
        if chain[-1].state is not JobState.FINISHED:
            raise InputError(f"{text}. Nothing was sent.")
        if len(chain) % 2 == 0:  # its undoing was undone: the parent's profiles are in effect
            log.info("rollback of job=%d again: its rollback job=%d was rolled back by job=%d",
                     parent.id, last.id, chain[1].id)
            return None
        return JobResult(journal.path, last, await journal.counts(last.id), idle=True,
                         message=f"{text}; nothing to change, nothing was sent")
    counts = await journal.counts(last.id)
    failed, left = counts.get(ItemState.FAILED), counts.get(ItemState.SKIPPED)
    if failed or (left and force):
        return None  # numbers it could not (or would not) put back: a new rollback tries them
    text = (f"job #{parent.id} ({parent.name}) was already rolled back by job #{last.id} "
            f"({last.updated_at}): nothing to change, nothing was sent; the numbers job "
            f"#{parent.id} changed are on the profiles they had before it. To put job "
            f"#{parent.id}'s profiles back, run `bulkops rollback --journal {journal.path} "
            f"--job {last.id}`")
    if left:
        text += (f". It left {left} number(s) alone (changed since the job, or already back): "
                 "pass --force to roll back the ones changed since too")
    return JobResult(journal.path, last, counts, idle=True, message=text)


async def _left_alone(journal: Journal, parent: JobRecord, result: JobResult) -> JobResult:
    """A rollback that left numbers alone (someone changed them since the job) says so, and
    how to put them back too; the report's note says what each is on now."""
    if result.idle or result.job.kind is not Kind.ROLLBACK:
        return result
    if left := await journal.count_notes(result.job.id, ItemState.SKIPPED, CHANGED_SINCE):
        again = "" if parent.id == CSV_JOB else f" --job {parent.id}"
        text = (f"{left} number(s) were left alone, not rolled back: they were changed since job "
                f"#{parent.id} (the report's note says what each is on now). To put them back "
                f"too, run `bulkops rollback --journal {journal.path}{again} --force`")
        result.message = text if result.message is None else f"{result.message}\n{text}"
    return result


@dataclass(frozen=True)
class JobRequest:
    """What to run: a kind, a CSV and the journal that records it."""

    kind: Kind
    csv_path: Path
    journal_path: Path
    name: str
    job_file: Path | None = None
    profile_id: str | None = None


async def _open_or_create(request: JobRequest, settings: RunSettings, *,
                          scratch: bool = False) -> tuple[Journal, bool]:
    """The request's journal, resumed or created; ``scratch``: a plan's, in a temporary
    folder and deleted after it, which the ledger does not mention (a plan keeps none)."""
    path = request.journal_path
    if path.exists():
        journal = await Journal.open(path)
        try:
            job = await journal.job(CSV_JOB)
            _check_same_job(journal, job, request)
        except BaseException:
            await journal.close()
            raise
        log.info("journal resumed path=%s state=%s%s", path, job.state.value,
                 " (its last run stopped without saying so: killed or crashed)"
                 if job.state in (JobState.RUNNING, JobState.LOADING) else "")
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
    if not scratch:
        log.info("journal created path=%s kind=%s csv=%s", path, request.kind.value,
                 request.csv_path)
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
    if file_sha256(request.csv_path) == job.csv_sha256:
        return
    if job.csv_path and Path(job.csv_path) != request.csv_path.resolve():
        raise JournalError(
            f"the journal {journal.path} belongs to {job.csv_path}, not {request.csv_path}: pass "
            "the CSV it was started from to resume it, or a new --journal to start a job from "
            f"{request.csv_path}"
        )
    raise JournalError(
        f"{request.csv_path} has changed since the journal {journal.path} was started from it. "
        "A journal belongs to one exact file: restore the original CSV to resume, or pass a new "
        "--journal to start a new job from the changed file."
    )


async def _load(journal: Journal, request: JobRequest, settings: RunSettings,
                client: TelnyxClient, created: bool) -> None:
    job = await journal.job(CSV_JOB)
    if job.state is not JobState.LOADING:
        return
    if not created:
        log.info("journal was interrupted while loading; loading the CSV again")
        await journal.clear_items(CSV_JOB)
    report = await load_rows(
        journal, CSV_JOB, request.kind, request.csv_path, default_profile_id=request.profile_id,
        default_region=settings.default_region, skip_invalid=settings.skip_invalid, client=client,
    )
    await journal.set_job_state(CSV_JOB, JobState.READY)
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
    force_output: bool = False,
    inputs: Inputs = (),
    notify: str | None = None,
) -> JobResult:
    """Validate, snapshot and run a job, or resume it from its journal. With ``notify`` (a
    webhook URL), one POST says how the run ended, whatever the outcome (notify.py).
    ``force_output`` and ``inputs``: for the plan of a dry run (see ``plan_job``)."""
    if notify is None or dry_run:
        return await _run_job(request, settings, api_key, interactive=interactive,
                              confirm=confirm, dry_run=dry_run, plan_output=plan_output,
                              force_output=force_output, inputs=inputs)
    url = check_url(notify, insecure=settings.insecure)  # before anything is sent
    started_at, started = now(), time.monotonic()
    try:
        result = await _run_job(request, settings, api_key, interactive=interactive,
                                confirm=confirm, dry_run=dry_run, plan_output=plan_output,
                                force_output=force_output, inputs=inputs)
    except BulkOpsError as exc:
        await send(url, await finished_payload(request, started_at, started, error=exc),
                   secret=api_key.reveal())
        raise
    except Exception:  # a bug (exit 1): word goes out all the same, then the traceback
        await send(url, await finished_payload(request, started_at, started),
                   secret=api_key.reveal())
        raise
    except anyio.get_cancelled_exc_class():
        # Ctrl-C where no stop of our own is listening (loading, the first read-back) or a second
        # Ctrl-C cancels the run from outside: the word still goes out, shielded, then it stops.
        stopped = Interrupted("interrupted; run the same command again to resume")
        with anyio.CancelScope(shield=True):
            await send(url, await finished_payload(request, started_at, started, error=stopped),
                       secret=api_key.reveal())
        raise
    await send(url, await finished_payload(request, started_at, started, result=result),
               secret=api_key.reveal())
    return result


async def finished_payload(request: JobRequest, started_at: str, started: float, *,
                           result: JobResult | None = None,
                           error: BulkOpsError | None = None) -> dict[str, Any]:
    """The notification of one run (notify.py): from the result, or, when the run raised,
    from what its journal holds (nothing, when it stopped before making one)."""
    job: JobRecord | None = result.job if result is not None else None
    counts: Counts | None = result.counts if result is not None else None
    html = result.html_path if result is not None else None
    if result is None and request.journal_path.is_file():
        try:
            async with await Journal.open(request.journal_path, lock=False) as journal:
                job = await journal.job(CSV_JOB)
                counts = await journal.counts(CSV_JOB)
        except BulkOpsError:
            pass  # the journal is the error (damaged, another schema): the payload says so
        if (path := report_path_for(request.journal_path, CSV_JOB, "html")).is_file() and \
                path.stat().st_mtime >= time.time() - (time.monotonic() - started):
            html = path  # written by this run
    exit_code = int(result.exit_code) if result is not None else int(
        error.exit_code if error is not None else ExitCode.INTERNAL)
    payload: dict[str, Any] = {
        "event": "finished",
        "job": job.name if job else request.name,
        "kind": (job.kind if job else request.kind).value,
        "state": job.state.value if job else "not started",
        "exit_code": exit_code,
        "counts": ({s.value: counts.get(s) for s in ItemState} | {"rejected": counts.rejected,
                   "total": counts.total}) if counts is not None else {},
        "started_at": started_at,
        "ended_at": now(),
        "duration_s": round(time.monotonic() - started, 3),
        "journal": str(request.journal_path),
        "report": str(result.report_path) if result is not None and result.report_path else None,
        "html": str(html) if html else None,
        "error": None if error is None else str(error),
    }
    payload["text"] = summary_text(payload)
    return payload


async def _run_job(
    request: JobRequest,
    settings: RunSettings,
    api_key: Secret,
    *,
    interactive: bool,
    confirm: Confirm | None,
    dry_run: bool,
    plan_output: Path | None,
    force_output: bool,
    inputs: Inputs,
) -> JobResult:
    if plan_output is not None and not dry_run:  # else the job would run for real, unplanned
        raise InputError("--plan-output goes with --dry-run: add --dry-run to write a plan and "
                         "send nothing, or drop --plan-output to run the job")
    if force_output and plan_output is None:
        raise InputError("--force of run goes with --dry-run --plan-output (it lets the plan "
                         "replace a file bulkops did not write); drop it")
    if dry_run:
        return await plan_job(request, settings, api_key, output=plan_output, force=force_output,
                              inputs=inputs)
    started = time.monotonic()
    client = make_client(settings, api_key)  # refuses an unsafe base URL before anything is written
    journal, created = await _open_or_create(request, settings)
    try:
        with _api_errors(settings.base_url, "Then run the same command again once the API "
                         "answers."):
            async with client:
                try:
                    await _load(journal, request, settings, client, created)
                except BaseException:
                    if created:
                        await journal.discard()
                    raise
                before = await journal.job(CSV_JOB)
                if request.kind is Kind.MIGRATE:
                    await freeze_migrations(journal, CSV_JOB, client,
                                            short_codes=not settings.leave_short_codes)
                result = await execute(journal, CSV_JOB, client, settings, interactive=interactive,
                                       confirm=confirm, started=started)
                return await _not_on_account(journal, await _explain(journal, result, before))
    finally:
        await journal.close()


async def _explain(journal: Journal, result: JobResult, before: JobRecord) -> JobResult:
    """Say what a success that changed nothing means: an empty migrate, a job already done
    (and how to run it anew); before what the run itself has to say (failed rows...)."""
    if result.idle:
        return result  # it says what it is (a rolled-back job)
    notes: list[str] = []
    if before.state is JobState.FINISHED:
        text = (f"the job had already finished ({before.updated_at}): nothing was sent; the "
                "counts are the job's. A journal records one run of its CSV: ")
        if date.today().isoformat() in str(journal.path):  # {date} in the path: today's
            text += ("this is today's journal, so tomorrow's run starts a new job; to run it "
                     "anew today, pass another --journal")
        else:
            text += (f"to run it anew (a nightly `set` job repairing drift, say), give the run a "
                     f"journal of its own: another --journal, or one with {{date}} in its path "
                     f"(--journal '{before.name}-{{date}}.db', or journal = "
                     f"\"{before.name}-{{date}}.db\" in the job file) so each day starts a new job")
        notes.append(text)
    elif result.job.kind is Kind.MIGRATE:
        codes = {line: n for line, _, n in await journal.migration_short_codes(CSV_JOB)}
        empty = [(line, source, "" if codes.get(line) is None else " and 0 short codes")
                 for line, source, listed in await journal.migration_counts(CSV_JOB)
                 if not listed and not codes.get(line)]
        names = await journal.profile_names()
        if empty and result.counts.total == 0:
            notes.append("nothing to do: " + "; ".join(
                f"line {line}: profile {_shown(source, names)} has 0 numbers{also}"
                for line, source, also in empty))
        elif empty:
            notes.append("; ".join(f"line {line}: profile {_shown(source, names)} has 0 "
                                   f"numbers{also}; nothing moved from it"
                                   for line, source, also in empty))
    if result.message:
        notes.append(result.message)
    result.message = "\n".join(notes) or None
    return result


def _shown(profile_id: str, names: Mapping[str, str]) -> str:
    """A profile as the operator wrote it: by name when the job named it so."""
    name = names.get(profile_id)
    return f"{name!r} ({profile_id})" if name else profile_id


async def _not_on_account(journal: Journal, result: JobResult, *, planned: bool = False,
                          ) -> JobResult:
    """Say what numbers the API does not know mean: all of them, most likely a key of
    another account; some, numbers to check. They fail (a plan: would fail) unsent."""
    if result.idle or not (unknown := await journal.not_on_account_count(CSV_JOB)):
        return result
    total = result.counts.total
    fail = "a run fails them without sending a request" if planned else \
        "they failed without a request (see the report)"
    if unknown == total:
        text = (f"none of the {total:,} numbers is on the account of this API key: most likely "
                "the key is of another account or of a sub-account, or --base-url points at "
                f"another API; {fail}. `bulkops export --output -` lists the numbers this key "
                "sees")
    else:
        text = (f"{unknown:,} of the {total:,} numbers are not on the account of this API key; "
                f"{fail}: check those numbers")
    result.message = text if result.message is None else f"{result.message}\n{text}"
    return result


async def plan_job(request: JobRequest, settings: RunSettings, api_key: Secret,
                   *, output: Path | None = None, force: bool = False,
                   inputs: Inputs = ()) -> JobResult:
    """Read the current state of every number and say what a run would do; write nothing.

    ``output`` may not be the job's CSV or job file, one of ``inputs`` (the key file), a
    journal, or a file bulkops did not write (unless ``force``): refused before any request."""
    started = time.monotonic()
    output = output or request.csv_path.with_name(request.csv_path.stem + ".plan.csv")
    if str(output) == "-":
        raise InputError("a plan is written to a file, not to stdout: give --output a path "
                         "(the summary is printed here either way)")
    # Before any request; an earlier plan at ``output`` stays as it was unless this one is made.
    plan_file = AtomicFile(output, "plan", "--output / --plan-output", force=force, inputs=[
        ("the job's CSV", request.csv_path), ("the job file", request.job_file), *inputs])
    try:
        client = make_client(settings, api_key)
        with tempfile.TemporaryDirectory(prefix="bulkops-plan-") as tmp:
            scratch = JobRequest(request.kind, request.csv_path, Path(tmp) / "plan.db",
                                 request.name, request.job_file, request.profile_id)
            journal, _ = await _open_or_create(scratch, settings, scratch=True)
            try:
                with _api_errors(settings.base_url, "Nothing was written and a plan keeps no "
                                 "journal: run the same command again once the API answers."):
                    async with client:
                        await _load(journal, scratch, settings, client, True)
                        if request.kind is Kind.MIGRATE:
                            await freeze_migrations(journal, CSV_JOB, client,
                                                    short_codes=not settings.leave_short_codes)
                        await snapshot_pending(journal, CSV_JOB, client, settings, StopSignal())
                        summary = await write_plan_csv(journal, CSV_JOB, plan_file.handle,
                                                       request.kind)
                        plan_file.commit()
                        await name_targets(summary, journal, client)
                        job = await journal.job(CSV_JOB)
                        counts = await journal.counts(CSV_JOB)
                        stats = client.stats.as_dict()
                    result = JobResult(None, job, counts, plan=summary, plan_path=output,
                                       elapsed=time.monotonic() - started, requests=stats)
                    result = await _not_on_account(journal, await _explain(journal, result, job),
                                                   planned=True)
            finally:
                await journal.close()
    finally:
        plan_file.abandon()  # after a commit: nothing left to remove
    return result


@dataclass(frozen=True)
class ValidateResult:
    report: LoadReport
    profiles_checked: int  # profiles found on the account; 0 when none was asked about


async def validate_file(
    kind: Kind,
    csv_path: Path,
    *,
    default_profile_id: str | None,
    default_region: str,
    settings: RunSettings | None = None,
    api_key: Secret | None = None,
) -> ValidateResult:
    """`bulkops validate`: every check a run makes before writing, in a scratch journal.

    Profiles are checked against the account only when a key is given; any API failure
    raises (the result never claims a check that did not happen).
    """
    client = None if api_key is None else make_client(settings or RunSettings(), api_key)
    base_url = (settings or RunSettings()).base_url
    with tempfile.TemporaryDirectory(prefix="bulkops-validate-") as tmp:
        # A scratch journal: no hash of the CSV (nothing will resume it); read_rows says
        # what is wrong with a missing, unreadable or folder path.
        journal = await Journal.create(
            Path(tmp) / "validate.db", kind=kind, name=csv_path.stem, job_file=None,
            csv_path=str(csv_path), csv_sha256=None,
            default_profile_id=default_profile_id, settings={},
        )
        try:
            if client is None:  # offline: profile names stay unresolved (load_rows warns)
                report = await load_rows(journal, CSV_JOB, kind, csv_path,
                                         default_profile_id=default_profile_id,
                                         default_region=default_region, skip_invalid=False)
                return ValidateResult(report, 0)
            with _api_errors(base_url, "The CSV itself may be valid; its profiles were not "
                             "checked: run again once the API answers, or pass --offline to "
                             "check the file alone."):
                async with client:
                    # With the client, profile names are resolved as a run would resolve them.
                    # ...and every target profile checked, in the same pass as the rows.
                    report = await load_rows(journal, CSV_JOB, kind, csv_path,
                                             default_profile_id=default_profile_id,
                                             default_region=default_region, skip_invalid=False,
                                             client=client)
        finally:
            await journal.close()
    return ValidateResult(report, report.profiles_checked)


async def list_profiles(settings: RunSettings, api_key: Secret) -> list[ProfileCount]:
    """`bulkops profiles`: every messaging profile, with how many numbers each holds."""
    client = make_client(settings, api_key)
    with _api_errors(settings.base_url, "Run the same command again once the API answers."):
        async with client:
            return await profiles_with_counts(client)


async def export_numbers(settings: RunSettings, api_key: Secret, output: Path | None,
                         query: ExportQuery, fmt: str = "csv", *,
                         interactive: bool = False, force: bool = False,
                         inputs: Inputs = ()) -> ExportResult:
    """`bulkops export`: the account's numbers (``query`` selects) as a job CSV or JSON;
    ``output`` None writes to stdout. A journal, one of ``inputs`` (the key file) or a file
    bulkops did not write (unless ``force``) is refused as ``output`` before any request."""
    query.check()  # a bad filter is an input error before any request
    client = make_client(settings, api_key)
    with _api_errors(settings.base_url, "No file was written: run the same command again once "
                     "the API answers."):
        async with client:
            return await export(client, output, query, fmt, interactive=interactive,
                                force=force, inputs=inputs)

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
from pathlib import Path
from typing import Any

from bulkops.account import ExportQuery, ExportResult, ProfileCount, export, profiles_with_counts
from bulkops.config import RunSettings, Secret
from bulkops.errors import ApiError, ApiUnreachable, InputError, JournalError
from bulkops.execute import (
    Confirm, JobResult, execute, make_client, report_path_for, rolled_back, snapshot_pending,
)
from bulkops.input.loading import (
    LoadReport, check_profiles, freeze_migrations, load_rows, profiles_in_use,
)
from bulkops.input.rows import file_sha256
from bulkops.journal.records import CSV_JOB, JobRecord
from bulkops.journal.states import ItemState, JobState
from bulkops.journal.store import Journal
from bulkops.models import Counts, Kind
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
    """The per-row report of ``job_id`` (default: the latest job that ran); ``output`` "-"
    is standard output."""
    _require(journal_path)
    async with await Journal.open(journal_path, lock=False) as journal:
        chosen = (await journal.latest_ran() if job_id is None else await _job(journal, job_id)).id
        target = output or report_path_for(journal_path, chosen, fmt)
        return await write_report(journal, chosen, target, fmt)


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
                return await execute(journal, rollback_id, client, run_settings,
                                     interactive=interactive, confirm=confirm, started=started)


async def _already_rolled_back(journal: Journal, parent: JobRecord, force: bool) -> JobResult | None:
    """A finished rollback that left nothing behind: a second one would change nothing."""
    finished = [j for j in await journal.rollbacks_of(parent.id) if j.state is JobState.FINISHED]
    if not finished:
        return None
    last = finished[-1]
    counts = await journal.counts(last.id)
    failed, left = counts.get(ItemState.FAILED), counts.get(ItemState.SKIPPED)
    if failed or (left and force):
        return None  # numbers it could not (or would not) put back: a new rollback tries them
    text = (f"job #{parent.id} ({parent.name}) was already rolled back by job #{last.id} "
            f"({last.updated_at}): nothing to change")
    if left:
        text += (f"; it left {left} number(s) alone (changed since the job, or already back): "
                 "pass --force to roll back the ones changed since too")
    return JobResult(journal.path, last, counts, idle=True, message=text)


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
            job = await journal.job(CSV_JOB)
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
    await check_profiles(client, request.csv_path,
                         await profiles_in_use(journal, CSV_JOB, request.kind, report))
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
) -> JobResult:
    """Validate, snapshot and run a job, or resume it from its journal."""
    if plan_output is not None and not dry_run:  # else the job would run for real, unplanned
        raise InputError("--plan-output goes with --dry-run: add --dry-run to write a plan and "
                         "send nothing, or drop --plan-output to run the job")
    if dry_run:
        return await plan_job(request, settings, api_key, output=plan_output)
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
                return await _explain(journal, result, before)
    finally:
        await journal.close()


async def _explain(journal: Journal, result: JobResult, before: JobRecord) -> JobResult:
    """Say what a success that changed nothing means: an empty migrate, a job already done."""
    if result.message is not None:
        return result
    if before.state is JobState.FINISHED:
        result.message = (f"the job had already finished ({before.updated_at}): nothing was "
                          "sent; the counts are the job's")
    elif result.job.kind is Kind.MIGRATE:
        codes = {line: n for line, _, n in await journal.migration_short_codes(CSV_JOB)}
        empty = [(line, source, "" if codes.get(line) is None else " and 0 short codes")
                 for line, source, listed in await journal.migration_counts(CSV_JOB)
                 if not listed and not codes.get(line)]
        if empty and result.counts.total == 0:
            result.message = "nothing to do: " + "; ".join(
                f"line {line}: profile {source} has 0 numbers{also}" for line, source, also in empty)
        elif empty:
            result.message = "; ".join(f"line {line}: profile {source} has 0 numbers{also}; "
                                       "nothing moved from it" for line, source, also in empty)
    return result


async def plan_job(request: JobRequest, settings: RunSettings, api_key: Secret,
                   *, output: Path | None = None) -> JobResult:
    """Read the current state of every number and say what a run would do; write nothing."""
    started = time.monotonic()
    output = output or request.csv_path.with_name(request.csv_path.stem + ".plan.csv")
    if str(output) == "-":
        raise InputError("a plan is written to a file, not to stdout: give --output a path "
                         "(the summary is printed here either way)")
    # Before any request; an earlier plan at ``output`` stays as it was unless this one is made.
    plan_file = AtomicFile(output, "plan", "--output / --plan-output")
    try:
        client = make_client(settings, api_key)
        with tempfile.TemporaryDirectory(prefix="bulkops-plan-") as tmp:
            scratch = JobRequest(request.kind, request.csv_path, Path(tmp) / "plan.db",
                                 request.name, request.job_file, request.profile_id)
            journal, _ = await _open_or_create(scratch, settings)
            try:
                with _api_errors(settings.base_url, "Nothing was written and a plan keeps no "
                                 "journal: run the same command again once the API answers."):
                    async with client:
                        await _load(journal, scratch, settings, client, True)
                        if request.kind is Kind.MIGRATE:
                            await freeze_migrations(journal, CSV_JOB, client,
                                                    short_codes=not settings.leave_short_codes)
                        await snapshot_pending(journal, CSV_JOB, client, settings, StopSignal())
                        summary = await write_plan_csv(journal, CSV_JOB, plan_file.handle)
                        plan_file.commit()
                        job = await journal.job(CSV_JOB)
                        counts = await journal.counts(CSV_JOB)
                        stats = client.stats.as_dict()
                    result = JobResult(None, job, counts, plan=summary, plan_path=output,
                                       elapsed=time.monotonic() - started, requests=stats)
                    result = await _explain(journal, result, job)
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
                    report = await load_rows(journal, CSV_JOB, kind, csv_path,
                                             default_profile_id=default_profile_id,
                                             default_region=default_region, skip_invalid=False,
                                             client=client)
                    uses = await profiles_in_use(journal, CSV_JOB, kind, report)
                    if uses:
                        await check_profiles(client, csv_path, uses)
        finally:
            await journal.close()
    return ValidateResult(report, len(uses))


async def list_profiles(settings: RunSettings, api_key: Secret) -> list[ProfileCount]:
    """`bulkops profiles`: every messaging profile, with how many numbers each holds."""
    client = make_client(settings, api_key)
    with _api_errors(settings.base_url, "Run the same command again once the API answers."):
        async with client:
            return await profiles_with_counts(client)


async def export_numbers(settings: RunSettings, api_key: Secret, output: Path | None,
                         query: ExportQuery, fmt: str = "csv", *,
                         interactive: bool = False) -> ExportResult:
    """`bulkops export`: the account's numbers (``query`` selects) as a job CSV or JSON;
    ``output`` None writes to stdout."""
    query.check()  # a bad filter is an input error before any request
    client = make_client(settings, api_key)
    with _api_errors(settings.base_url, "No file was written: run the same command again once "
                     "the API answers."):
        async with client:
            return await export(client, output, query, fmt, interactive=interactive)

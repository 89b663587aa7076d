"""The `bulkops` command: each subcommand parses its options, calls one library function
(bulkops/jobs.py) and prints what it did.

``COMMANDS`` is the whole command line: one entry per subcommand (its help, its options,
its handler). Every expected failure is a ``BulkOpsError``, shown as ``Error: ...`` with its
documented exit code; a traceback means a bug. The sandbox is imported only by the
commands that serve it (``sandbox``, ``demo``), so `bulkops run` never loads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import anyio

from bulkops.config import (
    API_KEY_ENV, BASE_URL_ENV, LIMITS, RunSettings, Secret, WriteMode, check_limits,
    resolve_api_key, resolve_base_url,
)
from bulkops.errors import BulkOpsError, ExitCode, InputError
from bulkops.execute import JobResult
from bulkops.input.header import REQUIRED_COLUMNS
from bulkops.input.jobfile import JobFile, load_job_file, render_journal_path
from bulkops.jobs import JobRequest, run_job
from bulkops.journal.records import CSV_JOB
from bulkops.journal.sqlite import now
from bulkops.models import Kind
from bulkops.plan import Action, PlanSummary
from bulkops.progress import add_secret_filter, setup_logging
from bulkops.telnyx.retry import RetryPolicy

from . import __version__

DESCRIPTION = ("Move Telnyx phone numbers between messaging profiles in bulk, from a CSV:\n"
               "validate, plan, run (resumable), report, retry and roll back.")

EPILOG = f"""exit codes:
  0    done (or nothing to do, said on the output)
  1    a bug in bulkops: please report it
  2    bad input or usage (CSV, job file, flags, a missing journal, a journal folder
       that cannot be written); nothing was sent
  3    the job finished but rows failed, were rejected, or drifted: see the report;
       or it stopped on a failure storm (journal kept: retry-failed once fixed);
       for plan and run --dry-run: rows were rejected or are not on the account
  4    the API refused the key (401/403) or answered a fatal error
  5    the journal is in use by another bulkops process
  6    the journal is damaged, belongs to another CSV, or is of another schema
  7    the API could not be reached or kept failing (check --base-url and the network)
       or TLS failed (certificate not verified, handshake refused)
  130  interrupted (Ctrl-C, SIGTERM) or not confirmed; run the same command to resume

environment:
  {API_KEY_ENV}       the API key (or --api-key-file); never written anywhere
  {BASE_URL_ENV}  the API base URL (or --base-url; default https://api.telnyx.com/v2)

`bulkops COMMAND --help` lists the options of one command; `bulkops demo` shows a whole job.
"""

KINDS = [Kind.ASSIGN.value, Kind.UNASSIGN.value, Kind.MIGRATE.value, Kind.SET.value]


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


# ---- options shared by several commands -------------------------------------------------

def _add_connection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--base-url", help=f"API base URL (default: ${BASE_URL_ENV}, else https://api.telnyx.com/v2)")
    g.add_argument("--api-key-file", type=Path, help=f"read the API key from this file instead of ${API_KEY_ENV}")
    g.add_argument("--insecure", action="store_true", help="allow a plain http:// base URL that is not loopback")
    g.add_argument("--timeout", type=str, default=None, help="seconds per request (default 30)")


def _add_engine(p: argparse.ArgumentParser) -> None:
    """Pacing and writes: for the commands that write (run, retry-failed, rollback)."""
    _add_pacing(p)
    g = p.add_argument_group("writes")
    g.add_argument("--max-consecutive-failures", type=str, metavar="N",
                   help="stop when the last N writes all failed permanently with the same Telnyx "
                        "code (default 50; 0 = never)")
    g.add_argument("--verify", action="store_true", default=None, help="re-read every changed number at the end")
    g.add_argument("--mode", choices=["auto", "bulk", "patch"],
                   help="writes by bulk orders or one PATCH per number (default auto: orders from --bulk-min writes on)")
    g.add_argument("--bulk-size", type=str, help="numbers per bulk order (default 1000)")
    g.add_argument("--bulk-min", type=str, help="auto mode: use orders from this many writes on (default 100)")
    g.add_argument("--order-timeout", type=str, help="seconds an order may stay pending before it is read back (default 900)")
    g.add_argument("--yes", "-y", action="store_true", help="never ask for confirmation")
    _add_output(g)


def _add_pacing(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """How requests go out: for every command that reads or writes numbers."""
    g = p.add_argument_group("pacing")
    g.add_argument("--concurrency", type=str, help="requests in flight at most (default 32)")
    g.add_argument("--rate", type=str, help="ceiling in requests/s (default: as fast as the server's limits allow)")
    g.add_argument("--max-attempts", type=str, help="attempts per row on transient errors (default 5)")
    g.add_argument("--max-retry-seconds", type=str, help="time one row may spend retrying (default 300)")
    g.add_argument("--max-server-wait", type=str, help="longest 429 wait honoured, seconds (default 900)")
    return g


def _add_output(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument("--json", action="store_true",
                   help="print JSON Lines on stdout: one compact object per line, the same shape "
                        "on success and error")
    _add_verbose(p)


def _add_verbose(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument("--verbose", "-v", action="store_true", help="log debug detail to stderr")


def _journal_path(text: str) -> Path:
    """--journal as the job file's ``journal`` is read: ``{date}`` becomes today
    (YYYY-MM-DD), so a nightly cron line gets a new journal, and so a new job, each day."""
    try:
        return render_journal_path(text, Path(), date.today())
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_job(p: argparse.ArgumentParser, *, journal: bool = True, skip_invalid: bool = True) -> None:
    p.add_argument("job_file", nargs="?", type=Path, help="a job file (jobs/*.toml)")
    p.add_argument("--kind", choices=KINDS, help="what the CSV asks for (or `kind` in the job file)")
    p.add_argument("--csv", type=Path, help="the CSV that defines the job")
    p.add_argument("--profile-id", help="assign: the profile (id or name) for rows without one")
    if journal:  # a plan and a validation keep no journal
        p.add_argument("--journal", type=_journal_path,
                       help="journal file (default: next to the CSV); {date} in it becomes today")
    p.add_argument("--default-region", help="region for numbers without a country code (default US)")
    if skip_invalid:  # validate reports every invalid row anyway
        p.add_argument("--skip-invalid", action="store_true", default=None,
                       help="journal invalid rows as rejected and run the rest")
        p.add_argument("--leave-short-codes", action="store_true", default=None,
                       help="migrate: leave the source profiles' short codes where they are "
                            "(default: they move with the numbers)")


def _add_journal(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--journal", type=_journal_path, required=True,
                   help=f"the journal {what}; {{date}} in it becomes today")


# ---- what --help of run, plan and validate says about the CSV and the files ----------------

_COLUMN_NOTES = {
    Kind.ASSIGN: "messaging_profile_id: a profile's UUID or its name; the column may be left "
                 "out (or a cell empty) when --profile-id gives the profile",
    Kind.UNASSIGN: "every listed number is taken off its profile",
    Kind.MIGRATE: "profiles (UUIDs or names): every number of the first moves to the second",
    Kind.SET: "messaging_profile_id: the profile each number must be on; an empty cell takes "
              "the number off its profile",
}


def _columns_help() -> str:
    """The columns each kind needs, from the header checks' own table (so --help stays true)."""
    lines = ["CSV columns (the first line names them; other columns are kept in the report):"]
    for kind in (Kind.ASSIGN, Kind.UNASSIGN, Kind.MIGRATE, Kind.SET):
        lines.append(f"  {kind.value:<9} {', '.join(REQUIRED_COLUMNS[kind])}")
        lines += textwrap.wrap(_COLUMN_NOTES[kind], 80, initial_indent=" " * 12,
                               subsequent_indent=" " * 12)
    return "\n".join(lines)


_RUN_FILES = """files:
  journal   --journal, else <csv name>.<kind>.journal.db next to the CSV; {date} in
            --journal becomes today (a new journal, and so a new job, each day)
  report    <journal name without .db>.report.csv next to it, written when the job
            finishes (and when a failure storm or a fatal error stops it);
            `bulkops report --journal J` writes it again at any time
  html      <journal name without .db>.report.html beside it, the run at a glance,
            written with it (`bulkops report --format html` writes it again)"""

_PLAN_FILES = """files:
  plan      --output, else <csv name>.plan.csv next to the CSV (for run --dry-run:
            --plan-output); a plan keeps no journal and writes no report"""

_VALIDATE_FILES = """files:
  none      validate writes nothing: it prints what it found (and checks the profiles
            against the account when a key is set)"""


def _epilog(p: argparse.ArgumentParser, files: str) -> None:
    p.epilog = f"{_columns_help()}\n\n{files}"
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def _add_force(p: argparse.ArgumentParser, option: str) -> None:
    # dest "overwrite": rollback's --force (RunSettings.force) is another thing
    p.add_argument("--force", dest="overwrite", action="store_true",
                   help=f"let {option} replace a file bulkops did not write (never a journal "
                        "or an input of the job)")


# ---- each command's options ---------------------------------------------------------------

def _run_arguments(p: argparse.ArgumentParser) -> None:
    _epilog(p, _RUN_FILES)
    _add_job(p)
    _add_connection(p)
    _add_engine(p)
    p.add_argument("--dry-run", action="store_true", help="same as `bulkops plan`: write nothing")
    p.add_argument("--plan-output", type=Path, help="with --dry-run: where to write the plan CSV")
    p.add_argument("--notify", metavar="URL",
                   help="when the run ends, whatever the outcome, POST its summary as JSON here "
                        "(https, or http to loopback, any http host with --insecure; or `notify` "
                        "in the job file)")
    _add_force(p, "--plan-output")


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    _epilog(p, _PLAN_FILES)
    _add_job(p, journal=False)
    _add_connection(p)
    g = _add_pacing(p)
    g.add_argument("--yes", "-y", action="store_true", help="a plan never asks (taken, as by run)")
    _add_output(g)
    p.add_argument("--output", type=Path, help="plan CSV (default: <csv>.plan.csv)")
    _add_force(p, "--output")


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    _epilog(p, _VALIDATE_FILES)
    _add_job(p, journal=False, skip_invalid=False)
    _add_connection(p)
    p.add_argument("--offline", action="store_true", help="do not check profiles against the account")
    _add_output(p)


def _status_arguments(p: argparse.ArgumentParser) -> None:
    _add_journal(p, "to read (a run may hold it meanwhile)")
    p.add_argument("--watch", action="store_true",
                   help="follow the run in progress (another process's) until it ends: progress, "
                        "rate against the limit, time left, orders open")
    _add_output(p)


def _report_arguments(p: argparse.ArgumentParser) -> None:
    _add_journal(p, "to read (a run may hold it meanwhile)")
    p.add_argument("--output", type=Path,
                   help="report file; - for standard output (default: next to the journal)")
    p.add_argument("--format", choices=["csv", "json", "html"], default="csv",
                   help="report format (default csv); html: the run at a glance, one "
                        "self-contained page (charts, failures, rows)")
    p.add_argument("--job", type=int, help="job id, as `bulkops status` lists them (default: the latest job that ran)")
    _add_force(p, "--output")
    _add_verbose(p)


def _retry_arguments(p: argparse.ArgumentParser) -> None:
    _add_journal(p, "of the job")
    p.add_argument("--job", type=int, help="job id whose failed rows to run again (default: the latest job that ran)")
    _add_connection(p)
    _add_engine(p)


def _rollback_arguments(p: argparse.ArgumentParser) -> None:
    _add_journal(p, "of the job to roll back")
    p.add_argument("--job", type=int, default=CSV_JOB, help="job id to roll back (default 1, the CSV's job)")
    p.add_argument("--force", action="store_true", help="also roll back numbers someone changed since the job")
    _add_connection(p)
    _add_engine(p)


def _account_limits(p: argparse.ArgumentParser) -> None:
    """`profiles` and `export` read the account through the same limiter and retry policy."""
    _add_connection(p)
    g = p.add_argument_group("limits")
    g.add_argument("--rate", type=str, help="ceiling in requests/s")
    g.add_argument("--max-attempts", type=str, help="attempts per request (default 5)")
    g.add_argument("--max-retry-seconds", type=str, help="time one request may retry (default 300)")
    g.add_argument("--max-server-wait", type=str, help="longest 429 wait honoured, seconds")
    _add_verbose(p)


def _profiles_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print JSON Lines on stdout: one compact object per line, the same shape "
                        "on success and error")
    _account_limits(p)


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="the file to write, or - for stdout")
    p.add_argument("--profile", action="append", default=[], metavar="ID_OR_NAME",
                   help="only the numbers of this profile (repeatable)")
    p.add_argument("--unassigned", action="store_true", help="the numbers on no profile")
    p.add_argument("--type", choices=["longcode", "tollfree", "shortcode"],
                   help="only numbers of this type")
    p.add_argument("--contains", metavar="DIGITS", help="numbers containing these digits")
    p.add_argument("--format", choices=["csv", "json"], default="csv", help="file format (default csv)")
    _add_force(p, "--output")
    _account_limits(p)


def _sandbox_arguments(p: argparse.ArgumentParser) -> None:
    from bulkops.sandbox.cli import add_arguments

    add_arguments(p)


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", type=Path, help="keep journals and reports here (default: a temp dir)")
    _add_verbose(p)


# ---- settings, request, key -------------------------------------------------------------------

def _settings(args: argparse.Namespace, base: Mapping[str, Any] | None = None) -> RunSettings:
    """Flags first, then ``base`` (the job file, or the settings the journal recorded for the
    job), then the defaults."""
    def pick(name: str, default: Any) -> Any:
        value = getattr(args, name, None)
        if value is not None:
            return value
        if base is not None and base.get(name) is not None:
            return base[name]
        return default

    # Every number given as a flag, checked at once through the one table (config.LIMITS);
    # numbers from a job file were checked as it was loaded, naming its lines.
    flags, problems = check_limits({key: getattr(args, key, None) for key in LIMITS})
    if problems:
        raise InputError("\n".join(problems) if len(problems) == 1 else
                         f"{len(problems)} flags are wrong; nothing was sent:\n  "
                         + "\n  ".join(problems))
    vars(args).update(flags)
    policy = RetryPolicy(max_attempts=pick("max_attempts", 5),
                         max_elapsed=pick("max_retry_seconds", 300.0))
    return RunSettings(
        base_url=resolve_base_url(getattr(args, "base_url", None)),
        concurrency=pick("concurrency", 32),
        rate=pick("rate", None),
        timeout=pick("timeout", 30.0),
        max_server_wait=pick("max_server_wait", 900.0),
        max_consecutive_failures=pick("max_consecutive_failures", 50),
        insecure=bool(getattr(args, "insecure", False)),
        verify=bool(pick("verify", False)),
        skip_invalid=bool(pick("skip_invalid", False)),
        default_region=pick("default_region", "US"),
        assume_yes=bool(getattr(args, "yes", False)),
        force=bool(getattr(args, "force", False)),
        policy=policy,
        mode=WriteMode(pick("mode", "auto")),
        bulk_size=pick("bulk_size", 1000),
        bulk_min=pick("bulk_min", 100),
        order_timeout=pick("order_timeout", 900.0),
        leave_short_codes=bool(pick("leave_short_codes", False)),
    )


def _job_and_settings(args: argparse.Namespace) -> tuple[JobRequest, JobFile | None, RunSettings]:
    """The job and its settings, every problem of the job file and of the flags in one error."""
    problems: list[str] = []
    found: tuple[JobRequest, JobFile | None] | None = None
    settings: RunSettings | None = None
    try:
        found = _request(args)
    except InputError as err:
        problems.append(str(err))
    try:
        settings = _settings(args, _job_fields(found[1] if found else None))
    except InputError as err:
        problems.append(str(err))
    if problems or found is None or settings is None:
        raise InputError("\n".join(problems))
    return found[0], found[1], settings


def _job_fields(job: JobFile | None) -> Mapping[str, Any] | None:
    return None if job is None else {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}


def _request(args: argparse.Namespace) -> tuple[JobRequest, JobFile | None]:
    job = load_job_file(args.job_file) if getattr(args, "job_file", None) else None
    kind_text = args.kind or (job.kind.value if job else None)
    if kind_text is None:
        raise InputError("say what to do: --kind assign|unassign|migrate|set, or give a job file")
    kind = Kind(kind_text)
    if job is not None and args.kind and job.kind is not kind:
        raise InputError(f"{job.path}: the job file says kind = {job.kind.value!r} but --kind is {kind.value}")
    csv_path = args.csv or (job.csv if job else None)
    if csv_path is None:
        raise InputError("say which CSV: --csv FILE, or `csv = ...` in the job file")
    journal = getattr(args, "journal", None) or (job.journal_path(date.today()) if job else None) \
        or csv_path.with_name(f"{csv_path.stem}.{kind.value}.journal.db")
    name = job.name if job else csv_path.stem
    profile = args.profile_id or (job.profile_id if job else None)
    return JobRequest(kind, csv_path, journal, name, job.path if job else None, profile), job


def _key(args: argparse.Namespace) -> Secret:
    """The API key, resolved after the arguments are known to be usable (input errors first)."""
    key = resolve_api_key(args.api_key_file)
    add_secret_filter(key.reveal())
    return key


def _key_inputs(args: argparse.Namespace) -> list[tuple[str, Path | str | None]]:
    """The key file is an input no output may replace."""
    return [("the API key file", getattr(args, "api_key_file", None))]


def _maybe_key(args: argparse.Namespace) -> Secret | None:
    """The key if there is one: no key means an offline check, but a key file named and
    unreadable is an error (the check the operator asked for would silently not run)."""
    if args.api_key_file is None and not os.environ.get(API_KEY_ENV, "").strip():
        return None
    return _key(args)


# ---- output ---------------------------------------------------------------------------------------

_STARTED_AT = now()  # when this command started (set again by main): every JSON line says it
_USAGE_ERROR: list[str] = []  # what the parser refused, for the JSON line of a usage error


def _json_line(command: str | None, payload: Mapping[str, Any] | None = None, *,
               exit_code: int = 0, error: str | None = None) -> None:
    """One JSON Lines record on stdout. Every record has the same envelope: command, ok,
    exit_code, error (None on success), started_at, ended_at; then the command's own fields."""
    envelope = {"command": command, "ok": exit_code == 0,
                "exit_code": exit_code, "error": error, "started_at": _STARTED_AT,
                "ended_at": now()}
    print(json.dumps(dict(payload or {}) | envelope, separators=(",", ":")), flush=True)

def _confirm(json_mode: bool) -> Callable[[PlanSummary], Awaitable[bool]] | None:
    if not _interactive() or json_mode:
        return None  # cron and pipes never wait for an answer

    def question(text: str) -> str:  # on the terminal (stderr), even when stdout is a file
        sys.stderr.write(text)
        sys.stderr.flush()
        return sys.stdin.readline()

    async def ask(summary: PlanSummary) -> bool:
        _print_plan(summary)
        answer = await anyio.to_thread.run_sync(question, summary.question())
        return answer.strip().lower() in ("y", "yes")

    return ask


def _print_plan(summary: PlanSummary) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="plan")
    table.add_column("action")
    table.add_column("numbers" if not summary.short_codes else "rows", justify="right")
    for action, count in summary.rows():
        if count:
            table.add_row(action, str(count))
        if action == Action.CHANGE.value:  # each target profile, by name, on its own line
            for name, moved in summary.target_rows():
                table.add_row(Text(f"  to {name}"), str(moved))  # a name is not markup
    Console(stderr=True).print(table)


def _print_result(result: JobResult, json_mode: bool, command: str = "run") -> None:
    if json_mode:
        _json_line(command, result.as_dict(), exit_code=int(result.exit_code))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    if result.plan_path and result.counts.rejected:  # a plan's own table is _print_plan's
        console.print(f"{result.counts.rejected} row(s) rejected: see the plan", markup=False)
    elif not result.idle and not result.plan_path:
        table = Table(title=f"{result.job.name} ({result.job.kind.value})")
        table.add_column("state")
        table.add_column("rows" if result.plan and result.plan.short_codes else "numbers",
                         justify="right")
        for state, count in result.as_dict()["counts"].items():
            if count:
                table.add_row(state, str(count))
        console.print(table)
    if result.message:
        console.print(result.message, markup=False)
    if result.plan_path:
        console.print(f"plan written to {result.plan_path}; nothing was sent", markup=False)
    if result.report_path:
        console.print(f"report: {result.report_path}", markup=False)
    if result.html_path:
        console.print(f"html report: {result.html_path}", markup=False)
    if result.drift:
        console.print(f"[red]{len(result.drift)} number(s) drifted since they were written[/]")


# ---- handlers -------------------------------------------------------------------------------------

async def _cmd_run(args: argparse.Namespace) -> int:
    request, job, settings = _job_and_settings(args)
    key = _key(args)
    result = await run_job(request, settings, key, interactive=_interactive() and not args.json,
                           confirm=_confirm(args.json), dry_run=args.dry_run,
                           plan_output=args.plan_output, force_output=args.overwrite,
                           inputs=_key_inputs(args),
                           notify=args.notify or (job.notify if job else None))
    _print_result(result, args.json)
    return int(result.exit_code)


async def _cmd_plan(args: argparse.Namespace) -> int:
    from bulkops.jobs import plan_job

    request, job, settings = _job_and_settings(args)
    result = await plan_job(request, settings, _key(args), output=args.output,
                            force=args.overwrite, inputs=_key_inputs(args))
    if not args.json and result.plan is not None:
        _print_plan(result.plan)
    _print_result(result, args.json, "plan")
    return int(result.exit_code)  # as `run --dry-run`: 3 when rows were rejected


async def _cmd_validate(args: argparse.Namespace) -> int:
    from bulkops.jobs import validate_file

    request, job, settings = _job_and_settings(args)
    key = None if args.offline else _maybe_key(args)
    result = await validate_file(request.kind, request.csv_path, default_profile_id=request.profile_id,
                                 default_region=settings.default_region, settings=settings, api_key=key)
    report = result.report
    if result.profiles_checked:
        checked = f"{result.profiles_checked} profile(s) checked against the account"
    elif key is not None:
        checked = "it names no profile: the API was not contacted"
    else:
        checked = "offline: profiles not checked" + ("" if args.offline else f"; set {API_KEY_ENV} to check them")
    text = f"{request.csv_path}: {report.rows} valid rows, {report.collapsed} duplicates collapsed, " \
           f"{report.warning_count} warnings ({checked})"
    if args.json:
        _json_line("validate", {"csv": str(request.csv_path), "rows": report.rows,
                                "collapsed": report.collapsed, "warnings": report.warning_count,
                                "profiles_checked": result.profiles_checked})
    else:
        print(text)
    return 0


async def _cmd_status(args: argparse.Namespace) -> int:
    from bulkops.jobs import job_history, job_status, status_dict
    from bulkops.report import summary_lines

    if args.watch:
        return await _watch(args)
    # One for the state as it truly is (the lock), one for when each job ran and what undid it.
    statuses, histories = await job_status(args.journal), await job_history(args.journal)
    if args.json:
        _json_line("status", {"jobs": [
            status_dict([s])["jobs"][0] | h.as_dict() for s, h in zip(statuses, histories)]})
        return 0
    for s, h in zip(statuses, histories):
        for line in summary_lines(h.job, h.counts, state=s.state):
            print(f"#{h.job.id} {line}")
        print(f"#{h.job.id} {h.ran_text()}; {h.effect_text()}")
        if stopped := s.stopped_text():
            print(f"#{h.job.id} {stopped}")
        if h.orders_open:
            print(f"#{h.job.id} bulk orders open: {h.orders_open} (polled again when the job resumes)")
    return 0


async def _watch(args: argparse.Namespace) -> int:
    from bulkops.history import WatchLine, watch

    def show(line: WatchLine) -> None:
        if args.json:
            _json_line("status", line.as_dict())
        else:
            print(line.text(), flush=True)

    if await watch(args.journal, show) is None:
        if args.json:
            _json_line("status", {"ended": True, "running": False})
        else:
            print(f"no run in progress in {args.journal}; `bulkops status --journal "
                  f"{args.journal}` shows its jobs")
    return 0


async def _cmd_report(args: argparse.Namespace) -> int:
    from bulkops.jobs import report_job

    result = await report_job(args.journal, args.output, args.format, args.job,
                              force=args.overwrite)
    if str(result.path) == "-":  # stdout is the report itself
        print(f"report: standard output ({result.rows} rows)", file=sys.stderr)
    else:
        print(f"report: {result.path} ({result.rows} rows)")
    return 0


async def _cmd_retry_failed(args: argparse.Namespace) -> int:
    from bulkops.jobs import retry_failed

    key = _key(args)
    result = await retry_failed(args.journal, lambda stored: _settings(args, stored), key, job_id=args.job,
                                interactive=_interactive() and not args.json, confirm=_confirm(args.json))
    _print_result(result, args.json, "retry-failed")
    return int(result.exit_code)


async def _cmd_rollback(args: argparse.Namespace) -> int:
    from bulkops.jobs import rollback

    key = _key(args)
    result = await rollback(args.journal, lambda stored: _settings(args, stored), key, job_id=args.job,
                            interactive=_interactive() and not args.json, confirm=_confirm(args.json))
    _print_result(result, args.json, "rollback")
    return int(result.exit_code)


async def _cmd_profiles(args: argparse.Namespace) -> int:
    from bulkops.jobs import list_profiles

    profiles = await list_profiles(_settings(args), _key(args))
    if args.json:
        _json_line("profiles", {"profiles": [{"id": p.id, "name": p.name, "numbers": p.numbers,
                                              "short_codes": list(p.short_codes)}
                                             for p in profiles]})
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(profiles)} messaging profiles")
    for column in ("id", "name", "numbers", "short codes"):
        table.add_column(column, justify="right" if column == "numbers" else "left")
    for p in profiles:
        table.add_row(p.id, p.name, str(p.numbers), " ".join(p.short_codes))
    Console().print(table)
    return 0


async def _cmd_export(args: argparse.Namespace) -> int:
    from bulkops.account import ExportQuery
    from bulkops.jobs import export_numbers

    output = None if args.output == "-" else Path(args.output)
    query = ExportQuery(tuple(args.profile), args.unassigned, args.type, args.contains)
    result = await export_numbers(_settings(args), _key(args), output, query, args.format,
                                  interactive=_interactive() and output is not None,
                                  force=args.overwrite, inputs=_key_inputs(args))
    if not result.complete:
        print("export: standard output was closed by its reader before the end; the export "
              "is incomplete", file=sys.stderr)
        return 0
    codes = f" and {result.short_codes} short codes" if result.short_codes else ""
    print(f"export: {result.path or 'stdout'} ({result.numbers} numbers{codes})", file=sys.stderr)
    return 0


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from bulkops.sandbox.cli import main as sandbox_main

    return sandbox_main(args)


async def _cmd_demo(args: argparse.Namespace) -> int:
    from bulkops.demo import run_demo

    return await run_demo(args.workdir)


def _async(handler: Callable[[argparse.Namespace], Awaitable[int]]) -> Callable[[argparse.Namespace], int]:
    return lambda args: anyio.run(handler, args, backend="asyncio")


# ---- the command table ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]
    lazy: bool = False  # options added only when this command runs: they import heavy modules


COMMANDS: dict[str, Command] = {
    "run": Command("validate, plan and run a job (again: resume it)", _run_arguments, _async(_cmd_run)),
    "plan": Command("show what a run would change; write nothing", _plan_arguments, _async(_cmd_plan)),
    "validate": Command("check a CSV (and its profiles, when a key is set); send nothing",
                        _validate_arguments, _async(_cmd_validate)),
    "status": Command("counts of a journal's jobs", _status_arguments, _async(_cmd_status)),
    "report": Command("per-row report of a journal's job", _report_arguments, _async(_cmd_report)),
    "retry-failed": Command("run the failed rows of a job again", _retry_arguments,
                            _async(_cmd_retry_failed)),
    "rollback": Command("put every number a job changed back on its prior profile",
                        _rollback_arguments, _async(_cmd_rollback)),
    "profiles": Command("list every messaging profile with its number count", _profiles_arguments,
                        _async(_cmd_profiles)),
    "export": Command("write the account's numbers as a CSV a job can run", _export_arguments,
                      _async(_cmd_export)),
    "sandbox": Command("serve a local Telnyx-like API for rehearsals and tests", _sandbox_arguments,
                       _cmd_sandbox, lazy=True),
    "demo": Command("run the sample jobs against an in-process sandbox", _demo_arguments,
                    _async(_cmd_demo)),
}


class _Parser(argparse.ArgumentParser):
    """Usage mistakes read like every other expected failure: ``Error: ...``, exit 2, and
    under --json the same answer on stdout as any other error (``main``)."""

    def error(self, message: str) -> NoReturn:
        _USAGE_ERROR.append(f"{self.prog}: {message}; see {self.prog} --help")
        self.exit(int(ExitCode.INPUT), f"Error: {_USAGE_ERROR[-1]}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; a lazy command's options only when ``command`` is that command."""
    parser = _Parser(prog="bulkops", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"bulkops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        p = sub.add_parser(name, help=spec.help, description=spec.help)
        if not spec.lazy or name == command:
            spec.arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    global _STARTED_AT
    _STARTED_AT = now()
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = build_parser(command).parse_args(argv)
    except SystemExit as stop:
        if _USAGE_ERROR and "--json" in argv:  # a usage error gets its JSON line too
            _json_line(command if command in COMMANDS else None, exit_code=int(ExitCode.INPUT),
                       error=_USAGE_ERROR[-1])
        raise stop
    setup_logging(getattr(args, "verbose", False))
    try:
        return COMMANDS[args.command].handler(args)
    except BulkOpsError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):  # automation reading stdout gets an answer too
            _json_line(args.command, exit_code=int(exc.exit_code), error=str(exc))
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("Error: interrupted; run the same command again to resume", file=sys.stderr)
        if getattr(args, "json", False):
            _json_line(args.command, exit_code=int(ExitCode.INTERRUPTED),
                       error="interrupted; run the same command again to resume")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # `bulkops report --output - | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
        os.close(devnull)
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

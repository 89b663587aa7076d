"""The `bulkops` command: parse options, call one library function, print.

Every expected failure is a ``BulkOpsError``, shown as ``Error: ...`` with its
documented exit code; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio

from bulkops.config import RunSettings, Secret, WriteMode, resolve_api_key, resolve_base_url
from bulkops.errors import BulkOpsError, ExitCode, InputError
from bulkops.execute import JobResult
from bulkops.input.jobfile import JobFile, load_job_file, render_journal_path
from bulkops.jobs import JobRequest, run_job
from bulkops.models import Kind
from bulkops.plan import PlanSummary
from bulkops.progress import add_secret_filter, setup_logging
from bulkops.telnyx.retry import RetryPolicy

from . import __version__

T = TypeVar("T")

KINDS = [Kind.ASSIGN.value, Kind.UNASSIGN.value, Kind.MIGRATE.value]


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _add_connection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--base-url", help="API base URL (default: $TELNYX_API_BASE_URL, else https://api.telnyx.com/v2)")
    g.add_argument("--api-key-file", type=Path, help="read the API key from this file instead of $TELNYX_API_KEY")
    g.add_argument("--insecure", action="store_true", help="allow a plain http:// base URL that is not loopback")
    g.add_argument("--timeout", type=float, default=None, help="seconds per request (default 30)")


def _add_engine(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument("--concurrency", type=int, help="requests in flight at most (default 32)")
    g.add_argument("--rate", type=float, help="ceiling in requests/s (default: as fast as the server's limits allow)")
    g.add_argument("--max-attempts", type=int, help="attempts per row on transient errors (default 5)")
    g.add_argument("--max-retry-seconds", type=float, help="time one row may spend retrying (default 300)")
    g.add_argument("--max-server-wait", type=float, help="longest 429 wait honoured, seconds (default 900)")
    g.add_argument("--verify", action="store_true", default=None, help="re-read every changed number at the end")
    g.add_argument("--mode", choices=["auto", "bulk", "patch"],
                   help="writes by bulk orders or one PATCH per number (default auto: orders from --bulk-min writes on)")
    g.add_argument("--bulk-size", type=int, help="numbers per bulk order (default 1000)")
    g.add_argument("--bulk-min", type=int, help="auto mode: use orders from this many writes on (default 100)")
    g.add_argument("--order-timeout", type=float, help="seconds an order may stay pending before it is read back (default 900)")
    g.add_argument("--yes", "-y", action="store_true", help="never ask for confirmation")
    g.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    g.add_argument("--verbose", "-v", action="store_true")


def _add_job(p: argparse.ArgumentParser, *, job_file: bool = True) -> None:
    if job_file:
        p.add_argument("job_file", nargs="?", type=Path, help="a job file (jobs/*.toml)")
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--csv", type=Path, help="the CSV that defines the job")
    p.add_argument("--profile-id", help="assign: the profile for rows without one")
    p.add_argument("--journal", type=Path, help="journal file (default: next to the CSV)")
    p.add_argument("--default-region", help="region for numbers without a country code (default US)")
    p.add_argument("--skip-invalid", action="store_true", default=None,
                   help="journal invalid rows as rejected and run the rest")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes read like every other expected failure: ``Error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(int(ExitCode.INPUT), f"Error: {self.prog}: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bulkops", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"bulkops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="validate, plan and run a job (again: resume it)")
    _add_job(run)
    _add_connection(run)
    _add_engine(run)
    run.add_argument("--dry-run", action="store_true", help="same as `bulkops plan`: write nothing")
    run.add_argument("--plan-output", type=Path, help="with --dry-run: where to write the plan CSV")

    plan = sub.add_parser("plan", help="show what a run would change; write nothing")
    _add_job(plan)
    _add_connection(plan)
    _add_engine(plan)
    plan.add_argument("--output", type=Path, help="plan CSV (default: <csv>.plan.csv)")

    val = sub.add_parser("validate", help="check a CSV (and its profiles, when a key is set)")
    _add_job(val)
    _add_connection(val)
    val.add_argument("--offline", action="store_true", help="do not check profiles against the account")
    val.add_argument("--json", action="store_true")
    val.add_argument("--verbose", "-v", action="store_true")

    status = sub.add_parser("status", help="counts of a journal's jobs")
    status.add_argument("--journal", type=Path, required=True)
    status.add_argument("--json", action="store_true")
    status.add_argument("--verbose", "-v", action="store_true")

    report = sub.add_parser("report", help="per-row report of a journal's job")
    report.add_argument("--journal", type=Path, required=True)
    report.add_argument("--output", type=Path)
    report.add_argument("--format", choices=["csv", "json"], default="csv")
    report.add_argument("--job", type=int, help="job id (default: the latest)")
    report.add_argument("--verbose", "-v", action="store_true")

    for name, text in (("retry-failed", "run the failed rows of a journal again"),
                       ("rollback", "put every changed number back on its prior profile")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--journal", type=Path, required=True)
        _add_connection(p)
        _add_engine(p)
        if name == "rollback":
            p.add_argument("--force", action="store_true",
                           help="also roll back numbers someone changed since the job")

    from .sandbox.cli import add_arguments as sandbox_arguments

    sandbox = sub.add_parser("sandbox", help="serve a local Telnyx-like API for rehearsals and tests")
    sandbox_arguments(sandbox)

    demo = sub.add_parser("demo", help="run the sample jobs against an in-process sandbox")
    demo.add_argument("--workdir", type=Path, help="keep journals and reports here (default: a temp dir)")
    demo.add_argument("--verbose", "-v", action="store_true")
    return parser


def _settings(args: argparse.Namespace, job: JobFile | None = None) -> RunSettings:
    def pick(name: str, default: Any) -> Any:
        value = getattr(args, name, None)
        if value is not None:
            return value
        if job is not None and getattr(job, name, None) is not None:
            return getattr(job, name)
        return default

    attempts, seconds = pick("max_attempts", 5), pick("max_retry_seconds", 300.0)
    if attempts < 1 or seconds < 0:
        raise InputError(f"--max-attempts must be at least 1 (got {attempts}) and --max-retry-seconds "
                         f"at least 0 (got {seconds:g})")
    policy = RetryPolicy(max_attempts=attempts, max_elapsed=seconds)
    return RunSettings(
        base_url=resolve_base_url(getattr(args, "base_url", None)),
        concurrency=pick("concurrency", 32),
        rate=pick("rate", None),
        timeout=pick("timeout", 30.0),
        max_server_wait=pick("max_server_wait", 900.0),
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
    )


def _request(args: argparse.Namespace) -> tuple[JobRequest, JobFile | None]:
    job = load_job_file(args.job_file) if getattr(args, "job_file", None) else None
    kind_text = args.kind or (job.kind.value if job else None)
    if kind_text is None:
        raise InputError("say what to do: --kind assign|unassign|migrate, or give a job file")
    kind = Kind(kind_text)
    if job is not None and args.kind and job.kind is not kind:
        raise InputError(f"{job.path}: the job file says kind = {job.kind.value!r} but --kind is {kind.value}")
    csv_path = args.csv or (job.csv if job else None)
    if csv_path is None:
        raise InputError("say which CSV: --csv FILE, or `csv = ...` in the job file")
    if args.journal is not None:
        journal = args.journal
    elif job is not None and job.journal:
        journal = render_journal_path(job.journal, job.path.parent, date.today())
    else:
        journal = csv_path.with_name(f"{csv_path.stem}.{kind.value}.journal.db")
    name = job.name if job else csv_path.stem
    profile = args.profile_id or (job.profile_id if job else None)
    return JobRequest(kind, csv_path, journal, name, job.path if job else None, profile), job


def _confirm(json_mode: bool) -> Callable[[PlanSummary], Awaitable[bool]] | None:
    if not _interactive() or json_mode:
        return None  # cron and pipes never wait for an answer

    async def ask(summary: PlanSummary) -> bool:
        _print_plan(summary)
        answer = await anyio.to_thread.run_sync(input, f"Write {summary.writes} numbers? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    return ask


def _print_plan(summary: PlanSummary) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="plan")
    table.add_column("action")
    table.add_column("numbers", justify="right")
    for action, count in summary.rows():
        if count:
            table.add_row(action, str(count))
    Console(stderr=True).print(table)


def _print_result(result: JobResult, json_mode: bool) -> None:
    if json_mode:
        print(json.dumps(result.as_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{result.job.name} ({result.job.kind.value})")
    table.add_column("state")
    table.add_column("numbers", justify="right")
    for state, count in result.as_dict()["counts"].items():
        if count:
            table.add_row(state, str(count))
    console.print(table)
    if result.plan_path:
        console.print(f"plan written to {result.plan_path}; nothing was sent")
    if result.report_path:
        console.print(f"report: {result.report_path}")
    if result.drift:
        console.print(f"[red]{len(result.drift)} number(s) drifted since they were written[/]")


def _key(args: argparse.Namespace) -> Secret:
    """The API key, resolved after the arguments are known to be usable (input errors first)."""
    key = resolve_api_key(args.api_key_file)
    add_secret_filter(key.reveal())
    return key


async def _cmd_run(args: argparse.Namespace) -> int:
    request, job = _request(args)
    settings = _settings(args, job)
    key = _key(args)
    result = await run_job(request, settings, key, interactive=_interactive() and not args.json,
                           confirm=_confirm(args.json), dry_run=args.dry_run,
                           plan_output=getattr(args, "plan_output", None))
    _print_result(result, args.json)
    return int(result.exit_code)


async def _cmd_plan(args: argparse.Namespace) -> int:
    from bulkops.jobs import plan_job

    request, job = _request(args)
    settings = _settings(args, job)
    result = await plan_job(request, settings, _key(args), output=args.output)
    if not args.json and result.plan is not None:
        _print_plan(result.plan)
    _print_result(result, args.json)
    return 0


async def _cmd_validate(args: argparse.Namespace) -> int:
    from bulkops.execute import make_client
    from bulkops.jobs import validate_file

    request, job = _request(args)
    settings = _settings(args, job)
    key = None if args.offline else _maybe_key(args)
    if key is None:
        report = await validate_file(request.kind, request.csv_path, default_profile_id=request.profile_id,
                                     default_region=settings.default_region, client=None)
    else:
        async with make_client(settings, key) as client:
            report = await validate_file(request.kind, request.csv_path,
                                         default_profile_id=request.profile_id,
                                         default_region=settings.default_region, client=client)
    checked = "offline" if key is None else "profiles checked against the account"
    text = f"{request.csv_path}: {report.rows} valid rows, {report.collapsed} duplicates collapsed, " \
           f"{report.warning_count} warnings ({checked})"
    print(json.dumps({"csv": str(request.csv_path), "rows": report.rows, "collapsed": report.collapsed,
                      "warnings": report.warning_count, "profiles_checked": key is not None})
          if args.json else text)
    return 0


def _maybe_key(args: argparse.Namespace) -> Secret | None:
    """The key if there is one: no key means an offline check, but a key file named and
    unreadable is an error (the check the operator asked for would silently not run)."""
    if args.api_key_file is None and not os.environ.get("TELNYX_API_KEY", "").strip():
        return None
    return _key(args)


async def _cmd_status(args: argparse.Namespace) -> int:
    from bulkops.jobs import job_status, status_dict
    from bulkops.report import summary_lines

    statuses = await job_status(args.journal)
    if args.json:
        print(json.dumps(status_dict(statuses), indent=2))
    else:
        for s in statuses:
            for line in summary_lines(s.job, s.counts):
                print(f"#{s.job.id} {line}")
            if s.orders_open:
                print(f"#{s.job.id} bulk orders open: {s.orders_open} (polled again when the job resumes)")
    return 0


async def _cmd_report(args: argparse.Namespace) -> int:
    from bulkops.jobs import report_job

    result = await report_job(args.journal, args.output, args.format, args.job)
    print(f"report: {result.path} ({result.rows} rows)")
    return 0


async def _cmd_followup(args: argparse.Namespace) -> int:
    from bulkops.jobs import retry_failed, rollback

    settings = _settings(args)
    action = rollback if args.command == "rollback" else retry_failed
    result = await action(args.journal, settings, _key(args), interactive=_interactive() and not args.json,
                          confirm=_confirm(args.json))
    _print_result(result, args.json)
    return int(result.exit_code)


def _run(fn: Callable[[], Awaitable[int]]) -> int:
    return anyio.run(fn, backend="asyncio")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    try:
        return _dispatch(args)
    except BulkOpsError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):  # automation reading stdout gets an answer too
            print(json.dumps({"error": str(exc), "exit_code": int(exc.exit_code)}))
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("Error: interrupted; run the same command again to resume", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "sandbox":
        from .sandbox.cli import main as sandbox_main

        return sandbox_main(args)
    if command == "demo":
        from bulkops.demo import run_demo

        return _run(lambda: run_demo(args.workdir))
    if command == "status":
        return _run(lambda: _cmd_status(args))
    if command == "report":
        return _run(lambda: _cmd_report(args))
    if command == "validate":
        return _run(lambda: _cmd_validate(args))
    if command == "run":
        return _run(lambda: _cmd_run(args))
    if command == "plan":
        return _run(lambda: _cmd_plan(args))
    return _run(lambda: _cmd_followup(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

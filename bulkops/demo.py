"""`bulkops demo`: the sample jobs against an in-process sandbox, no account, no network.

It shows the whole life of a job: validation, read-back, rate-limited writes
(the sandbox is limited to 50 requests/s with 20 ms latency, like a small
account), a migrate that moves a profile whole (its numbers and its short codes),
per-row reports, a second run that sends no write, and a rollback.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bulkops.config import RunSettings, Secret
from bulkops.errors import ExitCode, InputError
from bulkops.execute import JobResult
from bulkops.jobs import JobRequest, rollback, run_job
from bulkops.journal.states import ItemState
from bulkops.models import Kind
from bulkops.outputs import check_output, record_own

from .sandbox import FaultConfig, SandboxConfig, demo_data, running_sandbox, write_sample_csvs

DEMO_CONFIG = SandboxConfig(short_codes=12, rate=50, window=1.0,
                            faults=FaultConfig(latency_ms=20, jitter_ms=10))


async def run_demo(workdir: Path | None = None) -> int:
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="bulkops-demo-") as tmp:
        folder = workdir or Path(tmp)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"--workdir {folder}: cannot use it as a folder ({err.strerror}); "
                             "give a folder path") from None
        if old := sorted(p.name for p in folder.glob("*.journal.db")):
            # Each demo starts a fresh sandbox: an earlier demo's journals would resume against
            # an account that never saw their writes.
            raise InputError(f"--workdir {folder} already holds a demo's journals ({old[0]}...); "
                             "give a new or empty folder")
        data = demo_data(DEMO_CONFIG)
        for name in data.csv_files():  # an operator's own CSV there is never replaced
            check_output(folder / "sample_csv" / name, "demo CSV", "--workdir", force_flag=None)
        csvs = {p.name: p for p in write_sample_csvs(folder / "sample_csv", data)}
        for path in csvs.values():
            record_own(path, "demo CSV")
        async with running_sandbox(DEMO_CONFIG) as sandbox:
            console.print(f"[bold]sandbox[/] listening on {sandbox.base_url} "
                          f"({DEMO_CONFIG.numbers} numbers, {DEMO_CONFIG.short_codes} short "
                          f"codes, {DEMO_CONFIG.profiles} profiles, "
                          f"{DEMO_CONFIG.rate} requests/s)")
            settings = RunSettings(base_url=sandbox.base_url, assume_yes=True, verify=True)
            key = Secret(sandbox.api_key)
            interactive = sys.stderr.isatty()
            jobs = [
                ("assign", Kind.ASSIGN, "assign.csv", None),
                ("assign-default-profile", Kind.ASSIGN, "assign-default-profile.csv",
                 data.default_profile_id),
                ("unassign", Kind.UNASSIGN, "unassign.csv", None),
                ("migrate", Kind.MIGRATE, "migrate.csv", None),
                ("desired-state", Kind.SET, "desired-state.csv", None),
            ]
            results: list[JobResult] = []
            for name, kind, csv_name, profile in jobs:
                console.rule(f"job {name}: {kind.value} from {csv_name}")
                request = JobRequest(kind, csvs[csv_name], folder / f"{name}.journal.db", name,
                                     profile_id=profile)
                source = (sandbox.dump(), sandbox.short_codes())
                results.append(await run_job(request, settings, key, interactive=interactive))
                if kind is Kind.MIGRATE:
                    _moved(console, data.migrate_from, data.migrate_to, source,
                           (sandbox.dump(), sandbox.short_codes()))
            console.rule("the same assign CSV into a fresh journal: everything is already in place")
            again = JobRequest(Kind.ASSIGN, csvs["assign.csv"], folder / "assign-again.journal.db",
                               "assign-again")
            results.append(await run_job(again, settings, key, interactive=interactive))
            console.rule("rollback of the first assign job")
            results.append(await rollback(folder / "assign.journal.db", settings, key,
                                          interactive=interactive))
            stats = sandbox.stats.as_dict()
        _summary(console, results, stats)
        if workdir is None:
            console.print("the journals and reports above were in a temporary folder, deleted "
                          "now; keep them with --workdir DIR")
        else:
            console.print(f"journals and reports are in {folder}")
    return int(max((r.exit_code for r in results), default=ExitCode.OK))


Holdings = tuple[dict[str, str | None], dict[str, str | None]]  # numbers, short codes -> profile


def _moved(console: Console, source: str, target: str, before: Holdings, after: Holdings) -> None:
    """What the migrate did on the account: both kinds of sender left the source profile."""
    moved = [sum(1 for key, profile in was.items() if profile == source and now[key] == target)
             for was, now in zip(before, after)]
    left = [sum(1 for profile in now.values() if profile == source) for now in after]
    console.print(f"migrate moved {moved[0]} numbers and {moved[1]} short codes from {source} "
                  f"to {target}; {left[0]} numbers and {left[1]} short codes are left on it",
                  markup=False, highlight=False)


def _summary(console: Console, results: list[JobResult], stats: dict[str, object]) -> None:
    table = Table(title="demo summary")
    for column in ("job", "kind", "done", "skipped", "failed", "seconds"):
        table.add_column(column)
    for r in results:
        table.add_row(r.job.name, r.job.kind.value, str(r.counts.get(ItemState.DONE)),
                      str(r.counts.get(ItemState.SKIPPED)), str(r.counts.get(ItemState.FAILED)),
                      f"{r.elapsed:.1f}")
    out = Console(soft_wrap=True)  # paths in full, however narrow the terminal
    out.print(table)
    for r in results:
        if r.report_path:
            out.print(f"report of {r.job.name}: {r.report_path}", markup=False, highlight=False)
    console.print(f"sandbox: {stats.get('writes_applied')} writes applied, "
                  f"{stats.get('rate_limited')} requests answered 429")

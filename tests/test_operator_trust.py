"""Operator trust (issue #9): every command tells the truth, nothing declined ever runs.

Each test drives `bulkops` as an operator does: a child process (tests/harness.py), a sandbox
over loopback, real journals. The terminal cases run the child on a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path

from bulkops.errors import ExitCode
from bulkops.journal.states import ItemState, JobState
from bulkops.journal.store import Journal
from bulkops.progress import Tracker
from bulkops.sandbox import Sandbox
from tests.harness import CliResult, cli_command, cli_env, closed_port_url, read_report, run_cli
from tests.jobhelpers import journal_items, other_profile, patches, write_csv

ASSIGN = ["phone_number", "messaging_profile_id"]


def _assign_csv(sandbox: Sandbox, path: Path, count: int) -> tuple[Path, dict[str, str]]:
    targets = {n: other_profile(sandbox, sandbox.profile_of(n)) for n in sandbox.numbers()[:count]}
    return write_csv(path, ASSIGN, targets.items()), targets


async def _run(sandbox: Sandbox, csv_path: Path, journal: Path, *extra: str | Path) -> CliResult:
    return await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--journal", journal,
                          "--base-url", sandbox.base_url, "--yes", *extra],
                         env=cli_env(sandbox.api_key))


async def _on_terminal(args: list[str | Path], *, env: dict[str, str], answer: str,
                       timeout: float = 60.0) -> tuple[int, str]:
    """Run `bulkops ARGS` with stdin and stderr on a pseudo-terminal; answer the first
    question (a line ending in "[y/N] ") with ``answer``. Returns (exit code, terminal text)."""
    master, slave = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        *cli_command(*args), env={**env, "COLUMNS": "120"}, stdin=slave, stderr=slave,
        stdout=asyncio.subprocess.PIPE)
    os.close(slave)
    seen = bytearray()
    asked = threading.Event()

    def read() -> None:  # until the child closes the terminal (EIO on Linux)
        answered = False
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)
            if not answered and b"[y/N]" in seen:
                answered = True
                os.write(master, answer.encode() + b"\r")
                asked.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await asyncio.to_thread(reader.join, 5)
        os.close(master)
    assert process.returncode is not None
    return process.returncode, seen.decode("utf-8", "replace") + out.decode("utf-8", "replace")


# --- a declined action stays declined --------------------------------------------------------

async def test_a_declined_rollback_is_cancelled_and_never_run_by_a_later_command(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path, targets = _assign_csv(sandbox, tmp_path / "a.csv", 120)  # above the question threshold
    journal = tmp_path / "a.db"
    assert (await _run(sandbox, csv_path, journal)).returncode == 0
    sent = patches(sandbox)

    code, screen = await _on_terminal(["rollback", "--journal", journal, "--base-url", sandbox.base_url],
                                      env=cli_env(sandbox.api_key), answer="n")

    assert "Roll back 120 numbers to their prior profiles? [y/N]" in screen, screen[-2000:]
    assert code == ExitCode.INTERRUPTED and "not confirmed; nothing was sent" in screen
    retry = await run_cli(["retry-failed", "--journal", journal, "--base-url", sandbox.base_url],
                          env=cli_env(sandbox.api_key))
    assert retry.returncode == 0, retry.describe()
    assert "no failed rows: nothing to do" in retry.stdout
    assert patches(sandbox) == sent and all(sandbox.profile_of(n) == t for n, t in targets.items())
    async with await Journal.open(journal, lock=False) as j:
        assert [(job.id, job.state) for job in await j.jobs()] == [(1, JobState.FINISHED),
                                                                   (2, JobState.CANCELLED)]
    report = await run_cli(["report", "--journal", journal], env=cli_env())
    assert report.returncode == 0 and f"{tmp_path / 'a.report.csv'} (120 rows)" in report.stdout


async def test_retry_failed_runs_only_the_failed_rows_of_the_job_it_names(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:4]
    rows = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers]
    csv_path = write_csv(tmp_path / "a.csv", ASSIGN, rows + [("+13125550196", sandbox.profile_ids()[0])])
    journal = tmp_path / "a.db"
    assert (await _run(sandbox, csv_path, journal)).returncode == ExitCode.FAILED_ROWS
    sent = patches(sandbox)

    retry = await run_cli(["retry-failed", "--journal", journal, "--job", "1", "--base-url",
                           sandbox.base_url, "--yes"], env=cli_env(sandbox.api_key))

    assert retry.returncode == ExitCode.FAILED_ROWS, retry.describe()
    # the one failed row, nothing else: read back again, still not on the account, so it
    # fails again without a request (issue 23)
    assert patches(sandbox) == sent
    assert "progress write: 5/5" in retry.stderr and "(resumed at 4)" in retry.stderr


# --- an unreachable API is not a refused key ---------------------------------------------------

async def test_validate_with_nothing_listening_exits_7_naming_the_base_url(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "a.csv", ASSIGN, [("+13125550100", "6f2a1d9e-0000-4000-8000-000000000001")])
    url = closed_port_url()

    result = await run_cli(["validate", "--kind", "assign", "--csv", csv_path, "--base-url", url],
                           env=cli_env("KEY-not-used"))

    assert result.returncode == ExitCode.UNREACHABLE and int(ExitCode.UNREACHABLE) == 7, result.describe()
    assert "Traceback" not in result.output and "GaveUp" not in result.output
    assert result.stderr.startswith("Error: ") and url in result.stderr
    assert "profiles checked against the account" not in result.output


async def test_validate_never_claims_a_profile_check_that_did_not_happen(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path, _ = _assign_csv(sandbox, tmp_path / "a.csv", 3)
    numbers = write_csv(tmp_path / "u.csv", ["phone_number"], [(n,) for n in sandbox.numbers()[:3]])
    base = ["validate", "--base-url", sandbox.base_url]

    refused = await run_cli([*base, "--kind", "assign", "--csv", csv_path], env=cli_env("KEY-wrong"))
    no_profiles = await run_cli([*base, "--kind", "unassign", "--csv", numbers], env=cli_env("KEY-wrong"))
    checked = await run_cli([*base, "--kind", "assign", "--csv", csv_path], env=cli_env(sandbox.api_key))

    assert refused.returncode == ExitCode.ABORTED, refused.describe()
    for result in (refused, no_profiles):
        assert "checked against the account" not in result.output, result.describe()
    assert no_profiles.returncode == 0 and "the API was not contacted" in no_profiles.stdout
    assert checked.returncode == 0 and "checked against the account" in checked.stdout


async def test_run_and_plan_with_nothing_listening_exit_7_and_say_what_to_check(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "a.csv", ASSIGN, [("+13125550100", "6f2a1d9e-0000-4000-8000-000000000001")])
    url = closed_port_url()
    common: list[str | Path] = ["--kind", "assign", "--csv", csv_path, "--base-url", url, "--max-attempts", "1",
                                "--yes"]

    run = await run_cli(["run", *common, "--journal", tmp_path / "a.db"], env=cli_env("KEY-x"))
    plan = await run_cli(["plan", *common, "--output", tmp_path / "p.csv"], env=cli_env("KEY-x"))

    for result in (run, plan):
        assert result.returncode == ExitCode.UNREACHABLE, result.describe()
        assert url in result.stderr and "could not be reached" in result.stderr
        assert "Traceback" not in result.output
    error = plan.stderr[plan.stderr.index("Error: "):]
    assert "resume" not in error and "keeps no journal" in error


# --- one report line per input line, with the input's own cells ---------------------------------

async def test_the_report_has_one_line_per_input_line_in_order_with_every_input_cell(
        sandbox: Sandbox, tmp_path: Path) -> None:
    a, b = sandbox.numbers()[:2]
    pa, pb = other_profile(sandbox, sandbox.profile_of(a)), other_profile(sandbox, sandbox.profile_of(b))
    csv_path = write_csv(tmp_path / "a.csv", [*ASSIGN, "note", "ticket"], [
        (a, pa, "first", "T-1"),
        ("(312) 555-01XX", pa, "typo here", "T-2"),
        (a, pa, "again", "T-3"),
        (b, pb, "=SUM(A1)", "T-4"),
    ])
    journal = tmp_path / "a.db"

    run = await _run(sandbox, csv_path, journal, "--skip-invalid")
    plan = await run_cli(["plan", "--kind", "assign", "--csv", csv_path, "--base-url", sandbox.base_url,
                          "--skip-invalid", "--output", tmp_path / "plan.csv"], env=cli_env(sandbox.api_key))
    stdout = await run_cli(["report", "--journal", journal, "--output", "-"], env=cli_env())

    assert run.returncode == plan.returncode == ExitCode.FAILED_ROWS, run.describe() + plan.describe()
    report = read_report(tmp_path / "a.report.csv")
    assert [(r["line"], r["final_state"]) for r in report] == [
        ("2", "done"), ("3", "rejected"), ("4", "duplicate"), ("5", "done")]
    assert [r["input_note"] for r in report] == ["first", "typo here", "again", "'=SUM(A1)"]
    assert [r["input_ticket"] for r in report] == ["T-1", "T-2", "T-3", "T-4"]
    assert report[1]["phone_number"] == "(312) 555-01XX" and report[1]["desired_profile_id"] == pa
    assert "repeats line 2" in report[2]["note"]
    assert {r["note"] for r in report} != {r["input_note"] for r in report}
    plan_rows = read_report(tmp_path / "plan.csv")
    assert [(r["line"], r["action"]) for r in plan_rows] == [
        ("2", "already in place"), ("3", "rejected"), ("4", "duplicate"), ("5", "already in place")]
    assert [r["input_note"] for r in plan_rows] == ["first", "typo here", "again", "'=SUM(A1)"]
    assert stdout.returncode == 0 and not (Path.cwd() / "-").exists()
    assert list(csv.DictReader(io.StringIO(stdout.stdout))) == report


# --- success only when something happened -------------------------------------------------------

async def test_a_migrate_from_an_empty_profile_says_0_numbers(sandbox: Sandbox, tmp_path: Path) -> None:
    empty, target = sandbox.profile_ids()[:2]
    for number in sandbox.numbers():
        if sandbox.profile_of(number) == empty:
            sandbox.set_profile(number, target)
    csv_path = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"], [(empty, target)])

    result = await run_cli(["run", "--kind", "migrate", "--csv", csv_path, "--journal", tmp_path / "m.db",
                            "--base-url", sandbox.base_url, "--yes"], env=cli_env(sandbox.api_key))

    assert result.returncode == 0, result.describe()
    assert f"profile {empty} has 0 numbers" in result.stderr  # the ledger's warning
    assert f"profile {empty} has 0 numbers" in result.stdout  # and the summary


async def test_after_a_rollback_run_and_rollback_say_so_and_send_nothing(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path, targets = _assign_csv(sandbox, tmp_path / "a.csv", 5)
    before = {n: sandbox.profile_of(n) for n in targets}
    journal = tmp_path / "a.db"
    assert (await _run(sandbox, csv_path, journal)).returncode == 0
    rolled = await run_cli(["rollback", "--journal", journal, "--base-url", sandbox.base_url, "--yes"],
                           env=cli_env(sandbox.api_key))
    assert rolled.returncode == 0, rolled.describe()
    sent = patches(sandbox)

    again = await _run(sandbox, csv_path, journal)
    second = await run_cli(["rollback", "--journal", journal, "--base-url", sandbox.base_url, "--yes"],
                           env=cli_env(sandbox.api_key))

    assert again.returncode == 0 and "rolled back by job #2" in again.stdout, again.describe()
    assert "│ done" not in again.stdout  # no "done 5" for a run that sent nothing
    assert second.returncode == 0 and "already rolled back" in second.stdout, second.describe()
    assert "nothing to change" in second.stdout and "│ done" not in second.stdout
    assert patches(sandbox) == sent and {n: sandbox.profile_of(n) for n in targets} == before


async def test_status_of_a_journal_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    result = await run_cli(["status", "--journal", tmp_path / "nope.db"], env=cli_env())
    assert result.returncode == ExitCode.INPUT and "no such journal" in result.stderr, result.describe()


# --- say what it is and how to use it -----------------------------------------------------------

def test_help_describes_the_tool_and_lists_exit_codes_and_environment() -> None:
    top = subprocess.run(cli_command("--help"), capture_output=True, text=True, check=True).stdout
    assert "parse options" not in top and "Telnyx phone numbers" in top.split("\n\n")[1]
    for code in ExitCode:
        assert f"\n  {int(code)} " in top, code
    assert "TELNYX_API_KEY" in top and "TELNYX_API_BASE_URL" in top


def test_every_option_of_every_command_has_help_text() -> None:
    from bulkops.cli import COMMANDS, build_parser

    for name in COMMANDS:
        parser = build_parser(name)
        sub = next(a for a in parser._actions if a.dest == "command")
        command = sub.choices[name]  # type: ignore[index]
        for action in command._actions:
            assert action.help, f"bulkops {name} {'/'.join(action.option_strings) or action.dest} has no help"


def test_run_help_does_not_load_the_sandbox() -> None:
    probe = ("import sys\nfrom bulkops.cli import main\ntry:\n    main(['run', '--help'])\n"
             "except SystemExit:\n    pass\n"
             "print('LOADED', sorted(m for m in sys.modules if m.startswith('bulkops.sandbox') "
             "or m == 'aiohttp.web'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env=cli_env()).stdout
    assert out.strip().endswith("LOADED []"), out[-500:]


def test_the_eta_is_paced_by_rows_that_took_a_request_and_a_resume_starts_where_it_was() -> None:
    tracker = Tracker("write", total=1000, already=400, started=time.monotonic() - 10)
    tracker.skipped, tracker.done = 90, 10  # 10 writes in 10 s; 500 rows left

    assert tracker.position == 500
    assert 450 <= (tracker.eta() or 0) <= 550  # about 1 row/s, not 10/s
    assert "500/1000" in tracker.line() and "time left=" in tracker.line()


async def test_the_demo_prints_report_paths_in_full(tmp_path: Path) -> None:
    workdir = tmp_path / ("a-folder-name-long-enough-to-overflow-an-eighty-column-table-" * 2)
    process = await asyncio.create_subprocess_exec(
        *cli_command("demo", "--workdir", workdir), env={**cli_env(), "COLUMNS": "80"},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 100)

    assert process.returncode == 0, err.decode()[-2000:]
    assert str(workdir / "assign.journal.report.csv") in out.decode()
    assert str(workdir / "assign.journal-job2.report.csv") in out.decode()


async def test_rollback_inherits_the_jobs_limits_and_takes_job(sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path, _ = _assign_csv(sandbox, tmp_path / "a.csv", 4)
    journal = tmp_path / "a.db"
    assert (await _run(sandbox, csv_path, journal, "--rate", "20", "--concurrency", "3")).returncode == 0

    result = await run_cli(["rollback", "--journal", journal, "--job", "1", "--base-url",
                            sandbox.base_url, "--yes", "--json"], env=cli_env(sandbox.api_key))

    assert result.returncode == 0, result.describe()
    assert "concurrency=3 rate=20.0" in result.stderr
    assert json.loads(result.stdout)["counts"]["done"] == 4
    items = await journal_items(journal, 2)
    assert {i.state for i in items.values()} == {ItemState.DONE}


async def test_retry_failed_of_a_rolled_back_job_keeps_its_failed_rows_as_they_were(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:3]
    rows = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers]
    csv_path = write_csv(tmp_path / "a.csv", ASSIGN, rows + [("+13125550196", sandbox.profile_ids()[0])])
    journal = tmp_path / "a.db"
    assert (await _run(sandbox, csv_path, journal)).returncode == ExitCode.FAILED_ROWS
    rolled = await run_cli(["rollback", "--journal", journal, "--base-url", sandbox.base_url, "--yes"],
                           env=cli_env(sandbox.api_key))
    assert rolled.returncode == 0, rolled.describe()
    failed_before = {n: i for n, i in (await journal_items(journal)).items()
                     if i.state is ItemState.FAILED}

    for _ in range(2):  # the second time too: nothing was left half-reset by the first
        retry = await run_cli(["retry-failed", "--journal", journal, "--job", "1", "--base-url",
                               sandbox.base_url, "--yes"], env=cli_env(sandbox.api_key))
        assert retry.returncode == 0 and "rolled back by job #2" in retry.stdout, retry.describe()

    after = await journal_items(journal)
    assert {n: after[n] for n in failed_before} == failed_before  # state, code, detail kept


async def test_declining_a_job_that_already_wrote_keeps_it_resumable_and_rollbackable(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path, targets = _assign_csv(sandbox, tmp_path / "a.csv", 120)  # above the question threshold
    journal = tmp_path / "a.db"
    sandbox.set_ignore_writes(True)  # every write answers 200 and changes nothing: all fail
    first = await _run(sandbox, csv_path, journal, "--mode", "patch", "--max-consecutive-failures", "0")
    assert first.returncode == ExitCode.FAILED_ROWS, first.describe()
    sandbox.set_ignore_writes(False)

    code, screen = await _on_terminal(["retry-failed", "--journal", journal, "--base-url",
                                       sandbox.base_url, "--mode", "patch"],
                                      env=cli_env(sandbox.api_key), answer="n")

    assert code == ExitCode.INTERRUPTED and "nothing more was sent" in screen, screen[-2000:]
    async with await Journal.open(journal, lock=False) as j:
        assert (await j.job(1)).state is JobState.INTERRUPTED  # never "cancelled": it ran
    resumed = await _run(sandbox, csv_path, journal, "--mode", "patch")
    assert resumed.returncode == 0, resumed.describe()
    assert all(sandbox.profile_of(n) == t for n, t in targets.items())
    rolled = await run_cli(["rollback", "--journal", journal, "--base-url", sandbox.base_url, "--yes"],
                           env=cli_env(sandbox.api_key))
    assert rolled.returncode == 0 and "never started writing" not in rolled.stderr, rolled.describe()


async def test_retry_failed_declined_once_finishes_when_run_again_as_its_message_says(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path, targets = _assign_csv(sandbox, tmp_path / "a.csv", 120)  # above the question threshold
    journal = tmp_path / "a.db"
    sandbox.set_ignore_writes(True)  # every write answers 200 and changes nothing: all fail
    first = await _run(sandbox, csv_path, journal, "--mode", "patch", "--max-consecutive-failures", "0")
    assert first.returncode == ExitCode.FAILED_ROWS, first.describe()
    sandbox.set_ignore_writes(False)
    command: list[str | Path] = ["retry-failed", "--journal", journal, "--base-url", sandbox.base_url,
                                 "--mode", "patch"]
    code, screen = await _on_terminal(command, env=cli_env(sandbox.api_key), answer="n")
    assert code == ExitCode.INTERRUPTED and "run the same command again" in screen, screen[-2000:]

    again = await run_cli([*command, "--yes"], env=cli_env(sandbox.api_key))

    assert again.returncode == 0, again.describe()
    assert all(sandbox.profile_of(n) == t for n, t in targets.items())

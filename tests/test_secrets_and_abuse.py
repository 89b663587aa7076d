"""The API key never leaks, private files stay private, and hostile input fails cleanly.

Every `bulkops` here runs as a child process (``python -m bulkops.cli``) exactly as an
operator would run it; sandboxes are served by the test's own event loop on loopback, and no
test connects anywhere else (``example.invalid`` is refused before any lookup, which is the
point of that test).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from bulkops.config import RunSettings, Secret
from bulkops.errors import AuthError
from bulkops.jobs import JobRequest, run_job
from bulkops.journal.store import Journal
from bulkops.models import Kind, NumberRow
from bulkops.progress import Redact
from bulkops.redact import redact
from bulkops.telnyx.retry import RetryPolicy
from bulkops.sandbox import FaultConfig, FaultKind, Sandbox
from tests.conftest import SandboxFactory
from tests.harness import (
    CANARY_KEY, Args, CliResult, assert_clean_error, assert_no_key, assert_no_key_in_files,
    assert_no_key_in_result, cli_command, cli_env, closed_port_url, file_signature, mode_of, read_report,
    run_cli, run_cli_measured, write_assign_csv,
)
from tests.poll_kit import wait_until

PROFILE = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"
PEAK_RSS_LIMIT = 200 * 1024 * 1024
POLL = 0.005


def small_csv(folder: Path, sandbox: Sandbox, rows: int) -> tuple[Path, str, list[str]]:
    """An assign CSV of ``rows`` numbers, all to one profile; returns (path, profile, numbers)."""
    target = sandbox.profile_ids()[0]
    numbers = [n for n, p in sandbox.dump().items() if p != target][:rows]
    return write_assign_csv(folder / "numbers.csv", ((n, target) for n in numbers)), target, numbers


@pytest.fixture
async def key_sandbox(sandbox_factory: SandboxFactory) -> AsyncIterator[Sandbox]:
    """A sandbox that accepts exactly the canary key."""
    async with sandbox_factory(numbers=400, profiles=3, seed=5, api_key=CANARY_KEY) as running:
        yield running


# --- the key never leaks -------------------------------------------------------------------

async def test_a_refused_key_is_never_echoed_in_output_or_files(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=50, profiles=2, seed=1) as sandbox:  # accepts another key
        assert sandbox.api_key != CANARY_KEY
        csv_path, _, _ = small_csv(tmp_path, sandbox, 20)
        key_file = tmp_path / "key.txt"
        key_file.write_text(CANARY_KEY + "\n")
        key_file.chmod(0o600)
        ways: list[tuple[str, dict[str, str], Args]] = [
            ("env", cli_env(CANARY_KEY), []), ("file", cli_env(), ["--api-key-file", key_file])]
        for how, env, extra in ways:
            result = await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--journal", tmp_path / f"{how}.db",
                                    "--base-url", sandbox.base_url, "--yes", "--verbose", *extra], env=env)
            assert_clean_error(result, 4, "refused the API key")
            assert_no_key_in_result(f"a 401 run (key from {how})", result)
        assert sandbox.stats.count(status=401) >= 2
        assert sandbox.stats.writes_applied == 0
    assert_no_key_in_files(tmp_path, skip=[key_file])


async def test_rows_failing_on_transport_errors_record_no_key(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    """The server vanishes mid-job: every later row fails with a connection error, key-free."""
    async with AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(sandbox_factory(
            numbers=400, profiles=3, seed=5, api_key=CANARY_KEY, faults=FaultConfig(latency_ms=20)))
        csv_path, _, _ = small_csv(tmp_path, sandbox, 150)
        journal = tmp_path / "gone.db"
        process = await asyncio.create_subprocess_exec(
            *cli_command("run", "--kind", "assign", "--csv", csv_path, "--journal", journal,
                         "--base-url", sandbox.base_url, "--yes", "--json", "--verbose",
                         "--concurrency", "2", "--max-attempts", "1", "--mode", "patch"),
            env=cli_env(CANARY_KEY), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        communicating = asyncio.ensure_future(process.communicate())
        try:
            await wait_until(lambda: sandbox.stats.writes_applied >= 10 or communicating.done(), within=30,
                             what="10 writes applied", every=POLL)
            assert sandbox.stats.writes_applied >= 10, "the job ended before it wrote 10 rows"
            await stack.aclose()  # the sandbox stops listening: the rest of the rows meet a closed port
            out, err = await asyncio.wait_for(asyncio.shield(communicating), 60)
        finally:
            if process.returncode is None:
                process.kill()
            await communicating
    assert process.returncode is not None
    result = CliResult(process.returncode, out.decode(), err.decode())
    assert result.returncode == 3, result.describe()  # finished, with failed rows
    assert_no_key_in_result("a run whose server went away", result)
    report = read_report(journal.with_name("gone.report.csv"))
    failed = [r for r in report if r["final_state"] == "failed"]
    assert any("could not connect" in r["error_detail"] for r in failed), failed[:3]
    assert_no_key_in_files(tmp_path)


async def test_faults_and_a_kill_leave_no_key_and_only_owner_readable_files(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    """5xx, drops, slow answers and a kill -9 mid-write: logs, -wal, journal, reports stay key-free.

    The children run with umask 0, so every file being 0600 is bulkops' doing, not the umask's.
    """
    # Rates kept low enough that no row's backoff chain gets long: the soak test does volume.
    faults = FaultConfig(error_rate=0.05, error_after_write_rate=0.05, drop_rate=0.05, latency_ms=20,
                         jitter_ms=10, slow_rate=0.05, slow_ms=1_500, seed=9)
    async with sandbox_factory(numbers=400, profiles=3, seed=5, api_key=CANARY_KEY, faults=faults) as sandbox:
        csv_path, _, _ = small_csv(tmp_path, sandbox, 100)
        journal = tmp_path / "faulty.db"
        wal, shm = (journal.with_name(journal.name + s) for s in ("-wal", "-shm"))
        args: Args = ["run", "--kind", "assign", "--csv", csv_path, "--journal", journal,
                      "--base-url", sandbox.base_url, "--yes", "--verbose", "--concurrency", "16",
                      "--timeout", "0.5", "--max-attempts", "10", "--mode", "patch"]
        env = cli_env(CANARY_KEY)

        with open(tmp_path / "killed.out", "wb") as out, open(tmp_path / "killed.err", "wb") as err:
            process = await asyncio.create_subprocess_exec(
                *cli_command(*args), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err, umask=0)
        try:
            def going() -> bool:
                return sandbox.stats.writes_applied >= 20 and file_signature(wal) is not None

            await wait_until(lambda: going() or process.returncode is not None, within=30,
                             what="20 writes applied and a WAL", every=POLL)
            assert going(), "the job ended before it got going"
        finally:
            process.kill()
            await process.wait()
        # Killed mid-write: the WAL and shared memory are still there, holding the latest commits.
        for path in (journal, wal, shm, journal.with_name(journal.name + ".lock")):
            assert mode_of(path) == 0o600, f"{path.name} is {oct(mode_of(path))}"
            assert_no_key(f"{path.name} after kill -9", path.read_bytes())

        resumed = await run_cli(args, env=env, umask=0)
        assert resumed.returncode in (0, 3), resumed.describe()  # 3: a row may exhaust its retries
        assert "retry" in resumed.stderr  # --verbose logged the retries the faults caused
        assert sandbox.stats.faults_injected[FaultKind.ERROR.value] > 0
        assert sandbox.stats.faults_injected[FaultKind.DROP.value] > 0
        assert sandbox.stats.faults_injected[FaultKind.SLOW.value] > 0
        status = await run_cli(["status", "--journal", journal], env=env)
        json_report = tmp_path / "faulty.report.json"
        reported = await run_cli(["report", "--journal", journal, "--format", "json", "--output", json_report],
                                 env=env, umask=0)
        assert status.returncode == reported.returncode == 0, status.describe() + reported.describe()
    for what, result in (("the resumed run", resumed), ("status", status), ("report", reported)):
        assert_no_key_in_result(what, result)
    assert mode_of(journal.with_name("faulty.report.csv")) == 0o600
    assert mode_of(json_report) == 0o600
    assert_no_key_in_files(tmp_path)


async def test_library_exceptions_and_logs_never_carry_the_key(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("bulkops")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    policy = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.02)
    try:
        async with sandbox_factory(numbers=50, profiles=2, seed=1) as sandbox:
            csv_path, _, _ = small_csv(tmp_path, sandbox, 10)
            errors: list[BaseException] = []
            for name, base_url in (("refused", sandbox.base_url), ("unreachable", closed_port_url())):
                request = JobRequest(Kind.ASSIGN, csv_path, tmp_path / f"{name}.db", name)
                settings = RunSettings(base_url=base_url, assume_yes=True, timeout=5, policy=policy)
                with pytest.raises(Exception) as caught:
                    await run_job(request, settings, Secret(CANARY_KEY))
                errors.append(caught.value)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert isinstance(errors[0], AuthError)
    for error in errors:
        text = "".join(traceback.format_exception(error))  # the whole chain: causes and contexts
        assert_no_key(f"the {type(error).__name__} raised by run_job", text + repr(error) + repr(vars(error)))
    assert records, "nothing was logged at DEBUG; the log check would prove nothing"
    assert_no_key("the bulkops log", "\n".join(records))
    assert_no_key_in_files(tmp_path)


async def test_a_key_pasted_into_the_base_url_is_refused_and_never_written(tmp_path: Path) -> None:
    csv_path = write_assign_csv(tmp_path / "numbers.csv", [("+13125550101", PROFILE)])
    for n, url in enumerate((f"http://user:{CANARY_KEY}@127.0.0.1:9/v2", f"https://127.0.0.1:9/v2?token={CANARY_KEY}")):
        result = await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--journal", tmp_path / f"j{n}.db",
                                "--base-url", url, "--yes"], env=cli_env(CANARY_KEY))
        assert_clean_error(result, 2, "no credentials")
        assert_no_key_in_result("a run with the key in its base URL", result)
    assert_no_key_in_files(tmp_path)


# --- plain http -----------------------------------------------------------------------------

async def test_plain_http_to_a_remote_host_is_refused_before_any_connection(tmp_path: Path) -> None:
    csv_path = write_assign_csv(tmp_path / "numbers.csv", [("+13125550101", PROFILE)])
    result = await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--journal", tmp_path / "j.db",
                            "--base-url", "http://example.invalid/v2", "--yes", "--max-attempts", "1"],
                           env=cli_env(CANARY_KEY))
    # A connection attempt would have failed on name resolution instead (exit 1/3/4, not 2).
    assert_clean_error(result, 2, "Refusing to send the API key in clear text", "--insecure")
    assert "could not connect" not in result.output
    assert not (tmp_path / "j.db").exists(), "a refused run left a journal behind"
    assert_no_key_in_result("a refused plain-http run", result)


async def test_plain_http_to_a_non_loopback_address_needs_insecure(key_sandbox: Sandbox, tmp_path: Path) -> None:
    """0.0.0.0 is not a loopback address, yet on Linux a connection to it stays on this machine."""
    csv_path, target, numbers = small_csv(tmp_path, key_sandbox, 5)
    url = key_sandbox.base_url.replace("127.0.0.1", "0.0.0.0")
    args: Args = ["run", "--kind", "assign", "--csv", csv_path, "--base-url", url, "--yes"]
    refused = await run_cli([*args, "--journal", tmp_path / "refused.db"], env=cli_env(CANARY_KEY))
    assert_clean_error(refused, 2, "--insecure")
    assert key_sandbox.stats.total_requests == 0 and not (tmp_path / "refused.db").exists()
    allowed = await run_cli([*args, "--journal", tmp_path / "allowed.db", "--insecure"], env=cli_env(CANARY_KEY))
    assert allowed.returncode == 0, allowed.describe()
    assert all(key_sandbox.profile_of(n) == target for n in numbers)


# --- damaged journals -----------------------------------------------------------------------

async def _real_journal(path: Path, rows: int = 3_000) -> bytes:
    journal = await Journal.create(path, kind=Kind.ASSIGN, name="real", job_file=None, csv_path=None,
                                   csv_sha256=None, default_profile_id=None, settings={})
    await journal.stage_rows(1, [NumberRow(i + 2, f"+1312555{i:04d}", PROFILE) for i in range(rows)])
    await journal.finish_staging(1)
    await journal.close()
    return path.read_bytes()


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "garbled_pages": lambda good: good[:8192] + bytes(range(256)) * 16 + good[8192 + 4096:],
    "truncated": lambda good: good[: len(good) // 2],
    "not_sqlite": lambda good: b"phone_number,messaging_profile_id\n+13125550101,x\n",
    "empty": lambda good: b"",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_a_damaged_journal_is_refused_by_name_and_left_byte_identical(damage: str, tmp_path: Path) -> None:
    good = await _real_journal(tmp_path / "good.db")
    journal = tmp_path / "journal.db"
    damaged = DAMAGE[damage](good)
    journal.write_bytes(damaged)
    csv_path = write_assign_csv(tmp_path / "numbers.csv", [("+13125550101", PROFILE)])
    env = cli_env(CANARY_KEY)
    commands: list[Args] = [
        ["run", "--kind", "assign", "--csv", csv_path, "--journal", journal, "--base-url", closed_port_url(), "--yes"],
        ["status", "--journal", journal],
    ]
    for args in commands:
        result = await run_cli(args, env=env)
        assert_clean_error(result, 6, str(journal))
        assert journal.read_bytes() == damaged, f"`bulkops {args[0]}` changed the damaged journal"
    assert not journal.with_name("journal.db-wal").exists()


# --- huge input -----------------------------------------------------------------------------

def _write_lines(path: Path, header: str, body: bytes, times: int) -> Path:
    with open(path, "wb") as handle:
        handle.write(header.encode() + b"\n")
        chunk = 10_000
        for _ in range(times // chunk):
            handle.write(body * chunk)
        handle.write(body * (times % chunk))
    return path


def _validate_measured(csv_path: Path, workdir: Path) -> CliResult:
    result, peak = run_cli_measured(["validate", "--offline", "--json", "--kind", "assign", "--csv", csv_path],
                                    env=cli_env(), workdir=workdir)
    assert "Traceback" not in result.output, result.describe()
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB for {csv_path.name}"
    return result


def test_a_huge_field_is_refused_with_flat_memory(tmp_path: Path) -> None:
    one_line = tmp_path / "one-line.csv"
    with open(one_line, "wb") as handle:
        handle.write(b"phone_number,messaging_profile_id\n+13125550101,")
        for _ in range(60):
            handle.write(b"a" * 1_000_000)  # one 60 MB line, without holding it in this process
        handle.write(b"\n")
    result = _validate_measured(one_line, tmp_path)
    assert_clean_error(result, 2, f"{one_line}:2", "longer than 1 MiB")

    runaway = tmp_path / "runaway-quote.csv"  # a quote never closed swallows every later line
    _write_lines(runaway, 'phone_number,messaging_profile_id\n+13125550101,"', b"+13125550102,x\n", 2_000_000)
    result = _validate_measured(runaway, tmp_path)
    assert_clean_error(result, 2, f"{runaway}:2", "64 KiB")


def test_a_huge_line_count_streams_with_flat_memory_and_a_bounded_message(tmp_path: Path) -> None:
    blank = _write_lines(tmp_path / "blank-lines.csv", "phone_number,messaging_profile_id", b",\n", 3_000_000)
    result = _validate_measured(blank, tmp_path)
    assert result.returncode == 0, result.describe()
    assert json.loads(result.stdout)["rows"] == 0

    invalid = _write_lines(tmp_path / "invalid-rows.csv", "phone_number,messaging_profile_id", b"x,=y\n", 100_000)
    result = _validate_measured(invalid, tmp_path)
    assert_clean_error(result, 2, str(invalid), "200000 errors")
    assert len(result.stderr) < 64 * 1024, "the error message grows with the number of bad rows"


def test_a_million_duplicate_rows_collapse_to_one_with_flat_memory(tmp_path: Path) -> None:
    dups = _write_lines(tmp_path / "million.csv", "phone_number,messaging_profile_id",
                        f"+13125550101,{PROFILE}\n".encode(), 1_000_000)
    result = _validate_measured(dups, tmp_path)
    assert result.returncode == 0, result.describe()
    summary = json.loads(result.stdout)
    assert (summary["rows"] - summary["collapsed"], summary["collapsed"]) == (1, 999_999)


# --- expected failures: Error: and the documented code, never a traceback -------------------

@pytest.mark.parametrize("case", [
    "missing_csv",
    "bad_kind_flag",
    "bad_kind_in_job_file",
])
async def test_bad_input_exits_2_with_an_error_line(case: str, tmp_path: Path) -> None:
    csv_path = write_assign_csv(tmp_path / "numbers.csv", [("+13125550101", PROFILE)])
    common: Args = ["--journal", tmp_path / "j.db", "--base-url", closed_port_url(), "--yes"]
    args: Args
    if case == "missing_csv":
        args, mention = ["run", "--kind", "assign", "--csv", tmp_path / "nope.csv", *common], "nope.csv"
    elif case == "bad_kind_flag":
        args, mention = ["run", "--kind", "bogus", "--csv", csv_path, *common], "bogus"
    else:
        job = tmp_path / "job.toml"
        job.write_text(f'kind = "bogus"\ncsv = "{csv_path.name}"\n')
        args, mention = ["run", job, *common], "bogus"
    result = await run_cli(args, env=cli_env(CANARY_KEY))
    assert_clean_error(result, 2, mention)
    assert not (tmp_path / "j.db").exists()


async def test_a_journal_held_by_another_process_exits_5_with_an_error_line(tmp_path: Path) -> None:
    journal_path = tmp_path / "held.db"
    await _real_journal(journal_path, rows=10)
    csv_path = write_assign_csv(tmp_path / "numbers.csv", [("+13125550101", PROFILE)])
    holder = await Journal.open(journal_path)  # this test process holds the lock, as a live run would
    try:
        commands: list[Args] = [
            ["run", "--kind", "assign", "--csv", csv_path, "--journal", journal_path,
             "--base-url", closed_port_url(), "--yes"],
            ["retry-failed", "--journal", journal_path, "--base-url", closed_port_url(), "--yes"],
        ]
        for args in commands:
            result = await run_cli(args, env=cli_env(CANARY_KEY))
            assert_clean_error(result, 5, str(journal_path), f"pid {os.getpid()}")
    finally:
        await holder.close()


async def test_an_unreachable_api_exits_7_with_an_error_line(tmp_path: Path) -> None:
    csv_path = write_assign_csv(tmp_path / "numbers.csv", [("+13125550101", PROFILE)])
    result = await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--journal", tmp_path / "j.db",
                            "--base-url", closed_port_url(), "--yes", "--max-attempts", "2"],
                           env=cli_env(CANARY_KEY))
    assert_no_key_in_result("a run against a closed port", result)
    assert_clean_error(result, 7, "could not connect")


# --- redaction: whole tokens, only in values -------------------------------------------------

@pytest.mark.parametrize(("text", "shown"), [
    ("Authorization: Bearer k", "Authorization: Bearer ***"),
    ('{"detail": "key k is invalid"}', '{"detail": "key *** is invalid"}'),
    ("k", "***"),
    ("kind=assign", "kind=assign"),
    ("the key ok, kk, k_1 and k-2 stay", "the key ok, kk, k_1 and k-2 stay"),
])
def test_redaction_replaces_the_key_only_as_a_whole_token(text: str, shown: str) -> None:
    assert redact(text, "k") == shown


def test_redaction_of_a_real_looking_key_catches_it_between_punctuation() -> None:
    key = "KEY0123456789ABCDEF_abcdefghij"
    assert redact(f"echo:{key}.", key) == "echo:***."
    assert redact(f"x{key}", key) == f"x{key}"  # part of a longer token: not this key


async def test_a_one_letter_key_leaves_the_ledger_words_intact(sandbox_factory: SandboxFactory,
                                                               tmp_path: Path) -> None:
    async with sandbox_factory(numbers=50, profiles=2, seed=1, api_key="k") as sandbox:
        csv_path, _, _ = small_csv(tmp_path, sandbox, 5)
        result = await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--journal",
                                tmp_path / "j.db", "--base-url", sandbox.base_url, "--yes"],
                               env=cli_env("k"))
    assert result.returncode == 0, result.describe()
    assert "kind=assign" in result.stderr, result.describe()
    assert "***" not in result.output, result.describe()


def test_the_log_filter_redacts_the_values_of_a_line_not_its_wording() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    logger = logging.getLogger("bulkops.test-redaction")
    handler = Keep()
    handler.addFilter(Redact("k"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("kind=%s answer=%s", "assign", "bad key k")
        logger.warning("prebuilt: kind=assign key=k")
    finally:
        logger.removeHandler(handler)
    assert records == ["kind=assign answer=bad key ***", "prebuilt: kind=assign key=***"]

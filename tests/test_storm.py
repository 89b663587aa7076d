"""Failure storms: when every write fails the same way, stop early, keep the journal, resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bulkops.config import Secret
from bulkops.errors import ExitCode, InputError
from bulkops.input.jobfile import load_job_file
from bulkops.jobs import retry_failed
from bulkops.journal.states import JobState
from bulkops.journal.store import Journal
from bulkops.journal.states import ItemState
from bulkops.models import ApiErrorInfo, Kind
from bulkops.sandbox import Sandbox
from bulkops.storm import FailureStorm, FailureStormError
from tests.harness import cli_env, run_cli
from tests.jobhelpers import journal_items, other_profile, patches, run, settings_for, write_csv

REFUSED = ApiErrorInfo(422, "10015", "Invalid value", "cannot be enabled for messaging")


def test_a_storm_is_the_limit_of_permanent_failures_in_a_row_with_one_code() -> None:
    storm = FailureStorm(3)
    storm.failed(2, REFUSED, permanent=True)
    storm.failed(3, REFUSED, permanent=True)
    with pytest.raises(FailureStormError) as caught:
        storm.failed(4, REFUSED, permanent=True)
    assert caught.value.exit_code is ExitCode.FAILED_ROWS
    assert "code 10015" in str(caught.value) and "lines: 2, 3, 4" in str(caught.value)


@pytest.mark.parametrize(
    "interruption",
    [
        lambda storm: storm.succeeded(),
        lambda storm: storm.failed(9, ApiErrorInfo(503, "10007"), permanent=False),
        lambda storm: storm.failed(9, ApiErrorInfo(404, "10005"), permanent=True),
    ],
    ids=["a success", "a transient failure", "another code"],
)
def test_a_success_a_transient_failure_or_another_code_ends_the_streak(
        interruption: Callable[[FailureStorm], None]) -> None:
    storm = FailureStorm(3)
    storm.failed(2, REFUSED, permanent=True)
    storm.failed(3, REFUSED, permanent=True)
    interruption(storm)
    storm.failed(4, REFUSED, permanent=True)
    storm.failed(5, REFUSED, permanent=True)  # two in a row again: no storm yet
    with pytest.raises(FailureStormError, match="lines: 4, 5, 6"):  # the streak began after it
        storm.failed(6, REFUSED, permanent=True)


def test_zero_turns_the_stop_off() -> None:
    storm = FailureStorm(0)
    recorded = 0
    for line in range(1000):
        storm.failed(line, REFUSED, permanent=True)  # a limit it counted would raise at some point
        recorded += 1
    assert recorded == 1000


async def test_a_storm_stops_the_job_with_exit_3_naming_the_code_and_the_first_lines(
        sandbox: Sandbox, tmp_path: Path) -> None:
    # Numbers not on the account fail without a request (issue 23), so the storm is made of
    # writes the server answers 200 and does not apply: the same "not applied" each time.
    numbers = sandbox.numbers()[:40]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
    sandbox.set_ignore_writes(True)

    with pytest.raises(FailureStormError) as caught:
        await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db", concurrency=2,
                  max_consecutive_failures=10, mode="patch")

    message = str(caught.value)
    assert caught.value.exit_code is ExitCode.FAILED_ROWS
    assert "the last 10 writes all failed with HTTP 200 not applied" in message
    assert "First failing lines: 2, 3" in message and str(tmp_path / "a.db") in message
    assert patches(sandbox) <= 10 + 2  # the streak, plus what was already in flight
    items = await journal_items(tmp_path / "a.db")
    states = [i.state for i in items.values()]
    assert states.count(ItemState.FAILED) >= 10 and states.count(ItemState.PENDING) >= 25
    async with await Journal.open(tmp_path / "a.db", lock=False) as journal:
        assert (await journal.job(1)).state is JobState.ABORTED


async def test_after_a_storm_the_fixed_job_resumes_to_the_exact_final_state(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:30]
    targets = {n: other_profile(sandbox, sandbox.profile_of(n)) for n in numbers}
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], targets.items())
    sandbox.set_ignore_writes(True)  # every PATCH answers 200 but changes nothing: "not applied"

    with pytest.raises(FailureStormError, match="HTTP 200 not applied"):
        await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db", concurrency=2,
                  max_consecutive_failures=5)
    sent = patches(sandbox)
    assert sent <= 5 + 2

    sandbox.set_ignore_writes(False)  # the cause is fixed
    result = await retry_failed(tmp_path / "a.db", settings_for(sandbox), Secret(sandbox.api_key))

    assert result.exit_code is ExitCode.OK
    assert {n: sandbox.profile_of(n) for n in numbers} == targets
    assert patches(sandbox) - sent == len(numbers)  # each row sent once more, none twice


async def test_the_cli_stops_a_storm_with_exit_3_and_no_traceback(sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:20]  # on the account: writes answered 200, never applied
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
    sandbox.set_ignore_writes(True)

    result = await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--journal", tmp_path / "a.db",
                            "--base-url", sandbox.base_url, "--yes", "--concurrency", "1",
                            "--max-consecutive-failures", "4", "--mode", "patch"],
                           env=cli_env(sandbox.api_key))

    assert result.returncode == ExitCode.FAILED_ROWS, result.stderr
    assert "Error: stopped: the last 4 writes all failed with HTTP 200 not applied" in result.stderr
    assert "Traceback" not in result.stderr
    assert patches(sandbox) == 4


async def test_a_negative_limit_is_a_usage_error(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number"], [("+13125550101",)])

    result = await run_cli(["run", "--kind", "unassign", "--csv", csv_path,
                            "--max-consecutive-failures", "-1"], env=cli_env("any-key"))

    assert result.returncode == ExitCode.INPUT
    assert result.stderr.startswith("Error: --max-consecutive-failures must be a whole number from 0")


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("200", 200)])
def test_job_file_limits_take_max_consecutive_failures(tmp_path: Path, value: str, expected: int) -> None:
    (tmp_path / "a.csv").write_text("phone_number\n+13125550101\n", encoding="utf-8")
    job = tmp_path / "job.toml"
    job.write_text(f'kind = "unassign"\ncsv = "a.csv"\n[limits]\nmax_consecutive_failures = {value}\n',
                   encoding="utf-8")
    assert load_job_file(job).max_consecutive_failures == expected


def test_job_file_refuses_a_negative_max_consecutive_failures(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("phone_number\n+13125550101\n", encoding="utf-8")
    job = tmp_path / "job.toml"
    job.write_text('kind = "unassign"\ncsv = "a.csv"\n[limits]\nmax_consecutive_failures = -1\n',
                   encoding="utf-8")
    with pytest.raises(InputError, match="max_consecutive_failures: must be a whole number from 0"):
        load_job_file(job)

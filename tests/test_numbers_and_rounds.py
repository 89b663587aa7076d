"""Numbers and rounds (issue #23): every number in a flag or a job file is checked (finite, in
range) with an error naming the flag, exit 2, JSON under --json; every problem of the input is
reported in one pass."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bulkops.config import LIMITS, RunSettings
from bulkops.errors import ConfigError, ExitCode
from bulkops.sandbox import Sandbox
from tests.harness import CliResult, assert_clean_error, cli_env, closed_port_url, read_report, run_cli
from tests.jobhelpers import other_profile, patches, write_csv


def _csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "a.csv", ["phone_number"], [("+13125550101",)])


async def _run(tmp_path: Path, *flags: str) -> CliResult:
    # Nothing listens at the base URL: a flag that got through would show as exit 7, not 2.
    return await run_cli(["run", "--kind", "unassign", "--csv", _csv(tmp_path), "--yes",
                          "--base-url", closed_port_url(), *flags], env=cli_env("any-key"))


@pytest.mark.parametrize(("flag", "value"), [
    ("--rate", "nan"), ("--rate", "inf"), ("--rate", "0.001"), ("--rate", "0"), ("--rate", "-5"),
    ("--rate", "5/s"), ("--timeout", "inf"), ("--timeout", "0"), ("--timeout", "1e400"),
    ("--max-server-wait", "nan"), ("--max-server-wait", "-1"), ("--max-retry-seconds", "NaN"),
    ("--concurrency", "1e3"), ("--concurrency", "0"), ("--concurrency", "5000"),
    ("--max-attempts", "2.5"), ("--bulk-size", "-5"), ("--bulk-min", "many"),
    ("--order-timeout", "0"), ("--max-consecutive-failures", "-1"),
])
async def test_a_bad_number_in_a_flag_is_exit_2_naming_the_flag_with_json_under_json(
        tmp_path: Path, flag: str, value: str) -> None:
    result = await _run(tmp_path, flag, value, "--json")

    assert_clean_error(result, 2, f"{flag} must be")
    answer = json.loads(result.stdout)
    assert answer["exit_code"] == 2 and flag in answer["error"]


async def test_every_bad_flag_is_named_in_one_error(tmp_path: Path) -> None:
    result = await _run(tmp_path, "--rate", "nan", "--timeout", "inf", "--concurrency", "0")

    assert_clean_error(result, 2, "3 flags are wrong", "--rate", "--timeout", "--concurrency")


async def test_export_and_profiles_check_their_numbers_too(tmp_path: Path) -> None:
    export = await run_cli(["export", "--output", "-", "--rate", "nan", "--base-url",
                            closed_port_url()], env=cli_env("any-key"))
    profiles = await run_cli(["profiles", "--json", "--max-server-wait", "inf", "--base-url",
                              closed_port_url()], env=cli_env("any-key"))

    assert_clean_error(export, 2, "--rate must be")
    assert_clean_error(profiles, 2, "--max-server-wait must be")
    assert json.loads(profiles.stdout)["exit_code"] == 2


async def test_a_usage_error_under_json_answers_json_on_stdout(tmp_path: Path) -> None:
    result = await _run(tmp_path, "--mode", "fast", "--json")

    assert_clean_error(result, 2, "--mode")
    assert json.loads(result.stdout)["exit_code"] == 2


async def test_a_job_file_reports_every_problem_at_once_with_the_bad_flags(tmp_path: Path) -> None:
    _csv(tmp_path)
    job = tmp_path / "job.toml"
    job.write_text('kind = "asign"\ncsv = "a.csv"\nverfy = true\nmode = "fast"\n'
                   "[limits]\nrate = nan\nconcurrency = 0\nmax_attempts = 2.5\n", encoding="utf-8")

    result = await run_cli(["run", job, "--timeout", "inf", "--base-url", closed_port_url()],
                           env=cli_env("any-key"))

    assert_clean_error(result, 2, f"{job} has 6 problems", f"{job}:1: kind", f"{job}:3: verfy",
                       f"{job}:4: mode", f"{job}:6: limits.rate", f"{job}:7: limits.concurrency",
                       f"{job}:8: limits.max_attempts", "--timeout must be")


@pytest.mark.parametrize("key", sorted(LIMITS))
def test_every_limit_refuses_nan_and_infinities(key: str) -> None:
    limit = LIMITS[key]
    for value in (math.nan, math.inf, -math.inf, "nan", "inf", "-inf", "1e999"):
        with pytest.raises(ValueError, match="must be"):
            limit.parse(value)


def test_library_callers_get_the_same_checks() -> None:
    with pytest.raises(ConfigError, match="--rate must be"):
        RunSettings(rate=math.nan)
    with pytest.raises(ConfigError, match="--timeout must be"):
        RunSettings(timeout=math.inf)
    with pytest.raises(ConfigError, match="--max-server-wait must be"):
        RunSettings(max_server_wait=math.nan)


# --- every problem of the input in one pass; --skip-invalid covers each kind -----------------

GHOST = "0b8f2a64-1111-4c3e-9a8e-5d6f7a8b9c0d"  # a well-formed UUID no account has


def _mixed_csv(sandbox: Sandbox, path: Path) -> tuple[Path, list[tuple[str, str]]]:
    """Good rows around one of each per-row problem people make."""
    numbers = sandbox.numbers()
    good = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers[:4]]
    first, second = sandbox.profile_ids()[:2]
    rows = [good[0],
            ("+1 312 555", first),  # line 3: not a phone number
            (numbers[10], GHOST),  # line 4: a profile UUID the account does not have
            good[1],
            (numbers[11], first), (numbers[11], second),  # lines 6, 7: one number, two targets
            (numbers[12], "No Such Profile Name"),  # line 8: a name the account does not have
            good[2], good[3]]
    return write_csv(path, ["phone_number", "messaging_profile_id"], rows), good


async def test_syntax_errors_unknown_profiles_and_conflicts_come_in_one_error(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path, _ = _mixed_csv(sandbox, tmp_path / "a.csv")
    base: list[str | Path] = ["--kind", "assign", "--csv", csv_path, "--base-url", sandbox.base_url]

    run = await run_cli(["run", *base, "--yes"], env=cli_env(sandbox.api_key))
    check = await run_cli(["validate", *base], env=cli_env(sandbox.api_key))

    for result in (run, check):
        assert_clean_error(result, 2, f"{csv_path}:3:", f"{csv_path}:4: messaging profile {GHOST} "
                           "does not exist", f"{csv_path}:8:", "No Such Profile Name",
                           "gives 1 number(s) two different targets")
    assert patches(sandbox) == 0


async def test_skip_invalid_rejects_every_kind_of_bad_row_and_runs_the_rest(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path, good = _mixed_csv(sandbox, tmp_path / "a.csv")
    before = sandbox.dump()

    result = await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--yes", "--skip-invalid",
                            "--journal", tmp_path / "a.db", "--mode", "patch", "--base-url",
                            sandbox.base_url], env=cli_env(sandbox.api_key))

    assert result.returncode == ExitCode.FAILED_ROWS, result.describe()
    assert all(sandbox.profile_of(n) == p for n, p in good)
    numbers = sandbox.numbers()
    assert {n: sandbox.profile_of(n) for n in numbers[10:13]} == {n: before[n] for n in numbers[10:13]}
    assert patches(sandbox) == len(good)
    report = {r["line"]: r for r in read_report(tmp_path / "a.report.csv")}
    assert {line for line, r in report.items() if r["final_state"] == "rejected"} == {
        "3", "4", "6", "7", "8"}
    assert "does not exist on this account" in report["4"]["error_detail"]
    assert "line 7 to" in report["6"]["error_detail"] and "line 6 to" in report["7"]["error_detail"]
    # as every rejected cell, kept inert for spreadsheets
    assert report["4"]["phone_number"] == "'" + numbers[10] and report["4"]["desired_profile_id"] == GHOST


async def test_skip_invalid_rejects_a_migrate_row_naming_a_profile_the_account_lacks(
        sandbox: Sandbox, tmp_path: Path) -> None:
    source = sandbox.profile_ids()[0]
    csv_path = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"], [(source, GHOST)])
    before = sandbox.dump()

    refused = await run_cli(["run", "--kind", "migrate", "--csv", csv_path, "--yes", "--base-url",
                             sandbox.base_url], env=cli_env(sandbox.api_key))
    skipped = await run_cli(["run", "--kind", "migrate", "--csv", csv_path, "--yes", "--skip-invalid",
                             "--journal", tmp_path / "m2.db", "--base-url", sandbox.base_url],
                            env=cli_env(sandbox.api_key))

    assert_clean_error(refused, 2, f"messaging profile {GHOST} does not exist")
    assert skipped.returncode == ExitCode.FAILED_ROWS, skipped.describe()
    assert sandbox.dump() == before

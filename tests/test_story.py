"""The run's story in the journal (series and runs, schema 3), the run history `status` lists,
`status --watch` on a run another process holds, and JSON Lines output."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from bulkops.config import Secret
from bulkops.errors import ExitCode
from bulkops.execute import make_client
from bulkops.jobs import job_history, rollback
from bulkops.journal.records import SeriesPoint
from bulkops.journal.sqlite import SCHEMA_VERSION
from bulkops.journal.store import Journal
from bulkops.models import Kind
from bulkops.sandbox import Sandbox
from bulkops.story import Recorder, coarsen

from tests.conftest import SandboxFactory
from tests.harness import cli_command, cli_env, run_cli
from tests.jobhelpers import other_profile, run, run_started, settings_for, write_csv
from tests.journal_kit import loaded


def test_coarsening_merges_pairs_of_buckets_adding_counts_and_keeping_the_latest_gauges() -> None:
    points = [SeriesPoint(100 + s, 1, requests=s, failed=1, orders_open=s, rate_limit=float(s))
              for s in range(4)]

    merged = coarsen(points, 2)

    assert [(p.t, p.width, p.requests, p.failed, p.orders_open, p.rate_limit) for p in merged] == [
        (100, 2, 0 + 1, 2, 1, 1.0), (102, 2, 2 + 3, 2, 3, 3.0)]


async def test_a_long_run_keeps_at_most_max_points_growing_coarser_and_losing_no_count(
        sandbox: Sandbox, tmp_path: Path) -> None:
    journal = await loaded(tmp_path / "a.db", 1)
    clock = [1_800_000_000.0]
    client = make_client(settings_for(sandbox), Secret(sandbox.api_key))
    recorder = Recorder(journal, 1, client, clock=lambda: clock[0], max_points=50)
    try:
        await recorder.start()
        for _ in range(1_000):  # 1,000 seconds of a run, sampled once a second
            await recorder.sample()
            clock[0] += 1
        points = await journal.series(1)
    finally:
        await journal.close()

    assert 25 <= len(points) <= 50
    assert {p.width for p in points} == {recorder.width} and recorder.width == 32
    assert all(p.t % p.width == 0 for p in points)


async def test_a_run_journals_its_series_and_its_start_end_and_exit_code(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:20]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])

    await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db")

    async with await Journal.open(tmp_path / "a.db", lock=False) as journal:
        points = await journal.series(1)
        (run_record,) = await journal.runs(1)
    assert sum(p.done for p in points) == 20
    assert sum(p.requests for p in points) == sum(p.answers_2xx + p.answers_4xx + p.answers_5xx
                                                  for p in points) >= 20
    assert run_record.ended_at and run_record.state == "finished" and run_record.exit_code == 0


async def test_a_version_2_journal_is_upgraded_to_3_with_the_story_tables(tmp_path: Path) -> None:
    journal = await loaded(tmp_path / "old.db", 3)
    await journal.close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # what bulkops 2 left behind
        db.execute("DROP TABLE series")
        db.execute("DROP TABLE runs")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.close()

    (history,) = await job_history(tmp_path / "old.db")  # a read-only command upgrades it

    assert history.span.runs == 0 and history.in_effect == "not run"
    with sqlite3.connect(tmp_path / "old.db") as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)
        assert db.execute("SELECT COUNT(*) FROM series").fetchone() == (0,)
    db.close()


async def test_status_says_which_job_undid_which_and_which_is_in_effect(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:6]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
    await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db")
    await rollback(tmp_path / "a.db", settings_for(sandbox), Secret(sandbox.api_key))

    done = await run_cli(["status", "--journal", tmp_path / "a.db"], env=cli_env())
    as_json = await run_cli(["status", "--journal", tmp_path / "a.db", "--json"], env=cli_env())

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("#1 started ") and "rolled back by #2; not in effect (undone)" in line
               for line in lines), lines
    assert any(line.startswith("#2 started ") and "undoes #1; in effect" in line for line in lines)
    (record,) = as_json.stdout.splitlines()
    jobs = json.loads(record)["jobs"]
    assert [(j["id"], j["undoes"], j["rolled_back_by"], j["in_effect"]) for j in jobs] == [
        (1, None, 2, "no"), (2, 1, None, "yes")]
    assert all(j["started_at"] and j["ended_at"] and j["duration_s"] >= 0 for j in jobs)


async def test_status_puts_a_job_back_in_effect_once_its_rollback_is_rolled_back(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:6]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
    await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db")
    await rollback(tmp_path / "a.db", settings_for(sandbox), Secret(sandbox.api_key))
    await rollback(tmp_path / "a.db", settings_for(sandbox), Secret(sandbox.api_key), job_id=2)

    as_json = await run_cli(["status", "--journal", tmp_path / "a.db", "--json"], env=cli_env())

    (record,) = as_json.stdout.splitlines()
    jobs = json.loads(record)["jobs"]
    assert [(j["id"], j["undoes"], j["rolled_back_by"], j["in_effect"]) for j in jobs] == [
        (1, None, 2, "yes"), (2, 1, 3, "no"), (3, 2, None, "yes")]


async def test_status_watch_follows_a_run_another_process_holds_until_it_ends(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=120, profiles=3, seed=5, rate=12, window=1) as sandbox:
        numbers = sandbox.numbers()[:60]  # about 5 s at 12 requests/s
        csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                             [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
        runner = await asyncio.create_subprocess_exec(
            *cli_command("run", "--kind", "assign", "--csv", csv_path, "--journal",
                         tmp_path / "a.db", "--base-url", sandbox.base_url, "--yes",
                         "--mode", "patch"),
            env=cli_env(sandbox.api_key), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            await run_started(tmp_path / "a.db")
            watched = await run_cli(["status", "--journal", tmp_path / "a.db", "--watch", "--json"],
                                    env=cli_env())
        finally:
            _, err = await runner.communicate()

    assert runner.returncode == 0, err.decode()
    assert watched.returncode == 0, watched.stderr
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert len(lines) >= 2 and not lines[0]["ended"] and lines[-1]["ended"]
    assert lines[-1]["exit_code"] == 0 and lines[-1]["done"] == 60
    assert all(line["command"] == "status" and line["started_at"] and line["ended_at"]
               for line in lines)


async def test_json_lines_have_one_envelope_on_success_and_on_a_usage_error(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:3]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])

    ok = await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--journal", tmp_path / "a.db",
                        "--base-url", sandbox.base_url, "--yes", "--json"],
                       env=cli_env(sandbox.api_key))
    usage = await run_cli(["run", "--kind", "assign", "--concurrency", "many", "--json"],
                          env=cli_env(sandbox.api_key))

    assert ok.returncode == 0 and usage.returncode == ExitCode.INPUT
    (good,), (bad,) = ok.stdout.splitlines(), usage.stdout.splitlines()
    envelope = {"command", "ok", "exit_code", "error", "started_at", "ended_at"}
    assert envelope <= set(json.loads(good)) and envelope <= set(json.loads(bad))
    assert json.loads(good)["ok"] is True and json.loads(good)["counts"]["done"] == 3
    bad_line = json.loads(bad)
    assert bad_line["ok"] is False and bad_line["exit_code"] == 2 and "--concurrency" in bad_line["error"]
    assert bad_line["started_at"] <= bad_line["ended_at"]

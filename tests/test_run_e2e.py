"""End-to-end runs of each job kind against the sandbox over loopback, with a real journal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import anyio
import pytest

from bulkops.config import Secret
from bulkops.errors import AuthError, ExitCode, JournalError, JournalLockedError
from bulkops.execute import make_client
from bulkops.journal.states import JobState
from bulkops.journal.store import Journal
from bulkops.journal.states import ItemState
from bulkops.models import Kind
from bulkops.progress import Tracker
from bulkops.runner import StopSignal, write_items
from bulkops.sandbox import FaultConfig, Sandbox
from bulkops.storm import FailureStorm

from tests.conftest import SandboxFactory
from tests.jobhelpers import journal_items, other_profile, patches, run, settings_for, write_csv
from tests.journal_kit import execute_sql
from tests.orders_kit import loaded_not_sent
from tests.poll_kit import wait_until


async def test_assign_moves_every_number_and_journals_each_row(sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:60]
    targets = {n: other_profile(sandbox, sandbox.profile_of(n)) for n in numbers}
    csv_path = write_csv(tmp_path / "assign.csv", ["phone_number", "messaging_profile_id", "ticket"],
                         [(n, targets[n], f"T-{i}") for i, n in enumerate(numbers)])

    result = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "run.db")

    assert {n: sandbox.profile_of(n) for n in numbers} == targets
    assert result.counts.get(ItemState.DONE) == 60 and result.exit_code is ExitCode.OK
    items = await journal_items(tmp_path / "run.db")
    assert all(i.state is ItemState.DONE and i.attempts == 1 for i in items.values())
    assert result.report_path is not None and "ticket" in result.report_path.read_text().splitlines()[0]


async def test_unassign_sends_empty_string_and_leaves_numbers_without_profile(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=100, profiles=3, seed=3, record=True) as sb:
        numbers = [n for n in sb.numbers() if sb.profile_of(n)][:20]
        csv_path = write_csv(tmp_path / "un.csv", ["phone_number"], [(n,) for n in numbers])

        result = await run(sb, Kind.UNASSIGN, csv_path, tmp_path / "un.db")

        assert all(sb.profile_of(n) is None for n in numbers)
        bodies = [e.request_json() for e in sb.recorded if e.method == "PATCH"]
        assert bodies and all(b == {"messaging_profile_id": ""} for b in bodies)
        assert result.counts.get(ItemState.DONE) == 20


async def test_migrate_moves_exactly_the_numbers_listed_before_the_first_write(
        sandbox: Sandbox, tmp_path: Path) -> None:
    source, target = sandbox.profile_ids()[0], sandbox.profile_ids()[1]
    on_source = [n for n in sandbox.numbers() if sandbox.profile_of(n) == source]
    assert len(on_source) > 20  # several pages would be needed at a small page size
    csv_path = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"], [(source, target)])

    result = await run(sandbox, Kind.MIGRATE, csv_path, tmp_path / "m.db")

    assert [n for n in on_source if sandbox.profile_of(n) != target] == []
    assert not any(p == source for p in sandbox.dump().values())
    items = await journal_items(tmp_path / "m.db")
    assert set(items) == set(on_source)
    assert {i.prior for i in items.values()} == {source}
    assert result.counts.get(ItemState.DONE) == len(on_source)


async def test_second_run_of_a_finished_journal_sends_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:10]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
    await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db")
    before = sandbox.stats.total_requests

    again = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db")

    assert sandbox.stats.total_requests == before
    assert again.counts.get(ItemState.DONE) == 10


async def test_resume_after_interruption_sends_only_what_was_left(sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:40]
    targets = {n: other_profile(sandbox, sandbox.profile_of(n)) for n in numbers}
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], targets.items())
    journal_path = tmp_path / "a.db"
    # Make the journal look like a run that died: rows 1-5 in flight (their writes landed),
    # rows 6-30 pending (their writes never happened), the rest done.
    await run(sandbox, Kind.ASSIGN, csv_path, journal_path)
    async with await Journal.open(journal_path) as journal:
        await execute_sql(
            journal, "UPDATE items SET state = 'in_flight' WHERE id IN (SELECT id FROM items ORDER BY id LIMIT 5)")
        await execute_sql(
            journal, "UPDATE items SET state = 'pending' WHERE id IN (SELECT id FROM items ORDER BY id LIMIT 25 OFFSET 5)")
    undone = numbers[5:30]
    for n in undone:
        sandbox.set_profile(n, None)
    sandbox.stats.reset()

    result = await run(sandbox, Kind.ASSIGN, csv_path, journal_path)

    assert {n: sandbox.profile_of(n) for n in numbers} == targets
    assert set(sandbox.stats.writes_by_number) == set(undone)  # in-flight rows that landed: read back
    assert result.counts.get(ItemState.DONE) == 40


async def test_rate_limit_storm_holds_every_worker_until_the_server_reset(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=200, profiles=3, seed=5, record=True, rate=30, window=2.0) as sb:
        numbers = sb.numbers()[:60]
        csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                             [(n, other_profile(sb, sb.profile_of(n))) for n in numbers])
        competitor_route = "GET /v2/messaging_profiles"
        stop = anyio.Event()

        async def competitor() -> None:
            # Another script on the same account spends the budget bulkops has learned about.
            headers = {"Authorization": f"Bearer {sb.api_key}"}
            async with aiohttp.ClientSession(headers=headers) as session:
                async def one() -> None:
                    async with session.get(f"{sb.base_url}/messaging_profiles") as answer:
                        await answer.read()

                for _ in range(4):  # bursts of 12 at once, early in the run: 48 of 2 windows' 60
                    async with anyio.create_task_group() as burst:
                        for _ in range(12):
                            burst.start_soon(one)
                    with anyio.move_on_after(0.3):
                        await stop.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(competitor)
            try:
                result = await run(sb, Kind.ASSIGN, csv_path, tmp_path / "a.db", concurrency=16)
            finally:
                stop.set()

        assert result.counts.get(ItemState.DONE) == 60
        ours = [e for e in sb.recorded if e.route != competitor_route]
        refused = [e for e in ours if e.status == 429]
        assert refused, "the storm should draw at least one 429"
        for e in refused:
            wait = float(e.header("Retry-After") or "0")
            early = [x for x in ours if e.answered_at + 0.3 < x.received_at < e.answered_at + wait - 1.0]
            assert early == [], f"{len(early)} request(s) arrived before the server's reset"
        assert len(refused) <= 16 * len({round(e.answered_at / 2.0) for e in refused})


@pytest.mark.parametrize("faults", [
    FaultConfig(error_rate=0.3, seed=1),
    FaultConfig(error_after_write_rate=0.3, seed=2),
    FaultConfig(drop_rate=0.2, seed=3),
    FaultConfig(slow_rate=0.1, slow_ms=3_000, seed=4),
], ids=["5xx-not-applied", "5xx-after-write", "dropped-connection", "slower-than-timeout"])
async def test_each_fault_kind_converges_to_the_exact_final_state(
        sandbox: Sandbox, tmp_path: Path, faults: FaultConfig) -> None:
    numbers = sandbox.numbers()[:50]
    targets = {n: other_profile(sandbox, sandbox.profile_of(n)) for n in numbers}
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], targets.items())
    sandbox.set_faults(faults)

    result = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db", timeout=1.0)

    assert {n: sandbox.profile_of(n) for n in numbers} == targets
    assert result.counts.get(ItemState.DONE) == 50 and result.counts.get(ItemState.FAILED) == 0
    assert sum(sandbox.stats.faults_injected.values()) > 0


async def test_numbers_not_on_the_account_are_failed_per_row_without_a_request(
        sandbox: Sandbox, tmp_path: Path) -> None:
    # Issue 23: the read-back already shows the API does not know them; a PATCH would be a 404.
    good = sandbox.numbers()[:5]
    missing = ["+13125550199", "+13125550198"]  # valid E.164, not on this account
    rows = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in good]
    rows += [(n, sandbox.profile_ids()[0]) for n in missing]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], rows)

    result = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db", mode="patch")

    items = await journal_items(tmp_path / "a.db")
    failed = {n: (i.attempts, i.error_title) for n, i in items.items() if i.state is ItemState.FAILED}
    assert failed == {n: (0, "not on this account") for n in missing}
    assert patches(sandbox) == len(good)
    assert result.exit_code is ExitCode.FAILED_ROWS
    assert result.message is not None and "2 of the 7 numbers are not on the account" in result.message


async def test_rejected_key_aborts_the_job_and_keeps_progress(sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:10]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number"], [(n,) for n in numbers])

    with pytest.raises(AuthError) as caught:
        await run(sandbox, Kind.UNASSIGN, csv_path, tmp_path / "a.db", key="not-the-key")

    assert "not-the-key" not in str(caught.value)
    assert patches(sandbox) == 0
    items = await journal_items(tmp_path / "a.db")
    assert {i.state for i in items.values()} == {ItemState.PENDING}


async def test_auth_failure_mid_run_stops_the_pool_and_marks_the_job_aborted(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:10]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number"], [(n,) for n in numbers])
    await run(sandbox, Kind.UNASSIGN, csv_path, tmp_path / "a.db")
    async with await Journal.open(tmp_path / "a.db") as journal:
        await journal.set_job_state(1, JobState.READY)
        await execute_sql(journal, "UPDATE items SET state = 'pending'")
    for n in numbers:
        sandbox.set_profile(n, sandbox.profile_ids()[0])

    with pytest.raises(AuthError, match="resume"):
        await run(sandbox, Kind.UNASSIGN, csv_path, tmp_path / "a.db", key="revoked")

    async with await Journal.open(tmp_path / "a.db", lock=False) as journal:
        assert (await journal.job(1)).state in (JobState.ABORTED, JobState.READY)


async def test_changed_csv_is_refused_on_resume(sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:5]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number"], [(n,) for n in numbers])
    await run(sandbox, Kind.UNASSIGN, csv_path, tmp_path / "a.db")
    write_csv(csv_path, ["phone_number"], [(n,) for n in sandbox.numbers()[:6]])
    before = sandbox.stats.total_requests

    with pytest.raises(JournalError, match="has changed since"):
        await run(sandbox, Kind.UNASSIGN, csv_path, tmp_path / "a.db")

    assert sandbox.stats.total_requests == before


async def test_second_process_on_the_same_journal_refuses_to_start(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number"], [(sandbox.numbers()[0],)])
    await run(sandbox, Kind.UNASSIGN, csv_path, tmp_path / "a.db")
    async with await Journal.open(tmp_path / "a.db"):
        env = dict(os.environ, TELNYX_API_KEY=sandbox.api_key)
        proc = subprocess.run(
            [sys.executable, "-m", "bulkops.cli", "run", "--kind", "unassign", "--csv", str(csv_path),
             "--journal", str(tmp_path / "a.db"), "--base-url", sandbox.base_url, "--yes"],
            env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == ExitCode.LOCKED, proc.stderr
    assert proc.stderr.startswith("Error: ") and "Traceback" not in proc.stderr
    with pytest.raises(JournalLockedError):
        async with await Journal.open(tmp_path / "a.db"):
            async with await Journal.open(tmp_path / "a.db"):
                pass


async def test_snapshot_falls_back_to_one_read_per_number_when_the_list_filter_is_refused(
        sandbox: Sandbox, tmp_path: Path) -> None:
    from aiohttp import web

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/phone_numbers/messaging") and request.method == "GET":
            body = {"errors": [{"code": "10015", "title": "Invalid filter", "detail": "unsupported"}]}
            return web.json_response(body, status=400)
        async with aiohttp.ClientSession() as session:
            async with session.request(
                request.method, sandbox.base_url[: -len("/v2")] + request.rel_url.raw_path_qs,
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                data=await request.read(),
            ) as answer:
                return web.Response(status=answer.status, body=await answer.read(),
                                    content_type=answer.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        numbers = sandbox.numbers()[:6]
        in_place = numbers[0]
        rows = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers[1:]]
        rows.append((in_place, sandbox.profile_of(in_place) or sandbox.profile_ids()[0]))
        sandbox.set_profile(in_place, rows[-1][1])
        csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], rows)

        result = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db",
                           base_url=f"http://127.0.0.1:{port}/v2")
    finally:
        await runner.cleanup()

    assert result.counts.get(ItemState.DONE) == 5 and result.counts.get(ItemState.SKIPPED) == 1
    assert sandbox.stats.count(route="GET /v2/phone_numbers/{id}/messaging") == 6


async def test_ctrl_c_sends_no_row_that_was_still_waiting_for_the_rate_limiter(
        sandbox: Sandbox, tmp_path: Path) -> None:
    """16 workers at 5 requests/s: after the stop, the rows queued at the limiter go back to
    pending instead of being sent one by one through the grace period."""
    target = sandbox.profile_ids()[1]
    rows = [(n, target) for n, p in sandbox.dump().items() if p != target][:40]
    request = await loaded_not_sent(sandbox, tmp_path, rows)
    stop = StopSignal()
    async with await Journal.open(request.journal_path) as journal:
        client = make_client(settings_for(sandbox, rate=5.0), Secret(sandbox.api_key))
        async with client, anyio.create_task_group() as tg:
            async def write() -> None:
                (await write_items(journal, 1, client, Tracker("write", total=40), concurrency=16,
                                   stop=stop, storm=FailureStorm(0))).raise_if_set()

            tg.start_soon(write)
            await wait_until(lambda: patches(sandbox) >= 3, within=10,
                             what="3 PATCHes (the pool writing, its queue full)")
            stop.request("SIGINT")
            sent_at_stop = patches(sandbox)
    items = await journal_items(request.journal_path)
    assert patches(sandbox) <= sent_at_stop + 1  # at most the one already on the wire
    done = [i for i in items.values() if i.state is ItemState.DONE]
    assert len(done) == patches(sandbox)
    assert all(i.state is ItemState.PENDING for i in items.values() if i.state is not ItemState.DONE)

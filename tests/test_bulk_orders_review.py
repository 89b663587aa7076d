"""Bulk orders, the reviewed edges: the failure storm and --concurrency hold while orders run,
Ctrl-C posts nothing after the stop, an order POST is never repeated once it may have landed,
and an order whose answer is unusable is read back, never taken as refused."""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from bulkops.config import RunSettings, Secret
from bulkops.errors import InputError, Interrupted, JournalError, JournalLockedError
from bulkops.execute import make_client
from bulkops.healing import decide
from bulkops.jobs import JobRequest, retry_failed, rollback, run_job
from bulkops.journal.records import Item
from bulkops.journal.sqlite import lock_file
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops.models import Kind
from bulkops.orders import MAX_OPEN_ORDERS, OrderPipeline
from bulkops.plan import PlanSummary
from bulkops.progress import Tracker
from bulkops.runner import StopSignal
from bulkops.sandbox import Sandbox
from bulkops.storm import FailureStorm, FailureStormError
from bulkops.telnyx.retry import GaveUp, RetryPolicy
from tests.client_kit import KEY, FakeTelnyx, Respond, drop, meta, reply, server  # noqa: F401 (fixture)
from tests.client_kit import make_client as kit_client
from tests.conftest import SandboxFactory
from tests.harness import closed_port_url, journal_snapshot, write_assign_csv
from tests.jobhelpers import patches, run, settings_for
from tests.orders_kit import loaded_not_sent, mixed_rows, orders_of, posts
from tests.poll_kit import wait_until

ORDERS = "/v2/messaging_numbers_bulk_updates"


# --- one storm, one bound, for every order's leftovers -----------------------------------------


async def test_a_failure_storm_stops_a_bulk_job_whose_orders_and_patches_all_fail(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    async with sandbox_factory(numbers=400, profiles=3, seed=21, bulk_speed=5000,
                               order_fail_rate=1.0, ignore_writes=True) as sandbox:
        rows = mixed_rows(sandbox, 300)
        with pytest.raises(FailureStormError, match=r"the last 2\d writes all failed"):
            await run(sandbox, Kind.ASSIGN, write_assign_csv(tmp_path / "a.csv", rows),
                      tmp_path / "a.db", mode="bulk", bulk_size=100, concurrency=4,
                      max_consecutive_failures=20)
        assert patches(sandbox) <= 20 + 4  # the streak, plus what was already in flight
        counts, _ = await journal_snapshot(tmp_path / "a.db")
        assert counts.get(ItemState.PENDING) >= 300 - 20 - 4


async def test_patches_of_settled_orders_share_one_concurrency_bound(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    async with sandbox_factory(numbers=700, profiles=3, seed=22, bulk_speed=5000,
                               order_fail_rate=1.0, faults={"latency_ms": 40}) as sandbox:
        rows = mixed_rows(sandbox, 600)
        result = await run(sandbox, Kind.ASSIGN, write_assign_csv(tmp_path / "a.csv", rows),
                           tmp_path / "a.db", mode="bulk", bulk_size=50, concurrency=4)
        assert result.exit_code == 0 and patches(sandbox) == 600
        orders = len(await orders_of(tmp_path / "a.db"))
        # --concurrency PATCHes, plus at most one request per open order (poll or read-back).
        assert sandbox.stats.peak_in_flight <= 4 + min(orders, MAX_OPEN_ORDERS)


async def test_the_patches_of_all_settled_orders_never_exceed_concurrency_together(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    async with sandbox_factory(numbers=400, profiles=3, seed=23, bulk_speed=5000,
                               order_fail_rate=1.0, faults={"latency_ms": 30}) as sandbox:
        target = sandbox.profile_ids()[1]
        rows = [(n, target) for n, p in sandbox.dump().items() if p != target][:200]
        journal_path = (await loaded_not_sent(sandbox, tmp_path, rows)).journal_path
        settings = settings_for(sandbox, bulk_size=20, concurrency=3)
        in_flight = peak = 0
        async with await Journal.open(journal_path) as journal:
            pipeline, client = _pipeline(journal, settings, StopSignal(), sandbox.api_key)
            # Re-order whatever the first orders left, whatever it costs: then every re-order
            # settles with all its numbers failed (a second time) and PATCHes them at once.
            pipeline.rule = lambda groups, chunk, figures: dataclasses.replace(
                decide(groups, chunk, figures), reorder=True)
            writer = pipeline.writer

            async def counted(item: Item) -> None:  # the real Writer, its PATCHes counted
                nonlocal in_flight, peak
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    await writer(item)
                finally:
                    in_flight -= 1

            pipeline.writer = counted  # type: ignore[assignment]
            async with client:
                assert (await pipeline.run()).error is None
        assert patches(sandbox) == 200  # every re-order left all its numbers to PATCH
        assert peak == 3  # 40 re-orders, their pools overlapping: exactly 3 in flight, the shared bound, reached


# --- the pipeline alone, against a scripted server ---------------------------------------------


def _pipeline(journal: Journal, settings: RunSettings, stop: StopSignal,
              key: str = KEY) -> tuple[OrderPipeline, Any]:
    client = make_client(settings, Secret(key))
    tracker = Tracker("write", total=0)
    return OrderPipeline(journal, 1, client, settings, tracker, stop, FailureStorm(0)), client


def _by_method(post: Respond) -> Respond:
    """POSTs answered by ``post``; reads answered "no such number" (nothing applied)."""
    async def respond(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return await post(request)
        return web.json_response({"data": [], "meta": meta(1, 1)})
    return respond


async def _loaded(sandbox: Sandbox, tmp_path: Path, count: int = 60) -> Path:
    target = sandbox.profile_ids()[1]
    rows = [(n, target) for n, p in sandbox.dump().items() if p != target][:count]
    return (await loaded_not_sent(sandbox, tmp_path, rows)).journal_path


def _fake_settings(sandbox: Sandbox, fake: FakeTelnyx, **overrides: Any) -> RunSettings:
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02)
    return settings_for(sandbox, base_url=fake.base_url, policy=policy, **overrides)


@pytest.mark.parametrize("post", ["dropped", "2xx unreadable"])
async def test_an_order_post_without_a_usable_answer_is_lost_read_back_and_ordered_again(
    sandbox: Sandbox, server: FakeTelnyx, tmp_path: Path, post: str  # noqa: F811
) -> None:
    journal_path = await _loaded(sandbox, tmp_path)
    answer = drop if post == "dropped" else reply(200, {"data": {"no": "order id"}})
    server.then(*[_by_method(answer)] * 40)
    stop = StopSignal()
    async with await Journal.open(journal_path) as journal:
        pipeline, client = _pipeline(journal, _fake_settings(sandbox, server), stop)
        async with client:
            fatal = await pipeline.run()
        assert fatal.error is None
    # Never taken as refused, never re-sent as is: each POST is one order, read back, and the
    # numbers go into a new order until 3 such POSTs turn the job to PATCH.
    assert [s.method for s in server.seen].count("POST") == 3
    assert [state for state, *_ in await orders_of(journal_path)] == ["lost"] * 3
    assert pipeline.unavailable
    counts, _ = await journal_snapshot(journal_path)
    assert counts.get(ItemState.PENDING) == 60


async def test_an_order_whose_polls_all_fail_times_out_saying_its_pending_count_is_unknown(
    sandbox: Sandbox, server: FakeTelnyx, tmp_path: Path, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    caplog.set_level(logging.INFO, logger="bulkops")
    journal_path = await _loaded(sandbox, tmp_path, count=10)

    async def respond(request: web.Request) -> web.StreamResponse:
        if request.path.startswith(ORDERS):  # every poll fails
            return web.json_response({"errors": []}, status=503)
        return web.json_response({"data": [], "meta": meta(1, 1)})

    server.then(*[respond] * 20)
    async with await Journal.open(journal_path) as journal:
        numbers = [i.phone_number async for page in journal.iter_items(1, {ItemState.PENDING})
                   for i in page]
        order = await journal.open_order(1, sandbox.profile_ids()[1], numbers, 0)
        # Posted by a run that died: resumed, its first poll fails, then it times out.
        await journal.order_posted(order.id, "o-1", time.time() - 60)
        pipeline, client = _pipeline(journal, _fake_settings(sandbox, server, order_timeout=30.0),
                                     StopSignal())
        pipeline.submit_new = False
        async with client:
            assert (await pipeline.run()).error is None
    timed_out = [r.getMessage() for r in caplog.records if "order timed out" in r.getMessage()]
    assert timed_out and all("pending=unknown" in line for line in timed_out)


async def test_no_order_is_posted_after_ctrl_c_by_a_submit_waiting_for_a_slot(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    journal_path = await _loaded(sandbox, tmp_path, count=10)
    target = sandbox.profile_ids()[1]
    stop = StopSignal()
    async with await Journal.open(journal_path) as journal:
        pipeline, client = _pipeline(journal, settings_for(sandbox), stop, sandbox.api_key)
        numbers = [i.phone_number async for page in journal.iter_items(1, {ItemState.PENDING})
                   for i in page]
        for _ in range(MAX_OPEN_ORDERS):  # every slot taken by an open order
            await pipeline.slots.acquire()
        async with client, anyio.create_task_group() as tg:
            tg.start_soon(pipeline._submit, tg, target, 0, numbers)
            await anyio.wait_all_tasks_blocked()
            stop.request("SIGINT")  # Ctrl-C; then a poll ends and frees its slot
            pipeline.slots.release()
    assert posts(sandbox) == 0 and await orders_of(journal_path) == []
    counts, _ = await journal_snapshot(journal_path)
    assert counts.get(ItemState.PENDING) == 10


async def test_a_second_ctrl_c_cancels_the_read_back_of_an_order_left_submitting(
    sandbox: Sandbox, server: FakeTelnyx, tmp_path: Path  # noqa: F811
) -> None:
    journal_path = await _loaded(sandbox, tmp_path, count=10)
    target = sandbox.profile_ids()[1]

    async def hang(request: web.Request) -> web.StreamResponse:
        await server.release.wait()
        return web.Response(status=204)

    server.then(hang)
    stop = StopSignal()
    async with await Journal.open(journal_path) as journal:
        numbers = [i.phone_number async for page in journal.iter_items(1, {ItemState.PENDING})
                   for i in page]
        await journal.open_order(1, target, numbers, 0)  # a crash before the POST's answer
        pipeline, client = _pipeline(journal, _fake_settings(sandbox, server, timeout=60.0), stop)
        async with client:
            with anyio.fail_after(10):  # the read-back alone would wait 60 s
                async with anyio.create_task_group() as tg:
                    tg.start_soon(pipeline.run)
                    await wait_until(lambda: bool(server.seen), within=10, what="the first request to reach the fake server")
                    stop.request("SIGINT")
                    stop.request("SIGINT")
        assert pipeline.fatal.error is None
    assert [state for state, *_ in await orders_of(journal_path)] == ["submitting"]


# --- order POSTs are repeated only when they surely never counted ------------------------------


@pytest.mark.parametrize("first", ["503", "timeout", "dropped"])
async def test_an_order_post_that_may_have_landed_is_not_repeated(
    server: FakeTelnyx, first: str  # noqa: F811
) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await server.release.wait()
        return web.Response(status=204)

    server.then({"503": reply(503, {"errors": []}), "timeout": slow, "dropped": drop}[first])
    client, _, _ = kit_client(server.base_url, timeout=0.3)
    async with client:
        with pytest.raises(GaveUp) as gave_up:
            await client.create_order("p", ["+13125550001"])
    assert gave_up.value.retryable and gave_up.value.attempts == 1
    assert [s.method for s in server.seen] == ["POST"]


async def test_an_order_post_refused_by_a_429_is_sent_again_and_polls_are_retried(
    server: FakeTelnyx  # noqa: F811
) -> None:
    order = {"data": {"order_id": "o-1", "success": [], "failed": [], "pending": ["+13125550001"]}}
    server.then(reply(429, {"errors": []}, {"retry-after": "0"}), reply(200, order),
                reply(503, {"errors": []}), reply(200, order))
    client, _, _ = kit_client(server.base_url)
    async with client:
        posted = await client.create_order("p", ["+13125550001"])
        polled = await client.get_order("o-1")
    assert posted.attempts == 2 and polled.attempts == 2
    assert [s.method for s in server.seen] == ["POST", "POST", "GET", "GET"]


async def test_an_order_post_that_could_not_connect_is_sent_again() -> None:
    client, _, _ = kit_client(closed_port_url())
    async with client:
        with pytest.raises(GaveUp) as gave_up:
            await client.create_order("p", ["+13125550001"])
    assert gave_up.value.retryable and gave_up.value.attempts == 3  # FAST: 3 attempts


# --- a job or rollback that orders hold ----------------------------------------------------------


async def _decline(summary: PlanSummary) -> bool:
    return False


async def test_a_job_whose_rollback_has_numbers_in_an_order_is_not_run_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    rows = mixed_rows(sandbox, 20)
    request = JobRequest(Kind.ASSIGN, write_assign_csv(tmp_path / "a.csv", rows), tmp_path / "a.db",
                         name="a")
    assert (await run_job(request, settings_for(sandbox), Secret(sandbox.api_key))).exit_code == 0
    with pytest.raises(Interrupted):  # declined: the rollback job exists, nothing sent
        await rollback(request.journal_path, settings_for(sandbox, assume_yes=False,
                                                          confirm_threshold=0),
                       Secret(sandbox.api_key), confirm=_decline)
    with sqlite3.connect(request.journal_path) as db:  # as a crash mid-rollback leaves it
        db.execute("UPDATE jobs SET state = 'running' WHERE kind = 'rollback'")
    db.close()
    async with await Journal.open(request.journal_path) as journal:
        (undo,) = await journal.rollbacks_of(1)
        pending = [i async for page in journal.iter_items(undo.id, {ItemState.PENDING})
                   for i in page]
        await journal.open_order(undo.id, pending[0].desired, [pending[0].phone_number], 0)
    result = await run_job(request, settings_for(sandbox), Secret(sandbox.api_key))
    assert result.idle and result.message is not None and "rolled back" in result.message


async def test_retry_failed_refuses_a_job_with_numbers_still_in_an_order(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    rows = mixed_rows(sandbox, 20)
    sandbox.set_ignore_writes(True)
    result = await run(sandbox, Kind.ASSIGN, write_assign_csv(tmp_path / "a.csv", rows),
                       tmp_path / "a.db", max_consecutive_failures=0)
    assert result.counts.get(ItemState.FAILED) == 20
    with sqlite3.connect(tmp_path / "a.db") as db:  # as a crash mid-order leaves 5 of them
        db.execute("UPDATE items SET state = 'ordered' WHERE id IN "
                   "(SELECT id FROM items WHERE job_id = 1 ORDER BY id LIMIT 5)")
    db.close()
    with pytest.raises(InputError, match="5 row"):
        await retry_failed(tmp_path / "a.db", settings_for(sandbox), Secret(sandbox.api_key))


# --- upgrading a version-1 journal under the lock ------------------------------------------------


async def _version_1(path: Path) -> Path:
    journal = await Journal.create(path, kind=Kind.ASSIGN, name="a", job_file=None, csv_path=None,
                                   csv_sha256=None, default_profile_id=None, settings={})
    await journal.close()
    with sqlite3.connect(path) as db:  # what bulkops 1 left behind
        db.execute("DROP TABLE orders")
        db.execute("DROP INDEX items_order")
        db.execute("ALTER TABLE items DROP COLUMN order_ref")
        db.execute("ALTER TABLE items DROP COLUMN via")
        db.execute("ALTER TABLE items DROP COLUMN resource")  # and what came with version 3
        db.execute("ALTER TABLE items DROP COLUMN ref")
        db.execute("ALTER TABLE migrations DROP COLUMN short_codes")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.close()
    return path


async def test_a_version_1_journal_another_process_holds_is_refused_as_locked(tmp_path: Path) -> None:
    path = await _version_1(tmp_path / "old.db")
    held = lock_file(path)  # an older bulkops running it
    try:
        with pytest.raises(JournalLockedError, match="in use by another bulkops process") as caught:
            await Journal.open(path, lock=False)
        assert int(caught.value.exit_code) == 5
    finally:
        os.close(held)


async def test_a_version_1_journal_whose_lock_file_cannot_be_made_says_so(tmp_path: Path) -> None:
    path = await _version_1(tmp_path / "old.db")
    (tmp_path / "old.db.lock").unlink()
    (tmp_path / "old.db.lock").mkdir()  # the lock file cannot be created
    with pytest.raises(JournalError, match="cannot create the lock file") as caught:
        await Journal.open(path, lock=False)
    assert not isinstance(caught.value, JournalLockedError)

"""Seeded fault injection: what each fault does to the answer and to the account."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from bulkops.sandbox import FaultConfig, FaultKind, Sandbox
from bulkops.sandbox.faults import FaultInjector
from tests.poll_kit import wait_until
from tests.sandbox.sandbox_http import Api, enc


def kinds(injector: FaultInjector, is_write: bool, n: int = 400) -> list[FaultKind | None]:
    return [injector.plan(is_write).fault for _ in range(n)]


def test_plans_are_deterministic_for_a_seed() -> None:
    config = FaultConfig(error_rate=0.2, drop_rate=0.2, slow_rate=0.1, latency_ms=5, jitter_ms=5, seed=3)
    a, b = FaultInjector(config), FaultInjector(config)
    assert [a.plan(True) for _ in range(200)] == [b.plan(True) for _ in range(200)]
    other = FaultInjector(FaultConfig(error_rate=0.2, drop_rate=0.2, seed=4))
    assert kinds(FaultInjector(config), True) != kinds(other, True)


def test_no_faults_configured_means_no_plan() -> None:
    injector = FaultInjector(FaultConfig())
    assert set(kinds(injector, True)) == {None}


def test_error_after_write_hits_writes_only() -> None:
    injector = FaultInjector(FaultConfig(error_after_write_rate=1.0))
    assert set(kinds(injector, False)) == {None}
    assert set(kinds(injector, True)) == {FaultKind.ERROR_AFTER_WRITE}


def test_drops_of_writes_are_applied_for_about_half() -> None:
    plans = kinds(FaultInjector(FaultConfig(drop_rate=1.0, seed=1)), True)
    applied = plans.count(FaultKind.DROP_AFTER_WRITE)
    assert plans.count(FaultKind.DROP) + applied == len(plans)
    assert 0.35 * len(plans) < applied < 0.65 * len(plans)
    assert set(kinds(FaultInjector(FaultConfig(drop_rate=1.0)), False)) == {FaultKind.DROP}


def test_latency_stays_within_the_jitter_band_and_never_negative() -> None:
    injector = FaultInjector(FaultConfig(latency_ms=10, jitter_ms=20))
    delays = [injector.plan(False).latency_s for _ in range(500)]
    assert min(delays) == 0.0  # 10 - 20 clipped at zero
    assert max(delays) <= 0.030
    assert any(d > 0.02 for d in delays)


def test_error_statuses_are_500_502_or_503() -> None:
    injector = FaultInjector(FaultConfig(error_rate=1.0))
    assert {injector.plan(False).error_status for _ in range(200)} == {500, 502, 503}


async def test_injected_error_is_5xx_10007_and_the_write_is_not_applied(sandbox: Sandbox, api: Api) -> None:
    number = next(n for n, p in sandbox.dump().items() if p is None)
    sandbox.set_faults(FaultConfig(error_rate=1.0))
    reply = await api.patch(
        f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": sandbox.profile_ids()[0]}
    )
    assert reply.status in (500, 502, 503)
    assert reply.error["code"] == "10007"
    assert sandbox.profile_of(number) is None
    assert sandbox.stats.faults_injected["error"] == 1
    assert reply.headers["x-ratelimit-limit"]


async def test_error_after_write_applies_the_write_then_answers_5xx(sandbox: Sandbox, api: Api) -> None:
    number = next(n for n, p in sandbox.dump().items() if p is None)
    target = sandbox.profile_ids()[0]
    sandbox.set_faults(FaultConfig(error_after_write_rate=1.0))
    reply = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": target})
    assert reply.status in (500, 502, 503)
    assert sandbox.profile_of(number) == target
    assert sandbox.stats.writes_by_number[number] == 1
    read = await api.get(f"/phone_numbers/{enc(number)}/messaging")
    assert read.status == 200  # reads are not writes: untouched


async def test_drop_closes_the_connection_without_a_response(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.set_faults(FaultConfig(drop_rate=1.0))
    async with Api.open(sandbox, force_close=True) as api:
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await api.get(f"/phone_numbers/{enc(sandbox.numbers()[0])}/messaging")
    # aiohttp retries an idempotent request once after a disconnect: 1 or 2 drops were served.
    dropped = sandbox.stats.count("GET /v2/phone_numbers/{id}/messaging", 0)
    assert dropped in (1, 2)
    assert sandbox.stats.faults_injected["drop"] == dropped
    assert sandbox.stats.count(status=200) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_dropped_writes_are_applied_for_some_and_not_others(sandbox: Sandbox) -> None:
    candidates = [n for n, p in sandbox.dump().items() if p is None][:30]
    target = sandbox.profile_ids()[0]
    sandbox.set_faults(FaultConfig(drop_rate=1.0, seed=5))
    async with Api.open(sandbox, force_close=True) as api:
        for number in candidates:
            with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
                await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": target})
    applied = [n for n in candidates if sandbox.profile_of(n) == target]
    assert 0 < len(applied) < len(candidates)
    assert sandbox.stats.faults_injected["drop_after_write"] == len(applied)
    assert sandbox.stats.writes_applied == len(applied)


async def test_latency_delays_every_answer(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_faults(FaultConfig(latency_ms=60))
    loop = asyncio.get_running_loop()
    start = loop.time()
    reply = await api.get("/messaging_profiles")
    assert reply.status == 200
    assert loop.time() - start >= 0.05  # a lower bound: sleeping cannot be faster


async def test_slow_answer_outlasts_a_client_timeout_but_the_write_is_applied(sandbox: Sandbox, api: Api) -> None:
    number = next(n for n, p in sandbox.dump().items() if p is None)
    target = sandbox.profile_ids()[0]
    sandbox.set_faults(FaultConfig(slow_rate=1.0, slow_ms=60_000))
    with pytest.raises(asyncio.TimeoutError):
        await api.patch(
            f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": target}, timeout=0.3
        )
    assert sandbox.profile_of(number) == target
    assert sandbox.stats.faults_injected["slow"] == 1
    # the abandoned handler is cancelled, not left sleeping
    await wait_until(lambda: not sandbox.stats.in_flight, within=10,
                     what="the slow handler to be released after the client gave up")


async def test_faults_come_after_auth_and_rate_limit(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_faults(FaultConfig(error_rate=1.0))
    assert (await api.get("/messaging_profiles", auth=False)).status == 401
    sandbox.set_rate(1, 60)
    assert (await api.get("/messaging_profiles")).status >= 500
    assert (await api.get("/messaging_profiles")).status == 429


def test_exponential_latency_has_a_heavy_tail_and_before_count_moves_it_ahead_of_the_counter() -> None:
    after = FaultInjector(FaultConfig(latency_ms=80, latency_shape="exponential", seed=3))
    delays = [after.plan(True).latency_s for _ in range(2000)]
    assert min(delays) >= 0.0 and max(delays) > 4 * 0.080  # a tail far past the mean
    assert 0.070 < sum(delays) / len(delays) < 0.090
    before = FaultInjector(FaultConfig(latency_ms=80, latency_shape="exponential",
                                       latency_before_count=True, seed=3))
    assert all(before.plan(True).latency_s == 0.0 for _ in range(100))
    assert all(before.latency_before_count() >= 0.0 for _ in range(100))
    assert FaultInjector(FaultConfig(latency_ms=80)).latency_before_count() == 0.0

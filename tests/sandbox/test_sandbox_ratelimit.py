"""Rate limiting like Telnyx: fixed window per key, headers on every answer, 429 forms."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from bulkops.sandbox import Sandbox
from bulkops.sandbox.faults import UNLIMITED_NOMINAL, RateLimiter
from tests.conftest import SandboxFactory
from tests.sandbox.sandbox_http import Api, enc


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_allows_rate_requests_per_window_then_refuses() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 10.0, clock)
    decisions = [limiter.check("k") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)


def test_limiter_reset_is_whole_seconds_rounded_up_and_at_least_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 10.0, clock)
    limiter.check("k")
    clock.now += 2.5
    assert limiter.check("k").reset_seconds == 8  # 7.5 s left, rounded up
    clock.now += 7.4
    assert limiter.check("k").reset_seconds == 1  # 0.1 s left


def test_limiter_window_restarts_after_it_expires_and_429s_do_not_count() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 5.0, clock)
    for _ in range(10):
        limiter.check("k")
    clock.now += 5.0
    assert [limiter.check("k").allowed for _ in range(3)] == [True, True, False]


def test_limiter_counts_each_key_separately() -> None:
    limiter = RateLimiter(1, 5.0, FakeClock())
    assert limiter.check("a").allowed and limiter.check("b").allowed
    assert not limiter.check("a").allowed


def test_limiter_off_never_refuses_and_reports_the_nominal_limit() -> None:
    limiter = RateLimiter(0, 1.0, FakeClock())
    decisions = [limiter.check("k") for _ in range(100)]
    assert all(d.allowed for d in decisions)
    assert decisions[-1].limit == UNLIMITED_NOMINAL
    assert decisions[-1].remaining == UNLIMITED_NOMINAL - 100


def test_retry_after_forms() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 30.0, clock)
    limiter.check("k")
    clock.now += 0.5
    refused = limiter.check("k")
    assert refused.retry_after("seconds") == "30"
    assert refused.retry_after("absent") is None
    now = datetime(2026, 1, 2, 3, 4, 5, 250_000, tzinfo=UTC)
    http_date = refused.retry_after("http-date", wall_now=now)
    assert http_date == "Fri, 02 Jan 2026 03:04:35 GMT"  # 29.5 s later, rounded up to a whole second
    assert parsedate_to_datetime(http_date) >= now


async def test_429_has_code_title_headers_and_retry_after_seconds(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=50, rate=3, window=60) as sandbox, Api.open(sandbox) as api:
        path = f"/phone_numbers/{enc(sandbox.numbers()[0])}/messaging"
        replies = [await api.get(path) for _ in range(3)]
        assert [r.headers["x-ratelimit-remaining"] for r in replies] == ["2", "1", "0"]
        assert all(r.headers["x-ratelimit-limit"] == "3" for r in replies)
        refused = await api.get(path)
        assert refused.status == 429
        assert refused.error["code"] == "10011"
        assert refused.error["title"] == "Too many requests"
        assert refused.headers["x-ratelimit-remaining"] == "0"
        reset = int(refused.headers["x-ratelimit-reset"])
        assert 1 <= reset <= 60
        assert refused.headers["Retry-After"] == str(reset)
        assert sandbox.stats.rate_limited == 1


async def test_retry_after_as_http_date(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=50, rate=1, window=60, retry_after="http-date") as sandbox:
        async with Api.open(sandbox) as api:
            await api.get("/messaging_profiles")
            refused = await api.get("/messaging_profiles")
        assert refused.status == 429
        when = parsedate_to_datetime(refused.headers["Retry-After"])
        assert when.tzinfo is not None and when > datetime.now(UTC)


async def test_retry_after_absent_leaves_only_the_ratelimit_headers(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=50, rate=1, window=60, retry_after="absent") as sandbox:
        async with Api.open(sandbox) as api:
            await api.get("/messaging_profiles")
            refused = await api.get("/messaging_profiles")
        assert refused.status == 429
        assert "Retry-After" not in refused.headers
        assert int(refused.headers["x-ratelimit-reset"]) >= 1


async def test_a_refused_patch_is_not_applied(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=50, rate=1, window=60) as sandbox, Api.open(sandbox) as api:
        number = next(n for n, p in sandbox.dump().items() if p is not None)
        await api.get("/messaging_profiles")
        refused = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": ""})
        assert refused.status == 429
        assert sandbox.profile_of(number) is not None
        assert sandbox.stats.writes_applied == 0


async def test_every_answer_carries_ratelimit_headers_even_401_and_404(sandbox: Sandbox, api: Api) -> None:
    for reply in (
        await api.get("/messaging_profiles"),
        await api.get("/messaging_profiles", auth=False),
        await api.get(f"/phone_numbers/{enc('+19999999999')}/messaging"),
        await api.get("/no/such/route"),
    ):
        for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
            assert reply.headers[header].isdigit(), (reply.status, header)


async def test_set_rate_takes_effect_at_once(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_rate(1, 60)
    assert (await api.get("/messaging_profiles")).status == 200
    assert (await api.get("/messaging_profiles")).status == 429
    sandbox.set_rate(0, 1)
    assert (await api.get("/messaging_profiles")).status == 200
    assert sandbox.config.rate == 0

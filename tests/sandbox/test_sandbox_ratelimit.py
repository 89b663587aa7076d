"""Rate limiting like Telnyx, by a fixed window (Telnyx-like), a sliding log or a token bucket
per key: the same headers on every answer, the same 429 forms."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import argparse

import pytest

from bulkops.errors import ConfigError
from bulkops.sandbox import LimiterKind, Sandbox
from bulkops.sandbox.cli import add_arguments, config_from_args
from bulkops.sandbox.config import SandboxConfig
from bulkops.sandbox.faults import ODD_RATE_HEADERS, UNLIMITED_NOMINAL, RateLimiter
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


# --- sliding log and token bucket -----------------------------------------------------------


def test_sliding_log_allows_rate_in_any_trailing_window_and_frees_one_per_expiry() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 1.0, clock, kind=LimiterKind.SLIDING)
    allowed = []
    for _ in range(3):
        allowed.append(limiter.check("k"))
        clock.now += 0.25
    refused = limiter.check("k")  # at 0.75: three in the last second
    assert [d.remaining for d in allowed] == [2, 1, 0] and not refused.allowed
    assert refused.reset_seconds == 1 and refused.wait_seconds == 1  # 0.25 s, rounded up
    clock.now += 0.25  # the first left the log at 1.0; the other two stay
    assert [limiter.check("k").allowed for _ in range(2)] == [True, False]


def test_sliding_log_reset_is_until_the_oldest_request_leaves() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, 10.0, clock, kind=LimiterKind.SLIDING)
    limiter.check("k")
    clock.now += 6.5
    assert limiter.check("k").reset_seconds == 4  # the first leaves in 3.5 s


def test_token_bucket_starts_full_refills_per_second_and_says_when_one_passes() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4, 2.0, clock, kind=LimiterKind.BUCKET)  # 2 tokens a second
    assert [limiter.check("k").remaining for _ in range(4)] == [3, 2, 1, 0]
    refused = limiter.check("k")
    assert not refused.allowed
    assert refused.retry_after("seconds") == "1"  # one token in 0.5 s, rounded up
    assert refused.reset_seconds == 2  # full again in 2 s
    clock.now += 0.5
    assert [limiter.check("k").allowed for _ in range(2)] == [True, False]


@pytest.mark.parametrize("kind", list(LimiterKind))
async def test_every_kind_refuses_over_the_limit_with_telnyx_headers_and_429(
    sandbox_factory: SandboxFactory, kind: LimiterKind
) -> None:
    async with sandbox_factory(numbers=50, rate=3, window=60, limiter=kind) as sandbox, \
            Api.open(sandbox) as api:
        replies = [await api.get("/messaging_profiles") for _ in range(3)]
        assert [r.headers["x-ratelimit-remaining"] for r in replies] == ["2", "1", "0"]
        refused = await api.get("/messaging_profiles")
        assert refused.status == 429 and refused.error["code"] == "10011"
        for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "Retry-After"):
            assert refused.headers[header].isdigit(), header
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert sandbox.config.limiter is kind


def test_sandbox_cli_takes_the_limiter_kind() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args(["--rate", "5", "--limiter", "bucket"])).limiter is LimiterKind.BUCKET
    assert config_from_args(parser.parse_args([])).limiter is LimiterKind.FIXED
    with pytest.raises(SystemExit):
        parser.parse_args(["--limiter", "leaky"])


async def test_set_rate_can_switch_the_limiter_kind(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=10, control=True) as sandbox, Api.open(sandbox) as api:
        reply = await api.post("/_control/rate", origin=True, auth=False,
                               json={"rate": 2, "window": 1, "limiter": "sliding"})
        assert reply.body == {"rate": 2, "window": 1.0, "limiter": "sliding"}
        assert sandbox.config.limiter is LimiterKind.SLIDING
        bad = await api.post("/_control/rate", origin=True, auth=False, json={"limiter": ["x"]})
        assert bad.status == 400


async def test_odd_header_rate_garbles_the_ratelimit_headers_of_that_share(
    sandbox_factory: SandboxFactory,
) -> None:
    async with sandbox_factory(numbers=50, rate=100, faults={"odd_header_rate": 1.0}) as sandbox, \
            Api.open(sandbox) as api:
        replies = [await api.get("/messaging_profiles") for _ in range(20)]
    assert [r.status for r in replies] == [200] * 20
    plausible = [
        (r.headers.get("x-ratelimit-limit"), r.headers.get("x-ratelimit-remaining"))
        for r in replies
    ]
    assert all(pair != ("100", str(100 - n - 1)) for n, pair in enumerate(plausible))
    assert len(ODD_RATE_HEADERS) >= 10


def test_the_limiter_kind_is_accepted_by_name_and_a_wrong_one_lists_the_kinds() -> None:
    assert SandboxConfig(limiter="bucket").limiter is LimiterKind.BUCKET  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limiter must be one of fixed, fixed-clock, sliding, bucket"):
        SandboxConfig(limiter="leaky")  # type: ignore[arg-type]


def test_fixed_clock_windows_turn_on_the_servers_clock_not_the_first_request() -> None:
    clock = FakeClock()
    clock.now = 1000.3  # the server's clock is 0.3 s into a window when the first request comes
    limiter = RateLimiter(2, 1.0, clock, kind=LimiterKind.FIXED_CLOCK)
    first = limiter.check("k")
    assert first.allowed and first.reset_after == pytest.approx(0.7)
    assert limiter.check("k").allowed and not limiter.check("k").allowed
    clock.now = 1001.0  # the window turned at the server's whole second, not at 1001.3
    assert limiter.check("k").allowed


async def test_latency_before_the_count_still_counts_and_refuses_like_telnyx(
        sandbox_factory: SandboxFactory) -> None:
    faults = {"latency_ms": 5, "latency_shape": "exponential", "latency_before_count": True}
    async with sandbox_factory(numbers=50, rate=3, window=60, limiter=LimiterKind.FIXED_CLOCK,
                               faults=faults) as sandbox, Api.open(sandbox) as api:
        replies = [await api.get("/messaging_profiles") for _ in range(4)]
        assert [r.status for r in replies] == [200, 200, 200, 429]
        assert [r.headers["x-ratelimit-remaining"] for r in replies] == ["2", "1", "0", "0"]
        assert sandbox.stats.rate_limited == 1


def test_sandbox_cli_takes_the_latency_shape_and_where_it_passes() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(
        ["--latency-ms", "80", "--latency-shape", "exponential", "--latency-before-count",
         "--limiter", "fixed-clock"]))
    assert config.faults.latency_shape == "exponential" and config.faults.latency_before_count
    assert config.limiter is LimiterKind.FIXED_CLOCK
    with pytest.raises(ConfigError, match="latency_shape must be one of uniform, exponential"):
        config.faults.merged({"latency_shape": "pareto"})

"""The shared limiter, in virtual time: deterministic, and a simulated minute runs in under a second.

An asyncio loop whose clock only moves when every task is blocked (the selector jumps to the
next timer) stands in for time; simulated servers answer with rate-limit headers, and spies
record every start so limits are checked as counts, never as wall-clock tolerances.
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import format_datetime
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import pytest
from multidict import CIMultiDict

from bulkops.telnyx.headers import ServerBudget, parse_budget, parse_retry_after
from bulkops.telnyx.ratelimit import PACE, RateLimiter

T = TypeVar("T")
EPOCH = 1_750_000_000.0  # the virtual wall clock at virtual time 0


# --- virtual time ---------------------------------------------------------------------------


class _JumpSelector(selectors.DefaultSelector):
    """When the loop would block for ``timeout``, advance virtual time instead of waiting."""

    def __init__(self, loop: VirtualLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is pending")
        self._loop.vtime += max(timeout, 0.0)
        return super().select(0)


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.vtime = 0.0
        super().__init__(selector=_JumpSelector(self))

    def time(self) -> float:
        return self.vtime


class VirtualClock:
    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        return EPOCH + self.now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def run_virtual(main: Callable[[VirtualClock], Awaitable[T]]) -> T:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(main(VirtualClock()))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --- simulated servers ----------------------------------------------------------------------

Answer = tuple[int, dict[str, str]]


class Server(Protocol):
    def answer(self, now: float) -> Answer: ...


def _budget_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(remaining, 0)),
        "X-RateLimit-Reset": str(max(1, math.ceil(reset))),  # whole seconds, like the sandbox
    }


@dataclass
class FixedWindow:
    """Telnyx-like: ``limit`` per window; the window opens with the first request after the
    last one expired (``aligned=False``, like the sandbox) or on multiples of ``window``."""

    limit: int
    window: float = 1.0
    aligned: bool = False
    used_by_others: int = 0  # requests another client spent in the first window
    limit_after: tuple[float, int] | None = None  # (moment, new limit): lowered mid-run
    start: float = -math.inf
    count: int = 0

    def answer(self, now: float) -> Answer:
        if self.limit_after and now >= self.limit_after[0]:
            self.limit = self.limit_after[1]
        if now >= self.start + self.window:
            self.start = math.floor(now / self.window) * self.window if self.aligned else now
            self.count, self.used_by_others = self.used_by_others, 0
        reset = round(self.start + self.window - now, 9)  # no float artifact: 2.0000000000000004
        if self.count >= self.limit:
            return 429, {**_budget_headers(self.limit, 0, reset), "Retry-After": str(math.ceil(reset))}
        self.count += 1
        return 200, _budget_headers(self.limit, self.limit - self.count, reset)


@dataclass
class SlidingWindow:
    """At most ``limit`` requests in any trailing ``window``; reset = until the oldest expires."""

    limit: int
    window: float = 1.0
    log: list[float] = field(default_factory=list)

    def answer(self, now: float) -> Answer:
        self.log = [t for t in self.log if t > now - self.window]
        reset = (self.log[0] + self.window - now) if self.log else self.window
        if len(self.log) >= self.limit:
            return 429, {**_budget_headers(self.limit, 0, reset), "Retry-After": str(math.ceil(reset))}
        self.log.append(now)
        return 200, _budget_headers(self.limit, self.limit - len(self.log), reset)


@dataclass
class TokenBucket:
    """``limit`` tokens, refilled continuously at ``limit / window`` per second."""

    limit: int
    window: float = 1.0
    tokens: float = -1.0
    at: float = 0.0

    def answer(self, now: float) -> Answer:
        rate = self.limit / self.window
        self.tokens = self.limit if self.tokens < 0 else min(self.limit, self.tokens + (now - self.at) * rate)
        self.at = now
        until_full = (self.limit - self.tokens) / rate
        if self.tokens < 1:
            wait = (1 - self.tokens) / rate
            return 429, {**_budget_headers(self.limit, 0, until_full), "Retry-After": f"{wait:.3f}"}
        self.tokens -= 1
        return 200, _budget_headers(self.limit, int(self.tokens), until_full)


class Unlimited:
    def answer(self, now: float) -> Answer:
        return 200, {}


@dataclass
class Run:
    starts: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    holds: list[tuple[float, float]] = field(default_factory=list)  # (429 answered at, hold)
    finished_at: float = 0.0

    @property
    def rate_limited(self) -> int:
        return self.statuses.count(429)


async def drive(
    limiter: RateLimiter,
    clock: VirtualClock,
    server: Server,
    *,
    requests: int,
    workers: int,
    latency: float = 0.08,
    jitter: float = 0.0,
    counted_after: float = 0.0,  # share of the latency spent before the server counts the request
    seed: int = 1,
) -> Run:
    """Run ``requests`` successful calls through ``workers`` tasks sharing ``limiter``."""
    rng = random.Random(seed)
    run = Run()
    todo = iter(range(requests))

    async def worker() -> None:
        for _ in todo:
            status = 429
            while status == 429:
                async with limiter.slot() as slot:
                    run.starts.append(clock.now())
                    delay = max(0.0, latency + rng.uniform(-jitter, jitter))
                    await clock.sleep(delay * counted_after)
                    status, headers = server.answer(clock.now())
                    await clock.sleep(delay * (1 - counted_after))
                    held = slot.observe(status, headers)
                run.statuses.append(status)
                if held is not None:
                    run.holds.append((clock.now(), held))

    await asyncio.gather(*(worker() for _ in range(workers)))
    run.finished_at = clock.now()
    return run


def max_in_any_window(times: list[float], width: float) -> int:
    """The most starts inside any half-open interval of ``width`` seconds."""
    ordered, best, first = sorted(times), 0, 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= width - 1e-9:
            first += 1
        best = max(best, last - first + 1)
    return best


def simulate(
    server: Server,
    *,
    requests: int,
    workers: int = 64,
    ceiling: float | None = None,
    latency: float = 0.08,
    jitter: float = 0.0,
    counted_after: float = 0.0,
    seed: int = 1,
) -> tuple[Run, RateLimiter]:
    """``drive`` a fresh limiter against ``server`` in virtual time."""

    async def main(clock: VirtualClock) -> tuple[Run, RateLimiter]:
        limiter = RateLimiter(clock=clock, ceiling=ceiling)
        run = await drive(
            limiter, clock, server, requests=requests, workers=workers,
            latency=latency, jitter=jitter, counted_after=counted_after, seed=seed,
        )
        return run, limiter

    return run_virtual(main)


# --- pacing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "server", [Unlimited(), FixedWindow(limit=100)], ids=["unlimited", "server-allows-more"]
)
def test_ceiling_caps_starts_per_second(server: Server) -> None:
    run, limiter = simulate(server, ceiling=10, requests=100, latency=0.05)
    assert max_in_any_window(run.starts, 1.0) == 10
    assert min(b - a for a, b in zip(run.starts, run.starts[1:])) >= 0.1 - 1e-9  # burst 1
    assert limiter.stats.sent == 100


def test_without_ceiling_or_headers_the_pool_is_not_paced() -> None:
    run, limiter = simulate(Unlimited(), requests=200, workers=20, latency=0.1)
    assert limiter.stats.peak_in_flight == 20
    assert limiter.rate is None
    # one probe, then 10 rounds of 20 at once (the last round is 19 plus nothing): ~1.1 s
    assert run.finished_at <= 1.1 + 1e-9
    assert run.starts.count(0.1) == 20  # the whole pool started the moment the probe answered


def test_slow_start_sends_one_request_until_the_limit_is_known() -> None:
    server = FixedWindow(limit=5, window=1.0)
    run, limiter = simulate(server, requests=40, workers=20, latency=0.2)
    assert run.starts[:2] == [0.0, 0.2]  # the second start waited for the first answer
    assert max_in_any_window(run.starts, 1.0) <= 5
    assert run.rate_limited == 0


def test_pace_is_learned_from_the_headers() -> None:
    server = FixedWindow(limit=10, window=2.0)  # resets 2 and 1: the window is 2 s
    run, limiter = simulate(server, requests=200, workers=32, latency=0.1)
    assert limiter.rate == pytest.approx(PACE * 10 / 2.0)
    assert run.rate_limited == 0
    assert max_in_any_window(run.starts, 2.0) <= 10
    assert run.finished_at <= 1.05 * 200 / 5.0


def test_one_odd_reset_value_does_not_change_the_learned_window() -> None:
    async def main(clock: VirtualClock) -> list[float | None]:
        limiter = RateLimiter(clock=clock)
        rates = []
        for reset in ["1", "1", "2", "1", "1", "2", "2", "1"]:
            async with limiter.slot() as slot:
                headers = {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "99", "x-ratelimit-reset": reset}
                slot.observe(200, headers)
            rates.append(limiter.rate)
        return rates

    one_second, two_seconds = pytest.approx(PACE * 100), pytest.approx(PACE * 50)
    assert run_virtual(main) == [one_second] * 6 + [two_seconds] * 2  # "2" twice in a row: 2 s


def test_budget_guard_counts_requests_in_flight() -> None:
    # Another client spent 90 of 100 in this 10 s window; answers take 1 s, so when the pool
    # may start its next requests none of the earlier ones has been answered yet.
    server = FixedWindow(limit=100, window=10.0, used_by_others=90)
    run, limiter = simulate(server, requests=30, workers=30, latency=1.0)
    first_window = [t for t in run.starts if t < 10.0]
    assert len(first_window) == 10  # the probe + the 9 the server said were left
    assert all(t < 2.0 for t in first_window)  # ... all started before any was answered
    assert run.rate_limited == 0
    # Resumed after the reset (10.0) but within the round trip in which the server measured it.
    assert 10.0 <= min(t for t in run.starts if t >= 2.0) <= 11.0


# --- 429 holds ----------------------------------------------------------------------------


@dataclass
class OneRefusal:
    """Unlimited, except the ``nth`` request is refused with ``headers``."""

    headers: Callable[[float], dict[str, str]]
    nth: int = 5
    seen: int = 0

    def answer(self, now: float) -> Answer:
        self.seen += 1
        return (429, self.headers(now)) if self.seen == self.nth else (200, {})


def _http_date(wall: float) -> str:
    return format_datetime(datetime.fromtimestamp(math.ceil(wall), UTC), usegmt=True)


@pytest.mark.parametrize(
    ("form", "headers", "expected"),
    [
        ("retry-after seconds", lambda now: {"Retry-After": "7"}, 7.0),
        ("retry-after date", lambda now: {"Retry-After": _http_date(EPOCH + now + 7)}, None),
        ("x-ratelimit-reset", lambda now: {"X-RateLimit-Reset": "7"}, 7.0),
        ("nothing", lambda now: {}, 1.0),  # default_429_wait
        ("longer than the SDK's 60 s", lambda now: {"Retry-After": "600"}, 600.0),
        ("capped at max_server_wait", lambda now: {"Retry-After": "5000"}, 900.0),
    ],
)
def test_a_429_holds_every_worker_until_the_servers_moment(
    form: str, headers: Callable[[float], dict[str, str]], expected: float | None
) -> None:
    run, limiter = simulate(OneRefusal(headers), requests=60, workers=16, latency=0.05)
    [(answered_at, hold)] = run.holds
    if expected is None:  # an HTTP date has whole seconds: 7 s plus the rounding up
        expected = math.ceil(EPOCH + answered_at - 0.05 + 7) - (EPOCH + answered_at)
        assert 7 - 0.05 <= expected < 8
    assert hold == pytest.approx(expected)
    assert not [t for t in run.starts if answered_at < t < answered_at + hold - 1e-9]
    assert min(t for t in run.starts if t > answered_at) == pytest.approx(answered_at + hold)
    assert limiter.stats.holds == 1 and limiter.stats.rate_limited == 1
    assert limiter.stats.held_seconds == pytest.approx(hold)


def test_a_later_429_extends_the_hold_but_an_earlier_one_does_not_shorten_it() -> None:
    async def main(clock: VirtualClock) -> list[float | None]:
        limiter = RateLimiter(clock=clock)
        async with limiter.slot() as probe:
            probe.observe(200, {})  # no headers: unlimited, the pool may open up
        async with limiter.slot() as a, limiter.slot() as b, limiter.slot() as c:
            held = [
                a.observe(429, {"Retry-After": "10"}),
                b.observe(429, {"Retry-After": "3"}),
                c.observe(429, {"Retry-After": "20"}),
            ]
        async with limiter.slot():
            held.append(clock.now())
        assert limiter.stats.holds == 1 and limiter.stats.held_seconds == 20.0
        return held

    assert run_virtual(main) == [10.0, 10.0, 20.0, 20.0]


# --- slots ----------------------------------------------------------------------------------


def test_a_failed_request_leaves_the_in_flight_count_and_unblocks_slow_start() -> None:
    async def main(clock: VirtualClock) -> tuple[int, float, int]:
        limiter = RateLimiter(clock=clock)
        async with limiter.slot() as slot:
            await clock.sleep(5)
            slot.failed()
            in_flight_after_failure = limiter.in_flight
        async with limiter.slot():  # still probing: the next one goes at once
            started = clock.now()
        return in_flight_after_failure, started, limiter.in_flight

    assert run_virtual(main) == (0, 5.0, 0)


def test_leaving_a_slot_without_an_answer_counts_as_failed() -> None:
    async def main(clock: VirtualClock) -> int:
        limiter = RateLimiter(clock=clock)
        with pytest.raises(ConnectionError):
            async with limiter.slot():
                raise ConnectionError("reset")
        return limiter.in_flight

    assert run_virtual(main) == 0


# --- end to end against server models ---------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True], ids=["window-opens-on-request", "aligned-window"])
def test_fixed_window_benchmark_finishes_within_5_percent_of_n_over_r(aligned: bool) -> None:
    """The benchmark's target: 3,000 PATCHes, 100 req/s fixed 1 s window, 80 ms +- 40 ms."""
    run, limiter = simulate(FixedWindow(limit=100, aligned=aligned), requests=3000, latency=0.08, jitter=0.04)
    assert run.rate_limited <= 30
    assert run.finished_at <= 1.05 * 3000 / 100


def test_a_server_counting_after_jittered_latency_draws_no_429s() -> None:
    """Counting after the latency scatters requests across window edges: the limiter notices
    the out-of-order counting and keeps a reserve, trading a little speed for no 429s."""
    for aligned in (False, True):
        server = FixedWindow(limit=100, aligned=aligned)
        run, limiter = simulate(server, requests=3000, latency=0.08, jitter=0.04, counted_after=1.0)
        assert run.rate_limited == 0
        assert run.finished_at <= 1.1 * 3000 / 100


def test_token_bucket_server_is_paced_without_429s() -> None:
    run, limiter = simulate(TokenBucket(limit=100), requests=1500, latency=0.08, jitter=0.04)
    assert run.rate_limited == 0
    assert run.finished_at <= 1.05 * 1500 / 100


def test_sliding_window_server_is_paced_without_429s() -> None:
    """Requests in flight are counted against a budget that expiries quietly refill, so the
    guard is conservative here: slower than on a fixed window, never over the limit."""
    run, limiter = simulate(SlidingWindow(limit=100), requests=1500, latency=0.08, jitter=0.04)
    assert run.rate_limited == 0
    assert max_in_any_window(run.starts, 1.0) <= 100
    assert run.finished_at <= 1.2 * 1500 / 100


def test_a_limit_lowered_mid_run_is_followed_at_once() -> None:
    server = FixedWindow(limit=100, limit_after=(10.0, 50))
    run, limiter = simulate(server, requests=2000, latency=0.08, jitter=0.04)
    assert run.rate_limited <= 5  # the requests already on their way when the limit dropped
    assert limiter.stats.holds == 1
    assert max_in_any_window([t for t in run.starts if t >= 12.0], 1.0) <= 50
    assert limiter.rate is not None and limiter.rate < 50


# --- header parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-limit": "100", "x-ratelimit-remaining": "42", "x-ratelimit-reset": "1"}, (100, 42, 1.0)),
        ({"X-RateLimit-Limit": "100", "X-RATELIMIT-REMAINING": "0", "X-Ratelimit-Reset": "0.25"}, (100, 0, 0.25)),
        ({"RateLimit-Limit": "100, 100;w=1", "RateLimit-Remaining": "9", "RateLimit-Reset": "3"}, (100, 9, 3.0)),
        ({"X-Rate-Limit-Limit": "60", "X-Rate-Limit-Remaining": "-2", "X-Rate-Limit-Reset": "2s"}, (60, 0, 2.0)),
        ({"RateLimit": "limit=10, remaining=4, reset=6"}, (10, 4, 6.0)),
        ({"x-ratelimit-limit": "lots", "x-ratelimit-remaining": "", "x-ratelimit-reset": "soon"}, (None, None, None)),
        ({"x-ratelimit-limit": "-1", "x-ratelimit-reset": "nan"}, (None, None, None)),
        ({}, (None, None, None)),
    ],
)
def test_parse_budget_reads_every_spelling_and_drops_junk(
    headers: dict[str, str], expected: tuple[int | None, int | None, float | None]
) -> None:
    budget = parse_budget(headers)
    assert (budget.limit, budget.remaining, budget.reset_after) == expected


def test_parse_budget_reads_a_stated_window_a_multidict_and_an_epoch_reset() -> None:
    assert parse_budget({"RateLimit-Limit": "100, 100;w=60"}).window == 60.0
    multi = CIMultiDict({"X-RATELIMIT-LIMIT": "7", "x-ratelimit-remaining": "3"})
    assert parse_budget(multi) == ServerBudget(limit=7, remaining=3, reset_after=None)
    epoch = {"x-ratelimit-reset": str(int(EPOCH) + 30)}
    assert parse_budget(epoch, wall_now=EPOCH).reset_after == 30.0
    assert parse_budget(epoch).reset_after is None  # cannot convert without the wall clock


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        (_http_date(EPOCH + 90), 90.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: go now
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after_accepts_seconds_and_http_dates(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, wall_now=EPOCH) == expected


def test_max_in_any_window_spy_counts_half_open_intervals() -> None:
    assert max_in_any_window([0.0, 0.5, 1.0, 1.5], 1.0) == 2
    assert max_in_any_window([0.0, 0.1, 0.2, 5.0], 1.0) == 3

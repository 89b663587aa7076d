"""The shared limiter in virtual time, against fixed-window, sliding-window and token-bucket
servers (``tests/limiter_kit.py``): deterministic, and a simulated minute runs in well under a
second. Limits are checked with spies that record every start, never wall-clock tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from bulkops.telnyx.limiter.guard import SKEW
from bulkops.telnyx.ratelimit import PACE, RateLimiter
from tests.limiter_kit import (EPOCH, KINDS, Answer, FixedWindow, Headerless, OddHeaders, Server,
                               SlidingWindow, Unlimited, VirtualClock, budget_headers,
                               http_date, max_in_any_window, run_virtual, simulate)


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
    # Another client spent 90 of 100 in this window; answers take 0.3 s, so when the pool may
    # start its next requests none of the earlier ones has been answered yet.
    server = FixedWindow(limit=100, window=1.0, used_by_others=90)
    run, limiter = simulate(server, requests=30, workers=30, latency=0.3)
    first_window = [t for t in run.starts if t < 1.0]
    assert len(first_window) == 10  # the probe + the 9 the server said were left
    # A first answer saying the budget is mostly spent is believed once a second one agrees
    # (0.3 s); the other 8 then start at the pace, all before any of them is answered.
    assert first_window[:2] == [0.0, 0.3] and all(t < 0.7 for t in first_window)
    assert run.rate_limited == 0
    # Resumed at the reset (1.0), when the first request counted in the window ages out, and
    # SKEW later: the server may have counted it that much after it started.
    assert min(t for t in run.starts if t >= 0.7) == pytest.approx(1.0 + SKEW)


def test_a_first_answer_saying_the_budget_is_spent_waits_for_a_second_opinion() -> None:
    """Junk on the very first answer (remaining 0 of 100, reset in an hour) costs one round
    trip, not a stalled pool: the next answer says otherwise."""

    @dataclass
    class FirstLies:
        inner: FixedWindow
        answered: int = 0

        def answer(self, now: float) -> Answer:
            self.answered += 1
            status, headers = self.inner.answer(now)
            return (status, budget_headers(100, 0, 3600)) if self.answered == 1 else (status, headers)

    run, limiter = simulate(FirstLies(FixedWindow(limit=100)), requests=300, latency=0.05)
    assert run.starts[:3] == [0.0, 0.05, 0.1]
    assert run.rate_limited == 0 and limiter.stats.probes == 0
    assert run.finished_at <= 0.15 + 297 / (PACE * 100) + 0.05


def test_a_sliding_window_refills_the_budget_as_our_own_requests_age_out() -> None:
    """At a steady pace a sliding log hovers near zero remaining with requests in flight; the
    guard counts the requests that leave the log as budget back, instead of waiting for a
    whole-window reset that a sliding window never has."""
    run, limiter = simulate(SlidingWindow(limit=100), requests=3000, latency=0.2, jitter=0.05)
    assert run.rate_limited == 0
    assert max_in_any_window(run.starts, 1.0) <= 100
    assert run.share_of(100) >= 0.97


def test_a_limit_lowered_mid_run_is_followed_at_once() -> None:
    server = FixedWindow(limit=100, limit_after=(10.0, 50))
    run, limiter = simulate(server, requests=2000, latency=0.08, jitter=0.04)
    assert run.rate_limited <= 10  # the requests already on their way when the limit dropped
    assert limiter.stats.holds == 1
    assert max_in_any_window([t for t in run.starts if t >= 12.0], 1.0) <= 50
    assert limiter.rate is not None and limiter.rate < 50


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


@pytest.mark.parametrize(
    ("form", "headers", "expected"),
    [
        ("retry-after seconds", lambda now: {"Retry-After": "7"}, 7.0),
        ("retry-after date", lambda now: {"Retry-After": http_date(EPOCH + now + 7)}, None),
        ("x-ratelimit-reset", lambda now: {"X-RateLimit-Reset": "7"}, 7.0),
        ("nothing", lambda now: {}, 1.0),  # default_429_wait
        # Junk that says "now" or "the past" on a refusal: the default, not a 0 s hold
        ("reset 0", lambda now: {"x-ratelimit-limit": "100", "x-ratelimit-reset": "0"}, 1.0),
        ("reset -3", lambda now: {"x-ratelimit-limit": "-5", "x-ratelimit-reset": "-3"}, 1.0),
        ("retry-after -5", lambda now: {"Retry-After": "-5"}, 1.0),
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
            in_flight_after_failure = limiter.stats.in_flight
        async with limiter.slot():  # still probing: the next one goes at once
            started = clock.now()
        return in_flight_after_failure, started, limiter.stats.in_flight

    assert run_virtual(main) == (0, 5.0, 0)


def test_leaving_a_slot_without_an_answer_counts_as_failed() -> None:
    async def main(clock: VirtualClock) -> int:
        limiter = RateLimiter(clock=clock)
        with pytest.raises(ConnectionError):
            async with limiter.slot():
                raise ConnectionError("reset")
        return limiter.stats.in_flight

    assert run_virtual(main) == 0


# --- the three kinds of server limiter -----------------------------------------------------------


@pytest.mark.parametrize("latency", [0.02, 0.08, 0.2])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_of_server_limiter_is_used_at_97_percent_with_at_most_1_percent_429s(
    kind: str, latency: float
) -> None:
    """Issue #11's goal: 3,000 requests at R = 100/s, whole-second x-ratelimit-reset."""
    run, limiter = simulate(KINDS[kind](100), requests=3000, latency=latency, jitter=latency / 4)
    assert run.refused_share <= 0.01
    assert run.share_of(100) >= 0.97


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_server_counting_after_jittered_latency_draws_almost_no_429s(kind: str) -> None:
    """Counting after the latency scatters requests across window edges: the limiter notices
    the out-of-order counting and keeps a reserve, trading a little speed for (almost) no 429s."""
    run, limiter = simulate(KINDS[kind](100), requests=3000, latency=0.08, jitter=0.02,
                            counted_after=1.0)
    assert run.refused_share <= 0.001
    assert run.share_of(100) >= 0.93


def test_ceiling_below_the_servers_limit_wins() -> None:
    run, limiter = simulate(SlidingWindow(limit=100), ceiling=40, requests=400, latency=0.05)
    assert max_in_any_window(run.starts, 1.0) <= 40
    assert run.rate_limited == 0


# --- headers are hints, a 429 is the fact ---------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_with_30_percent_odd_headers_a_job_finishes_within_1_3_n_over_r(kind: str) -> None:
    run, limiter = simulate(OddHeaders(KINDS[kind](100), share=0.3), requests=2000,
                            latency=0.08, jitter=0.02)
    assert run.finished_at <= 1.3 * 2000 / 100
    assert run.refused_share <= 0.01


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_without_any_rate_limit_header_the_rate_is_found_from_429s_alone(kind: str) -> None:
    """AIMD: each 429 cuts the rate to a share of what the server let through in the window
    before it; clean windows raise it again."""
    run, limiter = simulate(Headerless(KINDS[kind](100)), requests=2000, latency=0.08, jitter=0.02)
    assert run.finished_at <= 1.2 * 2000 / 100
    assert limiter.rate is not None and 80 <= limiter.rate <= 110


def test_without_headers_or_retry_after_429s_still_pace_the_pool() -> None:
    server = Headerless(FixedWindow(limit=50), retry_after=False)
    run, limiter = simulate(server, requests=1000, latency=0.05)
    assert run.finished_at <= 1.3 * 1000 / 50
    assert run.refused_share <= 0.05


@dataclass
class Liar:
    """Lets everything through, yet says nothing is left on every answer."""

    def answer(self, now: float) -> Answer:
        return 200, budget_headers(100, 0, 1)


def test_headers_that_say_zero_left_while_the_server_answers_200s_lose_trust() -> None:
    run, limiter = simulate(Liar(), requests=500, latency=0.05)
    assert run.rate_limited == 0
    assert limiter.stats.probes >= 3  # each probe answered 200: one doubt more
    assert run.finished_at <= 500 / (PACE * 100) + 3.0  # a few capped waits, then paced


def test_a_429_after_the_headers_lost_trust_restores_it() -> None:
    async def main(clock: VirtualClock) -> tuple[float, float]:
        limiter = RateLimiter(clock=clock)
        for _ in range(200):
            async with limiter.slot() as slot:
                slot.observe(200, budget_headers(100, 0, 1))
        distrusted = limiter.guard.probe.trust
        async with limiter.slot() as slot:
            slot.observe(429, {**budget_headers(100, 0, 1), "Retry-After": "1"})
        return distrusted, limiter.guard.probe.trust

    distrusted, trusted = run_virtual(main)
    assert distrusted < 1.0 and trusted == 1.0


def test_one_stray_limit_does_not_move_the_pace_but_a_majority_does() -> None:
    async def main(clock: VirtualClock) -> list[float | None]:
        limiter = RateLimiter(clock=clock)
        rates = []
        for limit in [100, 100, 1, 100, 100, 50, 50, 50, 50, 50]:
            async with limiter.slot() as slot:
                slot.observe(200, budget_headers(limit, limit - 1, 1))
            rates.append(limiter.rate)
        return rates

    rates = run_virtual(main)
    assert rates[:8] == [pytest.approx(PACE * 100)] * 8
    assert rates[-1] == pytest.approx(PACE * 50)  # 5 of the last 8 said 50


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-remaining": "5"},
        {"x-ratelimit-limit": "0", "x-ratelimit-remaining": "3"},
        {"x-ratelimit-limit": "", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"},
        {"x-ratelimit-limit": "-1", "x-ratelimit-remaining": "-1", "x-ratelimit-reset": "-1"},
    ],
    ids=["remaining-only", "zero-limit", "empty-limit", "negative"],
)
def test_remaining_without_a_usable_limit_neither_crashes_nor_stalls(headers: dict[str, str]) -> None:
    """Issue #11: these once raised TypeError in the guard a moment later."""

    async def main(clock: VirtualClock) -> float:
        limiter = RateLimiter(clock=clock)
        for _ in range(50):
            async with limiter.slot() as slot:
                await clock.sleep(0.01)
                slot.observe(200, headers)
        return clock.now()

    assert run_virtual(main) <= 50 * 0.01 + 1e-6  # never waited: nothing said how long


# --- the spies ----------------------------------------------------------------------------------


def test_max_in_any_window_spy_counts_half_open_intervals() -> None:
    assert max_in_any_window([0.0, 0.5, 1.0, 1.5], 1.0) == 2
    assert max_in_any_window([0.0, 0.1, 0.2, 5.0], 1.0) == 3


def test_a_429_costs_the_wait_it_asked_for_and_the_pace_comes_back() -> None:
    """One 429 while the server lets through what its headers say: the pool holds for exactly
    the asked second, paces one step lower, and is back at full pace a few windows later."""

    async def main(clock: VirtualClock) -> tuple[float | None, float | None, float | None, float]:
        limiter = RateLimiter(clock=clock)
        for n in range(300):  # 3 s at the limit's pace: the server let 100 through per window
            async with limiter.slot() as slot:
                slot.observe(200, budget_headers(100, 60, 1))
        before = limiter.rate
        async with limiter.slot() as slot:
            held = slot.observe(429, {**budget_headers(100, 0, 1), "Retry-After": "1"})
        async with limiter.slot() as slot:
            slot.observe(200, budget_headers(100, 99, 1))
        after = limiter.rate
        for _ in range(500):
            async with limiter.slot() as slot:
                slot.observe(200, budget_headers(100, 60, 1))
        assert held == 1.0
        return before, after, limiter.rate, limiter.stats.held_seconds

    before, after, later, held_seconds = run_virtual(main)
    assert before == pytest.approx(PACE * 100)
    assert after is not None and PACE * 100 - 1.5 <= after < PACE * 100
    assert later == pytest.approx(PACE * 100)
    assert held_seconds == 1.0

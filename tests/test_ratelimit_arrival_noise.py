"""The limiter against servers that count a request a little after we send it, as over a real
network: the time to reach the server varies by a fraction of a millisecond, which is enough to
swap two requests started at one instant (virtual time, ``tests/limiter_kit.py``)."""

from __future__ import annotations

import pytest

from bulkops.telnyx.ratelimit import PACE
from tests.limiter_kit import (KINDS, SlidingWindow, Stalling, best_fixed_pace, fixed_pace_refusals,
                               max_in_any_window, simulate)


def test_no_two_starts_share_an_instant_after_slow_start() -> None:
    """The pool waits for the first answer, then starts paced: the first two starts after it
    are half an interval apart at least, not a pair the server may count in either order."""
    run, limiter = simulate(SlidingWindow(limit=100), requests=300, latency=0.2, jitter=0.05)
    assert min(b - a for a, b in zip(run.starts, run.starts[1:])) >= 0.5 / (PACE * 100) - 1e-9
    assert run.rate_limited == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_sliding_log_counting_on_arrival_with_200_ms_jitter_is_used_at_97_percent(seed: int) -> None:
    """Sliding log, 200 ms +- 50 ms, each request counted 4 +- 1 ms after it starts: no 429,
    and no reserve kept for a counting order that never strayed (no starts at one instant)."""
    run, limiter = simulate(SlidingWindow(limit=100), requests=3000, workers=32, latency=0.2,
                            jitter=0.05, counted_after=0.02, seed=seed)
    assert run.rate_limited == 0
    assert max_in_any_window(run.starts, 1.0) <= 100
    assert run.share_of(100) >= 0.97


@pytest.mark.parametrize("latency", [0.02, 0.08, 0.2])
@pytest.mark.parametrize("kind", ["fixed", "sliding", "bucket"])
def test_every_kind_counting_on_arrival_is_used_at_97_percent_without_429s(kind: str, latency: float) -> None:
    run, limiter = simulate(KINDS[kind](100), requests=3000, workers=32, latency=latency,
                            jitter=latency / 4, counted_after=0.02)
    assert run.rate_limited == 0
    assert run.share_of(100) >= 0.97


@pytest.mark.parametrize("offset", [0.0, 0.11, 0.23])
@pytest.mark.parametrize("latency", [0.02, 0.08, 0.2])
def test_a_sliding_log_behind_a_loop_busy_18_ms_at_a_time_draws_no_429(latency: float, offset: float) -> None:
    """The sandbox's loop is busy about 15 ms while it builds a page of 250 numbers, and counts
    the requests that arrived meanwhile at once: up to 18 ms after they started. SKEW allows
    for it, so the request that leaves the log late is never the one a new start relied on."""
    server = Stalling(SlidingWindow(limit=100), every=0.5, length=0.018, offset=offset)
    run, limiter = simulate(server, requests=3000, workers=32, latency=latency,
                            jitter=latency / 4, counted_after=0.02)
    assert run.rate_limited == 0
    assert run.share_of(100) >= 0.97


def test_a_round_trip_held_up_by_a_busy_loop_warns_the_guard_before_its_window_ends() -> None:
    """At 20 +- 5 ms, a 30 ms stall (longer than SKEW) shows in the answers it holds up, a
    second before the requests it counted late reach the window's edge: no 429 at all (the
    first stall comes after 16 answers, enough to know the usual spread)."""
    server = Stalling(SlidingWindow(limit=100), every=1.3, length=0.03, offset=0.5)
    run, limiter = simulate(server, requests=3000, workers=32, latency=0.02, jitter=0.005,
                            counted_after=0.02)
    assert run.rate_limited == 0
    assert run.share_of(100) >= 0.95


@pytest.mark.parametrize("latency", [0.08, 0.2])
def test_a_server_counting_30_ms_late_costs_one_429_then_the_skew_allows_for_it(latency: float) -> None:
    """Longer stalls than SKEW allows for, hidden in the latency's spread: the first 429
    doubles the skew, and the stalls that follow every 1.3 s draw no more (before, each of them
    cost a 429 and a 1 s hold)."""
    server = Stalling(SlidingWindow(limit=100), every=1.3, length=0.03, offset=0.11)
    run, limiter = simulate(server, requests=3000, workers=32, latency=latency,
                            jitter=latency / 4, counted_after=0.02)
    assert run.rate_limited <= 1
    assert run.share_of(100) >= 0.92


@pytest.mark.parametrize("kind", ["fixed", "fixed-clock", "sliding"])
def test_the_best_fixed_pace_is_the_edge_of_no_429(kind: str) -> None:
    """The bench's yardstick: at the pace found a blind pacer draws no 429, 1 % faster it does."""
    best = best_fixed_pace(lambda: KINDS[kind](100), 100, requests=3000, latency=0.08,
                           jitter=0.02, counted_after=1.0)
    assert fixed_pace_refusals(KINDS[kind](100), best * 100, requests=3000, latency=0.08,
                               jitter=0.02, counted_after=1.0) == 0
    assert fixed_pace_refusals(KINDS[kind](100), (best + 0.01) * 100, requests=3000, latency=0.08,
                               jitter=0.02, counted_after=1.0) > 0


@pytest.mark.parametrize("latency", [0.02, 0.08, 0.2])
@pytest.mark.parametrize("kind", ["fixed", "fixed-clock", "sliding", "bucket"])
def test_counted_after_a_heavy_tailed_latency_no_429_and_at_least_0_9_of_the_best_fixed_pace(
        kind: str, latency: float) -> None:
    """Exponential latency before the count: the server counts far out of the order requests
    were sent, but in the order of their answers, and the guard's answer view follows it. No
    429, and at least 0.9 of the fastest blind pace with no 429 (the issue's target, 1.0, is
    met at 20 ms only: docs/design.md, "Rate limiter")."""
    best = best_fixed_pace(lambda: KINDS[kind](100), 100, requests=3000, latency=latency,
                           counted_after=1.0, spread="exponential")
    run, limiter = simulate(KINDS[kind](100), requests=3000, latency=latency, counted_after=1.0,
                            spread="exponential")
    assert run.rate_limited == 0
    assert run.share_of(100) >= 0.9 * best


@pytest.mark.parametrize("latency", [0.02, 0.08, 0.2])
@pytest.mark.parametrize("kind", ["fixed", "fixed-clock", "sliding", "bucket"])
def test_counted_after_a_uniform_latency_no_429(kind: str, latency: float) -> None:
    """The whole latency (+-25 %) before the count: no 429, and at least 0.9 of the best
    fixed pace (what is possible there is below 0.97 of R at 80 and 200 ms)."""
    best = best_fixed_pace(lambda: KINDS[kind](100), 100, requests=3000, latency=latency,
                           jitter=latency / 4, counted_after=1.0)
    run, limiter = simulate(KINDS[kind](100), requests=3000, latency=latency, jitter=latency / 4,
                            counted_after=1.0)
    assert run.rate_limited == 0
    assert run.share_of(100) >= 0.9 * best

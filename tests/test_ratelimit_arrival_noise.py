"""The limiter against servers that count a request a little after we send it, as over a real
network: the time to reach the server varies by a fraction of a millisecond, which is enough to
swap two requests started at one instant (virtual time, ``tests/limiter_kit.py``)."""

from __future__ import annotations

import pytest

from bulkops.telnyx.ratelimit import PACE
from tests.limiter_kit import KINDS, SlidingWindow, max_in_any_window, simulate


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

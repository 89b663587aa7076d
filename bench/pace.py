"""What is possible on a server: the best fixed pace that draws no 429 there.

A client that starts a request every ``1 / rate`` s and never looks at an answer is simulated
on a virtual clock against the sandbox's own counting logic (``bulkops.sandbox.faults.
RateLimiter``) with the same latency draws the sandbox makes; bisection finds the fastest such
pace with no 429 in ``requests`` requests. Every bulkops figure in scenario 1 is also given as
a ratio to it.
"""

from __future__ import annotations

import random

from bulkops.sandbox.config import LimiterKind
from bulkops.sandbox.faults import RateLimiter

_COUNT_AT_ARRIVAL = 0.0005  # s: loopback, when the latency passes after the count


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _delay(rng: random.Random, latency_ms: float, jitter_ms: float, shape: str) -> float:
    if shape == "exponential":
        return rng.expovariate(1000.0 / latency_ms) if latency_ms else 0.0
    return max(0.0, latency_ms + rng.uniform(-jitter_ms, jitter_ms)) / 1000.0


def _counted(limit: int, share: float, *, requests: int, latency_ms: float, jitter_ms: float,
             shape: str, before_count: bool, seed: int) -> list[float]:
    rng, rate = random.Random(seed), share * limit
    return sorted(n / rate + (_delay(rng, latency_ms, jitter_ms, shape) if before_count
                              else _COUNT_AT_ARRIVAL) for n in range(requests))


def refusals(kind: str, limit: int, share: float, *, requests: int, latency_ms: float,
             jitter_ms: float, shape: str, before_count: bool, seed: int = 1) -> int:
    """429s of a blind client at ``share`` of ``limit`` per second against a fresh server."""
    clock = _Clock()
    server = RateLimiter(limit, 1.0, clock, kind=LimiterKind(kind))
    refused = 0
    for moment in _counted(limit, share, requests=requests, latency_ms=latency_ms,
                           jitter_ms=jitter_ms, shape=shape, before_count=before_count, seed=seed):
        clock.now = 1000.0 + moment  # a server clock that started long before (fixed-clock)
        refused += not server.check("key").allowed
    return refused


def writing_share(limit: int, share: float, *, requests: int, latency_ms: float, jitter_ms: float,
                  shape: str, before_count: bool, seed: int = 1) -> float:
    """The blind client's own "share of R while writing" at ``share``, measured as the bench
    measures bulkops (writes counted, from the first to the last, per second, over R): with a
    heavy tail the last write is counted well after the last start."""
    counted = _counted(limit, share, requests=requests, latency_ms=latency_ms,
                       jitter_ms=jitter_ms, shape=shape, before_count=before_count, seed=seed)
    return (len(counted) - 1) / ((counted[-1] - counted[0]) * limit)


def best_fixed_pace(kind: str, limit: int, *, requests: int, latency_ms: float, jitter_ms: float,
                    shape: str, before_count: bool, seed: int = 1) -> float:
    """The fastest fixed pace with no 429, as a share of ``limit`` per second (to 0.1 %)."""
    def refused(share: float) -> int:
        return refusals(kind, limit, share, requests=requests, latency_ms=latency_ms,
                        jitter_ms=jitter_ms, shape=shape, before_count=before_count, seed=seed)

    low, high = 0.5, 1.0
    if not refused(high):
        return high
    while high - low > 0.001:
        middle = (low + high) / 2
        low, high = (low, middle) if refused(middle) else (middle, high)
    return low

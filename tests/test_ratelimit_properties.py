"""Whatever the headers say, the limiter neither raises nor stalls (issue #11).

Hypothesis draws sequences of answers (200s and 429s) carrying any combination of
x-ratelimit-limit / -remaining / -reset / Retry-After values: missing, zero, negative, junk,
repeated, fractional, absurdly large, epoch seconds or milliseconds, contradicting each other
and changing from one answer to the next. A pool of workers runs them through one limiter on
the virtual clock; spies record every start and every hold.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkops.telnyx.headers import parse_budget, parse_retry_after
from bulkops.telnyx.ratelimit import MIN_RATE, RateLimiter
from tests.limiter_kit import EPOCH, VirtualClock, run_virtual

LATENCY = 0.05
WORKERS = 4
DEFAULT_429_WAIT = 1.0
MAX_SERVER_WAIT = 900.0

_numbers = st.one_of(
    st.integers(min_value=-5, max_value=200),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.integers(min_value=int(EPOCH) - 10, max_value=int(EPOCH) + 4000),  # epoch seconds
    st.integers(min_value=int(EPOCH * 1000) - 10_000, max_value=int(EPOCH * 1000) + 4_000_000),  # ms
).map(str)
_values = st.one_of(
    _numbers,
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-2, max_value=120).map(lambda x: f"{x:.3f}"),
    st.tuples(_numbers, _numbers).map(", ".join),  # a header repeated by a proxy
    st.sampled_from(["", " ", "lots", "soon", "1e999", "-0", "0x10", "100;w=1", "2s", "∞", "NaN",
                     "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"]),
    st.text(max_size=12),
)
_names = st.sampled_from(["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                          "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
                          "RateLimit", "X-Rate-Limit-Limit", "x-ratelimit-limit"])
_headers = st.dictionaries(_names, _values, max_size=5)
_answers = st.lists(st.tuples(st.sampled_from([200, 200, 200, 429, 500]), _headers),
                    min_size=1, max_size=60)


@dataclass
class Observed:
    starts: list[float] = field(default_factory=list)
    holds: list[tuple[float, float]] = field(default_factory=list)  # (answered at, held for)
    rates: list[float | None] = field(default_factory=list)
    finished_at: float = 0.0


def _run(answers: list[tuple[int, dict[str, str]]]) -> Observed:
    async def main(clock: VirtualClock) -> Observed:
        limiter = RateLimiter(clock=clock, max_server_wait=MAX_SERVER_WAIT,
                              default_429_wait=DEFAULT_429_WAIT)
        seen = Observed()
        script = iter(answers)

        async def worker() -> None:
            for status, headers in script:
                async with limiter.slot() as slot:
                    seen.starts.append(clock.now())
                    await clock.sleep(LATENCY)
                    held = slot.observe(status, headers)
                if held is not None:
                    seen.holds.append((clock.now(), held))
                seen.rates.append(limiter.rate)

        await asyncio.gather(*(worker() for _ in range(WORKERS)))
        seen.finished_at = clock.now()
        return seen

    return run_virtual(main)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_answers)
def test_no_header_sequence_raises_stalls_or_zeroes_the_rate(answers: list[tuple[int, dict[str, str]]]) -> None:
    seen = _run(answers)  # no exception
    assert len(seen.starts) == len(answers)
    # Learned rate: never zero (None = not paced at all).
    assert all(rate is None or rate >= MIN_RATE for rate in seen.rates)
    # No 429 holds longer than the operator's cap.
    assert all(0 <= held <= MAX_SERVER_WAIT for _, held in seen.holds)
    # No wait between two starts longer than the largest wait a 429 asked for (the default
    # wait counts as asked: a 429 with nothing usable), plus one round trip (a probe's answer).
    for before, after in zip(seen.starts, seen.starts[1:]):
        asked = max([DEFAULT_429_WAIT, *(held for at, held in seen.holds if at <= after)])
        assert after - before <= asked + LATENCY + 1e-6, (before, after, asked)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_names, _values, max_size=6), st.floats(min_value=0, max_value=4e9))
def test_header_parsing_never_raises_and_keeps_only_plausible_values(
    headers: dict[str, str], wall: float
) -> None:
    budget = parse_budget(headers, wall_now=wall)
    assert budget.limit is None or 1 <= budget.limit <= 1_000_000
    assert budget.remaining is None or 0 <= budget.remaining
    if budget.limit is not None and budget.remaining is not None:
        assert budget.remaining <= budget.limit
    assert budget.reset_after is None or 0 <= budget.reset_after <= 86_400
    assert budget.window is None or 0 < budget.window <= 86_400
    wait = parse_retry_after(headers.get("Retry-After"), wall_now=wall)
    assert wait is None or (math.isfinite(wait) and wait >= 0)

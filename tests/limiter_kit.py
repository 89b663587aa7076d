"""Virtual time and simulated rate-limited servers for the limiter's tests.

An asyncio loop whose clock only moves when every task is blocked (the selector jumps to the
next timer) stands in for time, so a simulated minute runs in well under a second and every
result is deterministic. The servers answer like Telnyx (``x-ratelimit-limit``, ``-remaining``,
``-reset`` in whole seconds, ``Retry-After`` on a 429) with three kinds of limiter behind them:
fixed windows, a sliding log and a token bucket. Spies record every start, so limits are
checked as counts, never as wall-clock tolerances.
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Protocol, TypeVar

from bulkops.telnyx.ratelimit import RateLimiter

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


def http_date(wall: float) -> str:
    return format_datetime(datetime.fromtimestamp(math.ceil(wall), UTC), usegmt=True)


# --- simulated servers ----------------------------------------------------------------------

Answer = tuple[int, dict[str, str]]


class Server(Protocol):
    def answer(self, now: float) -> Answer: ...


def budget_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    """Telnyx's three headers; the reset in whole seconds rounded up, at least 1."""
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(remaining, 0)),
        "X-RateLimit-Reset": str(max(1, math.ceil(round(reset, 9)))),
    }


def refused(limit: int, reset: float, retry_after: float | None = None) -> Answer:
    wait = reset if retry_after is None else retry_after
    return 429, {**budget_headers(limit, 0, reset), "Retry-After": str(max(1, math.ceil(round(wait, 9))))}


@dataclass
class FixedWindow:
    """Telnyx-like: ``limit`` per window; the window opens with the first request after the
    last one expired (``aligned=False``, like the sandbox) or on multiples of ``window``."""

    limit: int
    window: float = 1.0
    aligned: bool = False  # windows turn on the server's clock, at ``phase`` past a multiple
    phase: float = 0.0
    used_by_others: int = 0  # requests another client spent in the first window
    limit_after: tuple[float, int] | None = None  # (moment, new limit): lowered mid-run
    start: float = -math.inf
    count: int = 0

    def answer(self, now: float) -> Answer:
        if self.limit_after and now >= self.limit_after[0]:
            self.limit = self.limit_after[1]
        if now >= self.start + self.window:
            turn = math.floor((now - self.phase) / self.window) * self.window + self.phase
            self.start = turn if self.aligned else now
            self.count, self.used_by_others = self.used_by_others, 0
        reset = self.start + self.window - now
        if self.count >= self.limit:
            return refused(self.limit, reset)
        self.count += 1
        return 200, budget_headers(self.limit, self.limit - self.count, reset)


@dataclass
class SlidingWindow:
    """At most ``limit`` requests in any trailing ``window``; reset = until the oldest expires."""

    limit: int
    window: float = 1.0
    log: deque[float] = field(default_factory=deque)

    def answer(self, now: float) -> Answer:
        while self.log and self.log[0] <= now - self.window:
            self.log.popleft()
        reset = (self.log[0] + self.window - now) if self.log else self.window
        if len(self.log) >= self.limit:
            return refused(self.limit, reset)
        self.log.append(now)
        return 200, budget_headers(self.limit, self.limit - len(self.log), reset)


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
            return refused(self.limit, until_full, (1 - self.tokens) / rate)
        self.tokens -= 1
        return 200, budget_headers(self.limit, int(self.tokens), until_full)


@dataclass
class Stalling:
    """``inner`` behind a server loop that is busy for ``length`` seconds every ``every``
    seconds (building a page of 250 numbers, say): a request that arrives meanwhile is counted,
    and answered, when the loop is free again, later than it started by up to ``length``."""

    inner: Server
    every: float
    length: float
    offset: float = 0.0

    def busy_for(self, now: float) -> float:
        """How long a request arriving at ``now`` waits for the loop (``drive`` sleeps it)."""
        return max(0.0, self.length - (now - self.offset) % self.every)

    def answer(self, now: float) -> Answer:
        return self.inner.answer(now)


KINDS: dict[str, Callable[[int], Server]] = {
    "fixed": lambda limit: FixedWindow(limit=limit),
    "fixed-aligned": lambda limit: FixedWindow(limit=limit, aligned=True),
    "fixed-clock": lambda limit: FixedWindow(limit=limit, aligned=True, phase=0.37),
    "sliding": lambda limit: SlidingWindow(limit=limit),
    "bucket": lambda limit: TokenBucket(limit=limit),
}


class Unlimited:
    def answer(self, now: float) -> Answer:
        return 200, {}


@dataclass
class Headerless:
    """The same limits, but answers carry no rate-limit headers; a 429 carries only Retry-After
    (or nothing when ``retry_after`` is False)."""

    inner: Server
    retry_after: bool = True

    def answer(self, now: float) -> Answer:
        status, headers = self.inner.answer(now)
        kept = {"Retry-After": headers["Retry-After"]} if status == 429 and self.retry_after else {}
        return status, kept


ODD_HEADERS: tuple[dict[str, str], ...] = (
    {"X-RateLimit-Remaining": "5"},  # no limit at all
    {"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "0"},
    {"X-RateLimit-Limit": "-5", "X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "-3"},
    {"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "many", "X-RateLimit-Reset": "soon"},
    {"X-RateLimit-Limit": "100, 100", "X-RateLimit-Remaining": "7, 7", "X-RateLimit-Reset": "1, 1"},
    {"X-RateLimit-Limit": "99.5", "X-RateLimit-Remaining": "0.5", "X-RateLimit-Reset": "0.25"},
    {"X-RateLimit-Limit": "1000000000000", "X-RateLimit-Remaining": "999999999999"},
    {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(EPOCH) + 3600)},
    {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(EPOCH * 1000))},
    {"X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "86400"},
    {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "500", "X-RateLimit-Reset": "0"},
    {},
)


@dataclass
class OddHeaders:
    """The same limits; a ``share`` of the answers (429s too) carry one of ``ODD_HEADERS``
    in place of the true ones, as proxies and gateways do."""

    inner: Server
    share: float = 0.3
    seed: int = 7
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def answer(self, now: float) -> Answer:
        status, headers = self.inner.answer(now)
        if self.rng.random() < self.share:
            odd = dict(self.rng.choice(ODD_HEADERS))
            if status == 429 and "Retry-After" in headers and self.rng.random() < 0.5:
                odd["Retry-After"] = headers["Retry-After"]
            return status, odd
        return status, headers


# --- driving a limiter ----------------------------------------------------------------------


@dataclass
class Run:
    starts: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    holds: list[tuple[float, float]] = field(default_factory=list)  # (429 answered at, hold)
    finished_at: float = 0.0

    @property
    def rate_limited(self) -> int:
        return self.statuses.count(429)

    @property
    def refused_share(self) -> float:
        return self.rate_limited / max(len(self.statuses), 1)

    def share_of(self, rate: float) -> float:
        """Successful requests per second as a share of ``rate``, from the second start (the
        first after slow start's answer) to the end: the bench's "share of R while writing"
        leaves that one round trip out too."""
        paced = sorted(self.starts)[1]
        return (len(self.statuses) - self.rate_limited - 1) / ((self.finished_at - paced) * rate)


def draw_latency(rng: random.Random, latency: float, jitter: float, spread: str) -> float:
    """One round trip: ``latency`` +- ``jitter`` uniform, or exponential of mean ``latency``."""
    if spread == "exponential":
        return rng.expovariate(1.0 / latency)
    return max(0.0, latency + rng.uniform(-jitter, jitter))


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
    spread: str = "uniform",  # or "exponential": a heavy tail of mean ``latency``
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
                    delay = draw_latency(rng, latency, jitter, spread)
                    await clock.sleep(delay * counted_after)
                    if isinstance(server, Stalling):  # the busy loop holds up count and answer
                        await clock.sleep(server.busy_for(clock.now()))
                    status, headers = server.answer(clock.now())
                    await clock.sleep(delay * (1 - counted_after))
                    held = slot.observe(status, headers)
                run.statuses.append(status)
                if held is not None:
                    run.holds.append((clock.now(), held))

    await asyncio.gather(*(worker() for _ in range(workers)))
    run.finished_at = clock.now()
    return run


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
    spread: str = "uniform",
) -> tuple[Run, RateLimiter]:
    """``drive`` a fresh limiter against ``server`` in virtual time."""

    async def main(clock: VirtualClock) -> tuple[Run, RateLimiter]:
        limiter = RateLimiter(clock=clock, ceiling=ceiling)
        run = await drive(
            limiter, clock, server, requests=requests, workers=workers,
            latency=latency, jitter=jitter, counted_after=counted_after, seed=seed, spread=spread,
        )
        return run, limiter

    return run_virtual(main)


def max_in_any_window(times: list[float], width: float) -> int:
    """The most starts inside any half-open interval of ``width`` seconds."""
    ordered, best, first = sorted(times), 0, 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= width - 1e-9:
            first += 1
        best = max(best, last - first + 1)
    return best


# --- what is possible: the best fixed pace ----------------------------------------------------


def fixed_pace_refusals(
    server: Server, rate: float, *, requests: int, latency: float, jitter: float = 0.0,
    counted_after: float = 0.0, seed: int = 1, spread: str = "uniform",
) -> int:
    """429s of a client that starts a request every ``1 / rate`` s, blind to every answer."""
    rng = random.Random(seed)
    counted = sorted(n / rate + draw_latency(rng, latency, jitter, spread) * counted_after
                     for n in range(requests))
    return sum(server.answer(moment)[0] == 429 for moment in counted)


def fixed_pace_share(
    rate: float, limit: float, *, requests: int, latency: float, jitter: float = 0.0,
    seed: int = 1, spread: str = "uniform",
) -> float:
    """The blind client's own ``Run.share_of`` at ``rate``: from its second start to its last
    answer (with a heavy tail the last answer comes well after the last start)."""
    rng = random.Random(seed)
    answered = max(n / rate + draw_latency(rng, latency, jitter, spread) for n in range(requests))
    return (requests - 1) / ((answered - 1 / rate) * limit)


def best_fixed_pace(
    make_server: Callable[[], Server], limit: float, *, requests: int, latency: float,
    jitter: float = 0.0, counted_after: float = 0.0, seed: int = 1, spread: str = "uniform",
) -> float:
    """The fastest fixed pace, as a share of ``limit`` per second, that draws no 429 against a
    fresh server from ``make_server`` with the same latencies (bisection to 0.1 %)."""
    low, high = 0.5, 1.0
    if not fixed_pace_refusals(make_server(), high * limit, requests=requests, latency=latency,
                               jitter=jitter, counted_after=counted_after, seed=seed, spread=spread):
        return high
    while high - low > 0.001:
        middle = (low + high) / 2
        refusals = fixed_pace_refusals(make_server(), middle * limit, requests=requests,
                                       latency=latency, jitter=jitter, counted_after=counted_after,
                                       seed=seed, spread=spread)
        low, high = (low, middle) if refusals else (middle, high)
    return low

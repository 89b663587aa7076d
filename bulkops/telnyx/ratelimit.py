"""One rate limiter shared by every worker: GCRA pacing at the learned rate, a pool-wide 429
hold, AIMD on 429s and a budget guard, each a part in ``bulkops.telnyx.limiter``.

A request starts (``async with limiter.slot()``) when the hold is over, slow start has its first
answer, the pacer's next start is due and the guard sees room in the server's budget. The rate
is the smallest of the operator's ceiling, ``PACE`` times the limit per window the headers
teach, and the AIMD cap; it never falls below ``MIN_RATE``. No header value can raise here or
stall the pool: every wait is bounded by a 429's asked wait, one pacing interval, or an answer.
Time is read only through the injected ``Clock``; docs/design.md ("Rate limiter") says why each
part is there and what it buys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import Enum

import anyio

from bulkops.telnyx.clock import Clock, SystemClock
from bulkops.telnyx.headers import ServerBudget, parse_budget, plain_budget
from bulkops.telnyx.limiter.aimd import MIN_RATE, Aimd
from bulkops.telnyx.limiter.guard import BudgetGuard
from bulkops.telnyx.limiter.hold import Hold, asked_wait
from bulkops.telnyx.limiter.learned import Learned
from bulkops.telnyx.limiter.pacer import Pacer

PACE = 0.985  # of the learned rate: the margin absorbs requests reaching the server late or early
_MAX_NAP = 60.0  # the head waiter re-checks at least this often, whatever it waits for
_STOP_LOOK = 0.1  # s: how often a waiter that can be stopped looks at its stop

__all__ = ["MIN_RATE", "PACE", "LimiterStats", "NotStarted", "RateLimiter", "Slot"]


@dataclass(slots=True)
class LimiterStats:
    sent: int = 0  # requests started
    in_flight: int = 0  # started and not yet answered or failed
    peak_in_flight: int = 0
    holds: int = 0  # pool-wide holds started by a 429
    held_seconds: float = 0.0  # total time the pool was held
    rate_limited: int = 0  # 429 responses seen
    probes: int = 0  # requests let through against a tight guard, to test the headers


class _Mode(str, Enum):
    PROBING = "probing"  # slow start: one request in flight until the first answer
    LIMITED = "limited"  # the server reports a limit: pace it, guard its budget
    BLIND = "blind"  # 429s but no usable limit: the AIMD cap paces
    UNLIMITED = "unlimited"  # no budget headers, no 429: only the ceiling paces


class NotStarted(Exception):
    """The caller's stop came while it waited for a slot: nothing was sent."""


class _Gate:
    """The context manager ``RateLimiter.slot()`` returns (a class: it runs per request)."""

    __slots__ = ("_limiter", "_slot", "_stop")

    def __init__(self, limiter: RateLimiter, stop: anyio.Event | None) -> None:
        self._limiter = limiter
        self._slot: Slot | None = None
        self._stop = stop

    async def __aenter__(self) -> Slot:
        self._slot = await self._limiter._acquire(self._stop)
        return self._slot

    async def __aexit__(self, *exc_info: object) -> None:
        if self._slot is not None:
            self._slot.failed()  # no-op when the caller already observed a response


class Slot:
    """One started request; it must end in exactly one ``observe`` or ``failed``."""

    __slots__ = ("_limiter", "seq", "started_at", "probe", "_done")

    def __init__(self, limiter: RateLimiter, seq: int, started_at: float, probe: bool) -> None:
        self._limiter = limiter
        self.seq = seq
        self.started_at = started_at
        self.probe = probe  # let through against a tight guard
        self._done = False

    def observe(self, status: int, headers: Mapping[str, str]) -> float | None:
        """Learn from the response; for a 429, the seconds the whole pool is now held for."""
        if self._done:
            return None
        self._done = True
        return self._limiter._observe(self, status, headers)

    def failed(self) -> None:
        """No response (connection error, timeout): the request just leaves the in-flight count."""
        if not self._done:
            self._done = True
            self._limiter._failed(self)


class RateLimiter:
    def __init__(
        self,
        *,
        ceiling: float | None = None,
        clock: Clock | None = None,
        max_server_wait: float = 900.0,
        default_429_wait: float = 1.0,
    ) -> None:
        if ceiling is not None and not ceiling > 0:
            raise ValueError("ceiling must be a positive number of requests per second")
        self._ceiling = ceiling
        self._clock: Clock = clock or SystemClock()
        self._default_429_wait = default_429_wait
        self.stats = LimiterStats()
        self._mode = _Mode.PROBING
        self._lock = anyio.Lock()  # FIFO: only the head waiter watches the clock
        self._nap_scope: anyio.CancelScope | None = None
        self._started = 0  # slots granted; the next one gets this seq
        self.learned = Learned()
        self.pacer = Pacer()
        self.hold = Hold(default_wait=default_429_wait, max_wait=max_server_wait)
        self.aimd = Aimd()
        self.guard = BudgetGuard(self.learned)

    @property
    def rate(self) -> float | None:
        """Starts per second currently allowed; None = unpaced."""
        learned: float | None = None
        limit = self.learned.limit
        if self._mode is _Mode.LIMITED and limit:
            learned = max(MIN_RATE, PACE * limit / self.learned.window)
        cap = self.aimd.cap
        if cap is not None and self._mode is not _Mode.UNLIMITED:
            learned = cap if learned is None else min(learned, cap)
        if learned is None:
            return self._ceiling
        return min(self._ceiling, learned) if self._ceiling else learned

    @property
    def _limit_in_force(self) -> int | None:
        return self.learned.limit if self._mode is _Mode.LIMITED else None

    def slot(self, stop: anyio.Event | None = None) -> AbstractAsyncContextManager[Slot]:
        """``async with limiter.slot() as slot:`` waits until a request may start; once
        ``stop`` is set it raises ``NotStarted`` instead (the operator's Ctrl-C: a row that
        waits for its turn is not sent after it)."""
        return _Gate(self, stop)

    async def _acquire(self, stop: anyio.Event | None = None) -> Slot:
        now = self._clock.now()
        if stop is not None and stop.is_set():
            raise NotStarted
        if not self._lock.locked() and self._prepare(now) <= 0:
            return self._grant(now)  # nobody queued and nothing to wait for: no lock round trip
        async with self._lock:
            while (delay := self._prepare(self._clock.now())) > 0:
                if stop is not None:  # looked at between naps, so a stop is seen within _STOP_LOOK
                    if stop.is_set():
                        raise NotStarted
                    delay = min(delay, _STOP_LOOK)
                await self._nap(delay)
            if stop is not None and stop.is_set():
                raise NotStarted
            return self._grant(self._clock.now())

    def _prepare(self, now: float) -> float:
        """Seconds the next start must still wait; on the way, a cut waiting for the hold's
        end is sized, and the guard may arm a probe."""
        held = self.hold.wait(now)
        if held > 0:
            return held
        if (self._mode is _Mode.PROBING or self.guard.confirming) and self.stats.in_flight:
            return math.inf  # woken by the answer
        if self.aimd.pending:
            self.aimd.size(self.rate, self.learned.window, self._limit_in_force, PACE)
        paced = self.pacer.wait(now)
        return max(paced, self.guard.admit(now, self._started, self.hold.asked_max))

    async def _nap(self, delay: float) -> None:
        """Sleep for ``delay`` or until a response changes the picture, whichever is first."""
        with anyio.CancelScope() as scope:
            self._nap_scope = scope
            try:
                await self._clock.sleep(min(delay, _MAX_NAP))
            finally:
                self._nap_scope = None

    def _grant(self, now: float) -> Slot:
        rate = self.rate
        # The operator's ceiling keeps no late credit: never more than `ceiling` a second.
        self.pacer.start(now, 1.0 / rate if rate else 0.0, credit=rate != self._ceiling)
        probe = self.guard.started(now)
        stats = self.stats
        stats.probes += probe
        slot = Slot(self, self._started, now, probe)
        self._started += 1
        stats.sent += 1
        stats.in_flight += 1
        if stats.in_flight > stats.peak_in_flight:
            stats.peak_in_flight = stats.in_flight
        return slot

    def _failed(self, slot: Slot) -> None:
        self.guard.answered(self._clock.now())
        self._settle(slot)

    def _settle(self, slot: Slot) -> None:
        self.stats.in_flight -= 1
        self.guard.settled(slot.probe)
        if self._nap_scope is not None:
            self._nap_scope.cancel()

    def _observe(self, slot: Slot, status: int, headers: Mapping[str, str]) -> float | None:
        now = self._clock.now()
        answer = self.guard.answered(now)
        budget = plain_budget(headers) or parse_budget(headers, wall_now=self._clock.wall())
        limit = self.learned.limit
        usable = self.learned.hear(budget)
        if self.learned.limit != limit:
            self.guard.forget_order()
        if usable:
            self._mode = _Mode.LIMITED
        held: float | None = None
        held_up = False  # the round trip was held up far beyond the usual
        if status == 429:
            held = self._refused(slot, headers, budget, now)
        else:
            if self._mode is _Mode.PROBING:
                self._mode = _Mode.UNLIMITED
            held_up = self.guard.succeeded(slot.seq, slot.started_at, now, slot.probe)
            self.aimd.succeeded(slot.started_at, now, self.learned.window, self._limit_in_force)
        if usable and budget.remaining is not None and self.guard.fresh(slot.started_at):
            self.guard.learn(slot.seq, slot.started_at, answer, budget.remaining, budget.reset_after,
                             now, self._started, slot.probe, held_up)
        self._settle(slot)
        return held

    def _refused(self, slot: Slot, headers: Mapping[str, str], budget: ServerBudget, now: float) -> float:
        """A 429: hold every waiter until the server's moment; cut the AIMD cap once per hold."""
        self.stats.rate_limited += 1
        news = self.aimd.is_news(slot.seq)
        self.guard.refused(now, slot.probe, news)
        if news:
            self.aimd.cut(slot.started_at, now, self._started)
        holds = self.hold.count
        held = self.hold.extend(now, asked_wait(headers, budget, self.learned.known_window,
                                                wall_now=self._clock.wall(),
                                                default=self._default_429_wait))
        self.stats.holds += self.hold.count - holds
        self.stats.held_seconds = self.hold.seconds
        if self._mode is not _Mode.LIMITED:
            self._mode = _Mode.BLIND
        self.guard.restart(self.hold.until)
        return held

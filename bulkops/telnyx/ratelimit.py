"""One rate limiter shared by every worker: GCRA pacing + server-budget guard + pool-wide 429 hold.

A request may start (``async with limiter.slot()``) only when all of these agree:

1. **429 hold**: after a 429 nobody starts before the server's moment (Retry-After, else
   x-ratelimit-reset, else ``default_429_wait``), however long, up to ``max_server_wait``.
2. **Slow start**: until a response carries rate-limit headers, one request is in flight, so a
   small limit is learned before the pool bursts into it. A first answer without them means an
   unlimited server: open up.
3. **GCRA pacing** (virtual scheduling, burst 1): starts are ``1/rate`` apart, where
   ``rate = min(ceiling, PACE * limit / window)``; ``window`` is the largest x-ratelimit-reset
   seen twice in a row (whole seconds, so the largest is the window). Each pool-wide hold
   widens the margin.
4. **Budget guard**: the server's freshest ``remaining``, minus every request started after the
   one it answered (in flight: the server will count them), minus a reserve for requests the
   server counts out of our start order, must stay >= 1; otherwise wait for the window reset.
   The reset is learned from the counter jumping back up: the new window began by the time
   the server counted the request that saw it (one start interval after sending it; when it
   was answered, if the server counts out of order), else x-ratelimit-reset says when. At the
   estimated reset the budget refills, and the next report corrects it.

Pacing just under the learned rate keeps a fixed-window, sliding-window or token-bucket server
under its limit without 429s; the guard catches what pacing cannot see (another client on the
same key, a limit lowered mid-run). Time is read only through the injected ``Clock``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import Enum

import anyio

from bulkops.telnyx.clock import Clock, SystemClock
from bulkops.telnyx.headers import ServerBudget, parse_budget, parse_retry_after, plain_budget

PACE = 0.985  # of the learned rate: the margin absorbs requests reaching the server late or early
PACE_STEP, PACE_FLOOR = 0.01, 0.90  # each 429 despite pacing widens the margin, down to the floor
RESERVE_SHARE = 0.05  # the guard keeps up to this share of the limit for out-of-order counting
_MAX_NAP = 60.0  # the head waiter re-checks at least this often, whatever it waits for


@dataclass(slots=True)
class LimiterStats:
    sent: int = 0  # requests started
    peak_in_flight: int = 0
    holds: int = 0  # pool-wide holds started by a 429
    held_seconds: float = 0.0  # total time the pool was held
    rate_limited: int = 0  # 429 responses seen


class _Gate:
    """The context manager ``RateLimiter.slot()`` returns (a class: it runs per request)."""

    __slots__ = ("_limiter", "_slot")

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._slot: Slot | None = None

    async def __aenter__(self) -> Slot:
        self._slot = await self._limiter._acquire()
        return self._slot

    async def __aexit__(self, *exc_info: object) -> None:
        if self._slot is not None:
            self._slot.failed()  # no-op when the caller already observed a response


class _Mode(str, Enum):
    PROBING = "probing"  # slow start: one request in flight until the limit is known
    LIMITED = "limited"  # the server reports a budget: pace and guard it
    UNLIMITED = "unlimited"  # no budget headers: only the ceiling paces


class Slot:
    """One started request; it must end in exactly one ``observe`` or ``failed``."""

    __slots__ = ("_limiter", "seq", "started_at", "_done")

    def __init__(self, limiter: RateLimiter, seq: int, started_at: float) -> None:
        self._limiter = limiter
        self.seq = seq
        self.started_at = started_at
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
            self._limiter._settle()


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
        self._max_server_wait = max_server_wait
        self._default_429_wait = default_429_wait
        self.stats = LimiterStats()
        self._mode = _Mode.PROBING
        self._pace = PACE
        self._lock = anyio.Lock()  # FIFO: only the head waiter watches the clock
        self._nap_scope: anyio.CancelScope | None = None
        self._started = 0  # slots granted; the next one gets this seq
        self._in_flight = 0
        self._tat = -math.inf  # GCRA theoretical arrival time of the next start
        self._hold_until = -math.inf
        self._limit: int | None = None
        self._window: float | None = None
        self._last_reset: float | None = None
        # The budget: `_remaining` as of request `_anchor` (a server report or an estimated reset).
        self._remaining: int | None = None
        self._anchor = -1
        self._reset_at = math.inf  # estimated end of the window `_remaining` belongs to
        # The freshest server report (seq, its start time, remaining), to spot a window reset.
        self._report: tuple[int, float, int] | None = None
        self._order: tuple[int, int] | None = None  # this window: (top remaining + seq, largest drop)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def rate(self) -> float | None:
        """Starts per second currently allowed; None = unpaced."""
        ceiling = self._ceiling
        if self._mode is not _Mode.LIMITED or not self._limit:
            return ceiling or None
        learned = self._pace * self._limit / (self._window or 1.0)
        return min(ceiling, learned) if ceiling else learned

    def slot(self) -> AbstractAsyncContextManager[Slot]:
        """``async with limiter.slot() as slot:`` waits until a request may start."""
        return _Gate(self)

    async def _acquire(self) -> Slot:
        now = self._clock.now()
        if not self._lock.locked() and self._delay(now) <= 0:
            return self._grant(now)  # nobody queued and nothing to wait for: no lock round trip
        async with self._lock:
            while (delay := self._delay(self._clock.now())) > 0:
                await self._nap(delay)
            return self._grant(self._clock.now())

    def _delay(self, now: float) -> float:
        if now < self._hold_until:
            return self._hold_until - now
        if self._mode is _Mode.PROBING and self._in_flight:
            return math.inf  # woken by the answer
        delay = self._tat - now
        if self._remaining is not None:
            if now >= self._reset_at:  # the window has reset: a full budget from here
                self._refill(now)
            if self._remaining - (self._started - 1 - self._anchor) - self._reserve() < 1:
                delay = max(delay, self._reset_at - now)
        return max(delay, 0.0)

    def _reserve(self) -> int:
        """Requests in flight the server may count after its last report although they started
        before it: as many as its counting order strays from ours (``_note_order``), capped."""
        drop = self._order[1] if self._order else 0
        return min(drop, self._in_flight, int(RESERVE_SHARE * (self._limit or 0)))

    def _refill(self, now: float) -> None:
        window = self._window or 1.0
        self._reset_at += window * (math.floor((now - self._reset_at) / window) + 1)
        self._remaining, self._anchor = self._limit, self._started - 1

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
        interval = 1.0 / rate if rate else 0.0
        # Burst 1. Under the server's limit, a start made late (timers fire late, the loop is
        # busy) keeps its place on the schedule, or every late wake-up would lower the rate;
        # the margin and the budget guard cover the pair of starts that can come closer.
        # The operator's ceiling keeps no such credit: never more than `ceiling` a second.
        late_credit = interval if rate != self._ceiling else 0.0
        self._tat = max(self._tat, now - late_credit) + interval
        slot = Slot(self, self._started, now)
        self._started += 1
        self._in_flight += 1
        stats = self.stats
        stats.sent += 1
        if self._in_flight > stats.peak_in_flight:
            stats.peak_in_flight = self._in_flight
        return slot

    def _settle(self) -> None:
        self._in_flight -= 1
        if self._nap_scope is not None:
            self._nap_scope.cancel()

    def _observe(self, slot: Slot, status: int, headers: Mapping[str, str]) -> float | None:
        now = self._clock.now()
        budget = plain_budget(headers) or parse_budget(headers, wall_now=self._clock.wall())
        if budget.limit is not None or budget.remaining is not None:
            self._mode = _Mode.LIMITED
            self._learn(slot, budget, now)
        elif self._mode is _Mode.PROBING and status != 429:
            self._mode = _Mode.UNLIMITED
        held = self._hold(slot, budget, headers, now) if status == 429 else None
        self._settle()
        return held

    def _learn(self, slot: Slot, budget: ServerBudget, now: float) -> None:
        if budget.limit:
            self._limit = budget.limit
        self._learn_window(budget)
        if budget.remaining is None:
            return
        window = self._window or 1.0
        report = (slot.seq, slot.started_at, budget.remaining)
        if self._report and slot.seq <= self._report[0]:
            # An older view of the counter: only tells how orderly the server counts.
            if not self._rose(report, self._report) and not self._rose(self._report, report):
                self._note_order(report, new_window=False)
            return
        candidates = [now + (budget.reset_after if budget.reset_after is not None else window)]
        rose = self._report is not None and self._rose(self._report, report)
        orderly = self._order is None or self._order[1] <= 2  # at most one pair swapped
        self._note_order(report, new_window=rose)
        if rose:
            # A new window began, no later than the server counted this request: within one
            # start interval of sending it if the server counted the last window in our start
            # order; else, to be safe, by the time it answered.
            rate = self.rate
            counted_by = slot.started_at + (1.0 / rate if rate else 0.0) if orderly else now
            candidates.append(counted_by + window)
        elif slot.seq > self._anchor:
            candidates.append(self._reset_at)
        else:  # started before our estimated reset, counted in the old window: keep the refill
            self._report = report
            return
        self._report = report
        self._remaining, self._anchor = budget.remaining, slot.seq
        self._reset_at = min(candidates)

    def _learn_window(self, budget: ServerBudget) -> None:
        """The window is the largest reset seen, in two answers in a row: one odd value (a
        rounding artifact, a clock step) must not halve the pace."""
        if budget.window:
            self._window = budget.window
            return
        reset, previous = budget.reset_after, self._last_reset
        if reset is not None and 0 < reset <= self._max_server_wait:
            self._last_reset = reset
            steady = reset if self._window is None else min(reset, previous or 0.0)
            self._window = max(self._window or 0.0, steady)

    def _note_order(self, report: tuple[int, float, int], *, new_window: bool) -> None:
        """Track how far the server's counting order strays from our start order.

        Counted in start order, ``remaining + seq`` never drops within a window (it rises
        when a sliding window or a bucket gives budget back). A drop means requests were
        counted out of order (latency jitter before the count, another client on the key).
        """
        mark = report[2] + report[0]
        high, drop = (mark, 0) if new_window or self._order is None else self._order
        self._order = (max(high, mark), max(drop, high - mark))

    def _rose(self, earlier: tuple[int, float, int], later: tuple[int, float, int]) -> bool:
        """Did the server's counter go back up between two reports, by over half the limit?"""
        expected = earlier[2] - (later[0] - earlier[0])
        return later[2] - expected >= max(1, (self._limit or 2) // 2)

    def _hold(self, slot: Slot, budget: ServerBudget, headers: Mapping[str, str], now: float) -> float:
        """A 429: hold every waiter until the server's moment, and mark the budget spent."""
        self.stats.rate_limited += 1
        retry_after = parse_retry_after(
            next((v for k, v in headers.items() if k.lower() == "retry-after"), None),
            wall_now=self._clock.wall(),
        )
        wait = next(w for w in (retry_after, budget.reset_after, self._default_429_wait) if w is not None)
        until = now + min(wait, self._max_server_wait)
        if now >= self._hold_until:  # a new hold; later 429s of requests already sent extend it
            self.stats.holds += 1
            if self._mode is _Mode.LIMITED:
                self._pace = max(PACE_FLOOR, self._pace - PACE_STEP)  # jitter beat the margin
        if until > self._hold_until:
            self.stats.held_seconds += until - max(now, self._hold_until)
            self._hold_until = until
        if self._mode is _Mode.UNLIMITED:
            self._mode = _Mode.PROBING  # limited after all, with no headers: probe again
        if self._limit is not None and slot.seq > self._anchor:
            self._remaining, self._anchor, self._reset_at = 0, slot.seq, self._hold_until
        return max(self._hold_until - now, 0.0)

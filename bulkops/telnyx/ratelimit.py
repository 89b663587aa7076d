"""One rate limiter shared by every worker: GCRA pacing at the learned rate, a sliding-window
budget guard, a pool-wide 429 hold, and AIMD on 429s.

A request may start (``async with limiter.slot()``) only when all of these agree:

1. **429 hold**: after a 429 nobody starts before the server's moment (Retry-After, else an
   x-ratelimit-reset within the window, else ``default_429_wait``; a negative or zero one is
   junk), up to ``max_server_wait``. The budget model then restarts from the first answer
   after the hold; the 429 also cuts the AIMD cap (4) and may double the skew (5).
2. **Slow start**: until the first answer, one request is in flight, so a small limit is
   learned before the pool bursts into it.
3. **GCRA pacing** (virtual scheduling, burst 1): starts are ``1/rate`` apart, where ``rate``
   is the smallest of the operator's ceiling, ``PACE * limit / window`` from the headers, and
   the AIMD cap. ``limit`` changes only when most of the last answers agree on the new
   value; ``window`` is a window the limit header states (``100;w=60``), else the first
   x-ratelimit-reset, then the largest seen twice in a row among recent answers (whole
   seconds, so the largest is the window). The learned rate never falls below ``MIN_RATE``.
   A start that comes late keeps one interval of credit (none at the operator's ceiling:
   never more than it a second); after the pool was idle or held, the next start still
   waits half an interval, so no two starts share an instant (the server could count them
   in either order).
4. **AIMD cap** (headers are hints, a 429 is the fact): a 429 for a request started after the
   last cut caps the rate at ``AIMD_BACKOFF`` times what the server let through in the window
   before it, or, when that was all its headers promised (jitter beat the margin), one
   ``PACE_STEP`` lower, down to ``PACE_FLOOR``; with nothing let through the rate is left
   alone. Each clean window raises the cap by ``AIMD_STEP`` (``AIMD_RECOVERY`` while well
   under what got through before). Without usable headers this alone finds the rate.
5. **Budget guard**: the freshest trusted ``remaining``, minus our starts since the request it
   answered, plus our starts that have aged out of a sliding window since (the server's refill
   on a sliding log, and on a fixed window by its reset), minus a reserve for out-of-order
   counting, must stay >= 1. A start ages out a skew (``SKEW``, 20 ms) after the window: the
   server may count a request that much after it starts (its loop busy with a page of 250
   numbers, a queue), and a 429 the guard did not see coming doubles the skew (up to
   ``MAX_SKEW``; it halves again after ``SKEW_MEMORY`` windows without one). A request whose
   round trip was held up far beyond the usual spread ages out later by its excess over the
   fastest, and, to be safe, no start after it ages out before it does. At W = 1 s the skew
   costs a sliding log about 2 % of the limit (at most L per W + skew), where one 429's
   whole-second hold costs 3 % of a 30 s job. The reserve counts only the strays beyond what
   the skew allows for. A report lower than our requests explain is believed once the next
   answers confirm it. When the guard has kept the pool shut longer than ``trust`` times the
   longest wait a 429 asked for (``default_429_wait`` before any 429), counting from when it
   first closed if more budget is gone than our own requests used (another client, or a
   lie), one request goes as a probe: answered 200, the headers lose trust (the guard is off
   after a few); any 429 once the guard had a report restores it.

A waiter given a stop event (``slot(stop)``) raises ``NotStarted`` once it is set, instead of
starting: the operator's Ctrl-C sends no row still waiting for its turn.

Pacing just under the learned rate keeps fixed-window, sliding-window and token-bucket servers
under their limit; the guard catches what pacing cannot see (another client on the key, a
limit lowered mid-run). No header value can raise here or stall the pool: every wait is
bounded by a 429's asked wait, one pacing interval of at least ``MIN_RATE``, or an answer.
Time is read only through the injected ``Clock``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import anyio

from bulkops.telnyx.clock import Clock, SystemClock
from bulkops.telnyx.headers import ServerBudget, parse_budget, parse_retry_after, plain_budget

PACE = 0.985  # of the learned rate: the margin absorbs requests reaching the server late or early
PACE_STEP = 0.01  # a 429 while the server lets through what it says: pace this much lower
PACE_FLOOR = 0.90  # ... down to this share of the limit
MIN_RATE = 1.0  # requests/s: the floor of any learned rate (a junk header must not stop the pool)
AIMD_BACKOFF = 0.95  # after a 429: this share of what the server let through in the last window
AIMD_STEP = 0.005  # per window without a 429, the cap grows by this share
AIMD_RECOVERY = 0.05  # ... or by this one while under AIMD_BACKOFF of what got through before
RESERVE_SHARE = 0.05
SKEW = 0.02  # s: a request may be counted this long after it starts (the server's queue, a
# busy server loop, the network): it leaves a sliding window that much later than ours
MAX_SKEW = 0.1  # s: ... however often a 429 says the server counts later still
SKEW_MEMORY = 60  # windows without a 429 after which a raised skew halves again
_RTT_MEMORY = 64  # round trips kept to tell a usual one from one held up by a busy server
_FENCE_EVERY = 16  # answers between two looks at what is usual
MAX_WINDOW = 60.0  # a longer "window" from x-ratelimit-reset is junk for pacing
_VOTES = 8  # a new limit needs a majority of the last this many answers that state one
_WINDOW_MEMORY = 64  # the window is the largest steady reset among this many answers
_SUSPECTS = 2  # answers in a row that show an unexplained drop before the guard believes it
_DOUBTS = 3  # probes answered 200 against the headers' word before the guard turns off
_MAX_NAP = 60.0  # the head waiter re-checks at least this often, whatever it waits for
_STOP_LOOK = 0.1  # s: how often a waiter that can be stopped looks at its stop
_MAX_ROUND_TRIP = 10.0  # successes are kept this long past two windows, to size a cut
_TRIM = 4096  # drop start times no longer needed once this many piled up


@dataclass(slots=True)
class LimiterStats:
    sent: int = 0  # requests started
    in_flight: int = 0  # started and not yet answered or failed
    peak_in_flight: int = 0
    holds: int = 0  # pool-wide holds started by a 429
    held_seconds: float = 0.0  # total time the pool was held
    rate_limited: int = 0  # 429 responses seen
    probes: int = 0  # requests let through against a tight guard, to test the headers


class _Report(NamedTuple):
    """The server's word on its counter, as of one of our requests."""

    seq: int
    started_at: float
    remaining: int


class _Order(NamedTuple):
    """How far the server's counting order strays from our start order, this window."""

    high: int  # the highest ``remaining + seq`` seen
    high_at: float  # when the request that showed it started
    drop: int  # the largest unexplained fall below it
    since: int  # the request whose report opened this window of observations


class _Fence(NamedTuple):
    """The usual round trips: the fastest, and Tukey's fence beyond which one was held up."""

    fastest: float
    far: float  # the upper quartile plus 1.5 interquartile ranges


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
            self._limiter._settle(self)


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
        self._lock = anyio.Lock()  # FIFO: only the head waiter watches the clock
        self._nap_scope: anyio.CancelScope | None = None
        self._started = 0  # slots granted; the next one gets this seq
        self._tat = -math.inf  # GCRA theoretical arrival time of the next start
        self._hold_until = -math.inf
        self._asked_max = min(default_429_wait, max_server_wait)  # longest wait a 429 asked for
        # What the headers taught: a limit changes when most recent answers agree on it.
        self._limit: int | None = None
        self._limits: deque[int] = deque(maxlen=_VOTES)  # the last limits the server stated
        self._window: float | None = None
        self._last_reset: float | None = None
        self._steady_resets: deque[float] = deque(maxlen=_WINDOW_MEMORY)
        # AIMD: a cap on the rate from 429s, raised a step per clean window.
        self._cap: float | None = None
        self._cap_raised_at = -math.inf
        self._cut_seq = 0  # a 429 of a request started before the last cut is no news
        self._allowed = 0.0  # what the server let through per second before the last cut
        self._successes: deque[float] = deque()  # start times of answers that were not 429
        self._cut_pending: float | None = None  # a cut to size once the hold ends: up to when
        self._skew = SKEW  # how late the server may count a request, doubled by a 429
        self._skew_since = -math.inf  # when it last changed
        self._round_trips: deque[float] = deque(maxlen=_RTT_MEMORY)
        self._trips_seen = 0
        self._fence: _Fence | None = None  # what a usual round trip is, from the last ones
        # Requests whose round trip was held up far beyond the usual: (seq, when it has surely
        # left the server's window), kept until then.
        self._held_up: deque[tuple[int, float]] = deque()
        # The budget guard: our start times (seq - _base indexes them), the freshest trusted
        # report, and when the server said its window resets.
        self._starts: list[float] = []
        self._base = 0
        self._report: _Report | None = None
        self._suspects = 0  # reports in a row too low to believe
        self._confirming = False  # the first report looked spent: one request until the next
        self._order: _Order | None = None
        self._reset_at = math.inf
        self._fresh_after = -math.inf  # reports of requests started before this are stale
        self._tight_since: float | None = None
        self._trust = 1.0
        self._doubts = 0
        self._probe_out = False
        self._probe_next = False

    @property
    def rate(self) -> float | None:
        """Starts per second currently allowed; None = unpaced."""
        learned: float | None = None
        if self._mode is _Mode.LIMITED and self._limit:
            learned = max(MIN_RATE, PACE * self._limit / self._window_or_default)
        if self._cap is not None and self._mode is not _Mode.UNLIMITED:
            learned = self._cap if learned is None else min(learned, self._cap)
        ceiling = self._ceiling
        if learned is None:
            return ceiling
        return min(ceiling, learned) if ceiling else learned

    @property
    def _window_or_default(self) -> float:
        return self._window or 1.0

    def slot(self, stop: anyio.Event | None = None) -> AbstractAsyncContextManager[Slot]:
        """``async with limiter.slot() as slot:`` waits until a request may start; once
        ``stop`` is set it raises ``NotStarted`` instead (the operator's Ctrl-C: a row that
        waits for its turn is not sent after it)."""
        return _Gate(self, stop)

    async def _acquire(self, stop: anyio.Event | None = None) -> Slot:
        now = self._clock.now()
        if stop is not None and stop.is_set():
            raise NotStarted
        if not self._lock.locked() and self._delay(now) <= 0:
            return self._grant(now)  # nobody queued and nothing to wait for: no lock round trip
        async with self._lock:
            while (delay := self._delay(self._clock.now())) > 0:
                if stop is not None:  # looked at between naps, so a stop is seen within _STOP_LOOK
                    if stop.is_set():
                        raise NotStarted
                    delay = min(delay, _STOP_LOOK)
                await self._nap(delay)
            if stop is not None and stop.is_set():
                raise NotStarted
            return self._grant(self._clock.now())

    def _delay(self, now: float) -> float:
        if now < self._hold_until:
            return self._hold_until - now
        if (self._mode is _Mode.PROBING or self._confirming) and self.stats.in_flight:
            return math.inf  # woken by the answer
        if self._cut_pending is not None:
            self._size_cut(self._cut_pending)
        return max(self._tat - now, self._guard(now), 0.0)

    def _guard(self, now: float) -> float:
        """Seconds until the server's budget, as its headers tell it, has room for one more."""
        report = self._report
        if report is None or self._doubts >= _DOUBTS:
            return 0.0
        strict = report.remaining - (self._started - 1 - report.seq) - self._reserve()
        if strict >= 1:
            self._tight_since = None
            return 0.0
        # The server counts (at most) our last ``limit - remaining`` starts up to the report,
        # within one window before it; as those age out of a window, it has room again (a
        # sliding log frees them one by one, a fixed window all at once at its reset).
        window = self._window_or_default
        starts = self._starts
        in_window = bisect_right(starts, report.started_at - window)
        counted = in_window
        claimed = (self._limit or 0) - report.remaining
        if self._limit:
            counted = max(counted, report.seq - claimed + 1 - self._base)
        refilled = max(bisect_right(starts, now - window - self._skew), counted)
        held_up = self._held_up
        while held_up and held_up[0][1] <= now:
            held_up.popleft()
        for seq, gone in held_up:  # not aged out yet: nor, to be safe, any start after it
            if gone > now and counted <= seq - self._base < refilled:
                refilled = seq - self._base
        need = 1 - (strict + refilled - counted)
        # Used up by our own requests, the budget comes back as they age out; used up by
        # someone else (or only said to be), the guard's word is tested by a probe when it has
        # kept the pool waiting longer than a 429 ever asked.
        ours = claimed <= report.seq + 1 - self._base - in_window + max(2, claimed // 20)
        if need <= 0:
            if ours:
                self._tight_since = None
            return 0.0
        if self._tight_since is None:
            self._tight_since = now
        index = refilled + need - 1
        moment = starts[index] + window + self._skew + 1e-9 if index < len(starts) else self._reset_at
        for seq, gone in held_up:
            if counted <= seq - self._base <= index:
                moment = max(moment, gone + 1e-9)
        if self._probe_out:
            return max(moment - now, 0.0)  # the probe's answer wakes the pool
        probe_at = self._tight_since + self._trust * self._asked_max
        if now >= probe_at:
            self._probe_next = True
            return 0.0
        return max(min(moment, probe_at) - now, 0.0)

    def _reserve(self) -> int:
        """Requests in flight the server may count after its last report although they started
        before it: as many as its counting order strays from ours (``_note_order``), capped,
        less the strays the skew already allows for (those it counts up to ``_skew`` late)."""
        drop = self._order.drop if self._order else 0
        limit = self._limit or 0
        allowed = int(self._skew * limit / self._window_or_default)
        return min(max(0, drop - allowed), int(RESERVE_SHARE * limit))

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
        # More than that behind, the pool was not late but idle or held (slow start, a hold,
        # the guard): the next start still waits half an interval. Two starts at one instant
        # reach the server in either order, and the guard would keep a reserve for that
        # stray for the rest of the run.
        behind = now - self._tat
        self._tat = (self._tat if behind <= late_credit else now - late_credit / 2) + interval
        probe, self._probe_next = self._probe_next, False
        if probe:
            self._probe_out = True
            self._tight_since = now
            self.stats.probes += 1
        slot = Slot(self, self._started, now, probe)
        self._started += 1
        starts = self._starts
        starts.append(now)
        if len(starts) > _TRIM:
            self._trim(now)
        stats = self.stats
        stats.sent += 1
        stats.in_flight += 1
        if stats.in_flight > stats.peak_in_flight:
            stats.peak_in_flight = stats.in_flight
        return slot

    def _trim(self, now: float) -> None:
        """Forget start times older than any the guard can still ask about."""
        oldest = min(now, self._report.started_at if self._report else now)
        cut = bisect_right(self._starts, oldest - 2 * self._window_or_default - 1.0)
        if cut:
            del self._starts[:cut]
            self._base += cut

    def _settle(self, slot: Slot) -> None:
        self.stats.in_flight -= 1
        if slot.probe:
            self._probe_out = False
        if self._nap_scope is not None:
            self._nap_scope.cancel()

    def _observe(self, slot: Slot, status: int, headers: Mapping[str, str]) -> float | None:
        now = self._clock.now()
        budget = plain_budget(headers) or parse_budget(headers, wall_now=self._clock.wall())
        usable = self._learn_limit(budget)
        if usable:
            self._mode = _Mode.LIMITED
            self._learn_window(budget)
        held: float | None = None
        held_up = False  # the round trip was held up far beyond the usual
        if status == 429:
            held = self._hold(slot, budget, headers, now)
        else:
            if self._mode is _Mode.PROBING:
                self._mode = _Mode.UNLIMITED
            held_up = self._succeeded(slot, now)
        if usable and budget.remaining is not None and slot.started_at >= self._fresh_after:
            self._learn_budget(slot, budget, now, held_up=held_up)
        self._settle(slot)
        return held

    def _learn_limit(self, budget: ServerBudget) -> bool:
        """Adopt a new limit once it is the majority of the last ``_VOTES`` stated (a proxy's
        junk now and then must not move the pace); True when ``budget`` agrees with the limit
        in force: only such answers teach the window and the budget."""
        limit = budget.limit
        if limit is None:
            return False
        votes = self._limits
        votes.append(limit)
        if self._limit is None or (limit != self._limit and 2 * votes.count(limit) > len(votes)):
            self._limit = limit
            self._order = None
        return limit == self._limit

    def _learn_window(self, budget: ServerBudget) -> None:
        """The window is the largest reset seen, in two answers in a row: one odd value (a
        rounding artifact, a clock step) must not halve the pace."""
        if budget.window and budget.window <= MAX_WINDOW:
            self._window = budget.window
            return
        reset, previous = budget.reset_after, self._last_reset
        if reset is not None and 0 < reset <= MAX_WINDOW:
            self._last_reset = reset
            steady = reset if self._window is None else min(reset, previous or 0.0)
            if steady > 0:
                resets = self._steady_resets
                resets.append(steady)
                # The largest among recent answers: a window learned from junk is forgotten.
                self._window = steady if steady >= (self._window or 0.0) else max(resets)

    def _learn_budget(self, slot: Slot, budget: ServerBudget, now: float, *, held_up: bool) -> None:
        remaining = budget.remaining
        assert remaining is not None
        report = _Report(slot.seq, slot.started_at, remaining)
        previous = self._report
        if previous is None and self._limit:
            # No report yet to compare with: a budget spent beyond what our own requests in
            # the window explain (junk, or a resumed job's own earlier run) is believed when
            # the next answer says so too; until then one request at a time, as in slow start.
            ours = slot.seq + 1 - self._base - bisect_right(self._starts, slot.started_at - self._window_or_default)
            if self._limit - remaining > ours + max(2, self._limit // 20) and not self._confirming:
                self._confirming = True  # one request at a time until the next answer
                return
        self._confirming = False
        if previous is not None and self._limit:
            expected = previous.remaining - (slot.seq - previous.seq)
            if expected - remaining > max(2, self._limit // 20):
                # More budget gone than our requests explain: a proxy's junk, or another
                # client's burst. Believe it when the next answers say so too.
                if slot.seq <= previous.seq or self._suspects < _SUSPECTS:
                    self._suspects += slot.seq > previous.seq
                    return
        if not held_up:  # counted late, it shows when, not the usual counting order
            self._note_order(report)
        if previous is not None and slot.seq <= previous.seq:
            return  # an older view of the counter: it only told the counting order
        self._suspects = 0
        self._report = report
        reset = budget.reset_after
        window = self._window_or_default
        self._reset_at = now + (reset if reset is not None and reset <= window else window)
        if not slot.probe and report.remaining - (self._started - 1 - slot.seq) >= 1:
            self._tight_since = None

    def _note_order(self, report: _Report) -> None:
        """Counted in start order, ``remaining + seq`` never drops within a window: it only
        rises, when a window resets or a sliding window or a bucket gives budget back. A drop
        below the highest mark, beyond what our requests ageing out between the two may explain
        (each edge blurred by the skew), means requests were counted out of order (latency
        jitter before the count, another client on the key). A rise by over half the limit
        starts a new window of observations, and answers from before it (late, out of order)
        belong to the old one. A report of a request whose round trip was held up is left out:
        counted late, it shows when the server got to it, not the order it keeps."""
        mark = report.remaining + report.seq
        order = self._order
        window = self._window_or_default
        if order is None or mark - order.high >= max(1, (self._limit or 2) // 2):
            self._order = _Order(mark, report.started_at, 0, report.seq)
        elif mark >= order.high:
            self._order = order._replace(high=mark, high_at=report.started_at)
        elif report.seq >= order.since:
            aged = max(0, bisect_right(self._starts, order.high_at - window + self._skew)
                       - bisect_right(self._starts, report.started_at - window - self._skew))
            self._order = order._replace(drop=max(order.drop, order.high - mark - aged))

    def _succeeded(self, slot: Slot, now: float) -> bool:
        """An answer that was not a 429: AIMD's count, its additive increase, the probe's
        verdict; True when its round trip was held up far beyond the usual."""
        window = self._window_or_default
        successes = self._successes
        successes.append(slot.started_at)
        while successes and successes[0] < now - 2 * window - _MAX_ROUND_TRIP:
            successes.popleft()
        held_up = self._note_round_trip(slot, now, window)
        if self._skew > SKEW and now - self._skew_since >= SKEW_MEMORY * window:
            self._skew, self._skew_since = max(SKEW, self._skew / 2), now
        if slot.probe:  # the headers said no room, the server said yes
            self._doubts += 1
            self._trust /= 2
        cap = self._cap
        if cap is not None and now - self._cap_raised_at >= window:
            self._cap_raised_at = now
            # Well under what the server let through before: climb back fast; near it, probe
            # for more in small steps.
            cap *= 1 + (AIMD_STEP if cap >= AIMD_BACKOFF * self._allowed else AIMD_RECOVERY)
            limit = self._limit if self._mode is _Mode.LIMITED else None
            self._cap = None if limit and cap >= limit / window else cap  # back to the headers' pace
        return held_up

    def _note_round_trip(self, slot: Slot, now: float, window: float) -> bool:
        """A round trip far beyond the usual spread (past Tukey's fence: the upper quartile plus
        1.5 interquartile ranges) was held up, by a busy server loop, say, and may have been
        counted up to its excess over the fastest late: the guard ages that one request out of
        the window that much later (the others keep the usual skew)."""
        trip = now - slot.started_at
        trips = self._round_trips
        trips.append(trip)
        self._trips_seen += 1
        if self._trips_seen % _FENCE_EVERY == 0:  # a sort per answer would cost the pool
            ordered = sorted(trips)
            low, high = ordered[len(ordered) // 4], ordered[3 * len(ordered) // 4]
            self._fence = _Fence(ordered[0], high + 1.5 * (high - low))
        fence = self._fence
        if fence is not None and trip > fence.far:
            late = min(trip - fence.fastest, MAX_SKEW)
            if late > self._skew:
                self._held_up.append((slot.seq, slot.started_at + window + late))
                return True
        return False

    def _hold(self, slot: Slot, budget: ServerBudget, headers: Mapping[str, str], now: float) -> float:
        """A 429: hold every waiter until the server's moment; cut the AIMD cap once per hold."""
        self.stats.rate_limited += 1
        retry_after = parse_retry_after(
            next((v for k, v in headers.items() if k.lower() == "retry-after"), None),
            wall_now=self._clock.wall(),
        )
        reset = budget.reset_after
        if reset is not None and not 0 < reset <= (self._window or MAX_WINDOW):
            # Longer than the window it belongs to, or "now" on a refusal: junk, not the
            # server's moment (a reset of 0 would retry the whole pool into the same wall).
            reset = None
        wait = next(w for w in (retry_after, reset, self._default_429_wait) if w is not None)
        wait = min(wait, self._max_server_wait)
        self._asked_max = max(self._asked_max, wait)
        until = now + wait
        if slot.probe or self._report is not None:
            self._doubts, self._trust = 0, 1.0  # a 429: whatever the headers said, they may be right
        if slot.seq >= self._cut_seq:
            self._cut(slot, now)
        if now >= self._hold_until:  # a new hold; later 429s of requests already sent extend it
            self.stats.holds += 1
        if until > self._hold_until:
            self.stats.held_seconds += until - max(now, self._hold_until)
            self._hold_until = until
        if self._mode is not _Mode.LIMITED:
            self._mode = _Mode.BLIND
        # What the server counted before the hold is its business now: start over from the
        # first answer to a request sent after it.
        self._report, self._order, self._tight_since = None, None, None
        self._fresh_after = self._hold_until
        # Each until is at most max_server_wait past its own answer: clamp the float residue.
        return min(max(self._hold_until - now, 0.0), self._max_server_wait)

    def _cut(self, slot: Slot, now: float) -> None:
        """Multiplicative decrease, sized when the hold ends: by then the requests started
        before the refused one have their answers, and what got through is known."""
        self._cut_seq = self._started
        self._cap_raised_at = now
        self._cut_pending = slot.started_at
        if self._report is not None and not slot.probe:
            # The budget guard saw room and the server did not: it counts our requests later
            # than we allowed for (a busy server, a queue), so they stay in its window longer.
            self._skew, self._skew_since = min(2 * self._skew, MAX_SKEW), now

    def _size_cut(self, end: float) -> None:
        """To a share of what the server let through in the window before ``end`` (nothing
        to go on: leave the rate alone, the hold was the answer)."""
        self._cut_pending = None
        window = self._window_or_default
        let_through = sum(1 for t in self._successes if end - window < t <= end)
        self._allowed = let_through / window
        current = self.rate
        limit = self._limit if self._mode is _Mode.LIMITED else None
        if limit and let_through >= AIMD_BACKOFF * PACE * limit:
            # The server gave what its headers say: jitter beat the margin. One step down,
            # made good again within a few windows; the hold was the real cost.
            full = limit / window
            target = max(PACE_FLOOR * full, (current or full) - PACE_STEP * full)
        elif let_through:
            target = AIMD_BACKOFF * let_through / window
            if self._cap is not None:  # the cap failed too: decrease it, whatever got through
                target = min(target, AIMD_BACKOFF * self._cap)
        else:
            return
        self._cap = max(MIN_RATE, target if current is None else min(target, current))

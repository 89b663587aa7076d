"""The budget guard: no start while the server's own count, as its headers tell it, is spent.

The freshest trusted ``remaining``, minus our requests after the one it answered, plus those
that have aged out of a sliding window since, minus a reserve for out-of-order counting, must
stay >= 1, in the views (``views.py``) the guard believes. Three small parts help it: ``Skew``
(how late the server may count a request), ``RoundTrips`` (answers held up far beyond the
usual, and whether round trips have a heavy tail) and ``Probe`` (testing headers that keep it
shut).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque

from bulkops.telnyx.limiter.learned import Learned
from bulkops.telnyx.limiter.views import Report, View

SKEW = 0.02  # s: a request may be counted this long after it starts (the server's queue, a
# busy server loop, the network): it leaves a sliding window that much later than ours
MAX_SKEW = 0.1  # s: ... however often a 429 says the server counts later still
SKEW_MEMORY = 60  # windows without a 429 after which a raised skew halves again
_RTT_MEMORY = 64  # round trips kept to tell a usual one from one held up by a busy server
_FENCE_EVERY = 16  # answers between two looks at what is usual
_DOUBTS = 3  # probes answered 200 against the headers' word before the guard turns off
_TRIM = 4096  # drop start times no longer needed once this many piled up


class Skew:
    """How late the server may count a request: ``SKEW``, doubled by a 429 the guard did not
    see coming (up to ``MAX_SKEW``), halved again after ``SKEW_MEMORY`` windows without one."""

    __slots__ = ("value", "_since")

    def __init__(self) -> None:
        self.value = SKEW
        self._since = -math.inf

    def double(self, now: float) -> None:
        self.value, self._since = min(2 * self.value, MAX_SKEW), now

    def relax(self, now: float, window: float) -> None:
        if self.value > SKEW and now - self._since >= SKEW_MEMORY * window:
            self.value, self._since = max(SKEW, self.value / 2), now


class RoundTrips:
    """A round trip past Tukey's fence (the upper quartile plus 1.5 interquartile ranges of the
    last ``_RTT_MEMORY``) was held up, by a busy server loop, say, and may have been counted up
    to its excess over the fastest late: that one request ages out that much later."""

    __slots__ = ("_trips", "_seen", "_fastest", "_far", "_near", "ordered", "held_up")

    def __init__(self) -> None:
        self._trips: deque[float] = deque(maxlen=_RTT_MEMORY)
        self._seen = 0
        self._fastest = math.inf
        self._far = math.inf
        self._near = 0.0
        self.ordered: list[float] = []  # the last round trips, shortest first
        self.held_up: deque[tuple[int, float]] = deque()  # (seq, when surely out of the window)

    def note(self, seq: int, started_at: float, now: float, window: float, skew: float) -> bool:
        """Record one round trip; True when it was held up beyond what ``skew`` allows for."""
        trip = now - started_at
        self._trips.append(trip)
        self._seen += 1
        if self._seen % _FENCE_EVERY == 0:  # a sort per answer would cost the pool
            self.ordered = ordered = sorted(self._trips)
            low, high = ordered[len(ordered) // 4], ordered[3 * len(ordered) // 4]
            self._fastest, self._far = ordered[0], high + 1.5 * (high - low)
            self._near = max(0.0, low - 1.5 * (high - low))
        if trip > self._far:
            late = min(trip - self._fastest, MAX_SKEW)
            if late > skew:
                self.held_up.append((seq, started_at + window + late))
                return True
        return False

    @property
    def soonest(self) -> float:
        """A round trip shorter than any usual one: Tukey's lower fence (the lower quartile
        less 1.5 interquartile ranges), 0 for a spread as wide as a heavy tail's."""
        return self._near

    @property
    def heavy(self) -> bool:
        """A spread as wide as a heavy tail's (the lower fence at 0): how long a request has
        been in flight then says little about how much longer it takes."""
        return bool(self.ordered) and self._near == 0.0

    def quantile(self, share: float) -> float:
        """The round trip below which ``share`` of the last ones were (0 before any)."""
        ordered = self.ordered
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0

    def expire(self, now: float) -> None:
        held_up = self.held_up
        while held_up and held_up[0][1] <= now:
            held_up.popleft()


class Probe:
    """When the guard has kept the pool shut longer than ``trust`` times the longest wait a 429
    asked for (counting from when it first closed if more budget is gone than our own requests
    used: another client, or a lie), one request goes as a probe. Answered 200, the headers lose
    trust (the guard is off after ``_DOUBTS``); a 429 restores it."""

    __slots__ = ("tight_since", "trust", "doubts", "out", "due")

    def __init__(self) -> None:
        self.tight_since: float | None = None
        self.trust = 1.0
        self.doubts = 0
        self.out = False  # a probe is in flight
        self.due = False  # the next start is a probe

    @property
    def off(self) -> bool:
        return self.doubts >= _DOUBTS

    def doubt(self) -> None:
        self.doubts += 1
        self.trust /= 2

    def believe(self) -> None:
        self.doubts, self.trust = 0, 1.0


class BudgetGuard:
    """Two views of the server's count (by our start order and by our answer order), the
    parts above, and the first report's confirmation."""

    __slots__ = ("_learned", "by_start", "by_answer", "confirming", "_fresh_after", "skew",
                 "trips", "probe")

    def __init__(self, learned: Learned) -> None:
        self._learned = learned
        self.by_start = View(by_start=True)
        self.by_answer = View(by_start=False)
        self.confirming = False  # the first report looked spent: one request until the next
        self._fresh_after = -math.inf  # reports of requests started before this are stale
        self.skew = Skew()
        self.trips = RoundTrips()
        self.probe = Probe()

    # --- queries ---------------------------------------------------------------------------

    def views(self) -> list[View]:
        """The views the guard believes: the start order while the reserve covers how far the
        server's counting strays from it; the answer order while the counting strays less
        from it, or not at all."""
        by_start, by_answer = self.by_start, self.by_answer
        limit, window = self._learned.limit or 0, self._learned.window
        believed = []
        if by_start.report is not None and (by_start.order.covered(limit, window, self.skew.value)
                                            or not self.trips.heavy):
            believed.append(by_start)
        if by_answer.report is not None and (by_answer.order.drop == 0
                                             or by_answer.order.drop < by_start.order.drop):
            believed.append(by_answer)
        return believed or [by_start]

    @property
    def report(self) -> Report | None:
        return self.by_start.report or self.by_answer.report

    def room_at(self, now: float, started: int) -> tuple[float, bool]:
        """The moment the server has room for one more start (``-inf``: it has now), and
        whether what is spent is explained by our own requests: the sooner of the views the
        guard believes."""
        if self.report is None or self.probe.off:
            return -math.inf, False  # nothing to go on: open, and no word on whose budget
        limit, window = self._learned.limit or 0, self._learned.window
        best = (math.inf, True)
        for view in self.views():
            if view.report is None:
                continue
            if view.by_start:
                room = view.room_at(now, started, limit, window, self.skew.value,
                                    list(self.trips.held_up))
            else:
                # Counted by its answer, a request has left the window a window later; and
                # once the reports fit the answer order better than the start order (the
                # server counts just before it answers), the next start reaches the counter no
                # sooner than the shortest usual round trip.
                fits = view.order.drop < self.by_start.order.drop
                room = view.room_at(now, started, limit, window,
                                    -self.trips.soonest if fits else 0.0, [])
            best = min(best, room)
        answers = self.by_answer
        if (best[0] > -math.inf and self.trips.heavy and answers.report is not None
                and answers in self.views()
                and answers.spread_room(now, started, limit, window, self.trips.quantile)):
            return -math.inf, best[1]
        return best

    def fresh(self, started_at: float) -> bool:
        """Can an answer to a request started at ``started_at`` teach the budget?"""
        return started_at >= self._fresh_after

    # --- changes ---------------------------------------------------------------------------

    def admit(self, now: float, started: int, asked_max: float) -> float:
        """Seconds until the next start may go, by the guard; arms a probe when the guard has
        been shut too long."""
        moment, ours = self.room_at(now, started)
        probe = self.probe
        if moment == -math.inf:
            if ours:
                probe.tight_since = None
            return 0.0
        if probe.tight_since is None:
            probe.tight_since = now
        if probe.out:
            return max(moment - now, 0.0)  # the probe's answer wakes the pool
        probe_at = probe.tight_since + probe.trust * asked_max
        if now >= probe_at:
            probe.due = True
            return 0.0
        return max(min(moment, probe_at) - now, 0.0)

    def started(self, now: float) -> bool:
        """Record a start at ``now``; True when it goes as a probe."""
        probe, self.probe.due = self.probe.due, False
        if probe:
            self.probe.out = True
            self.probe.tight_since = now
        self.by_start.ledger.add(now)
        if len(self.by_start.ledger.times) > _TRIM:
            self.by_start.trim(now, self._learned.window)
            self.by_answer.trim(now, self._learned.window)
        return probe

    def answered(self, now: float) -> int:
        """Record an answer (or a failure: the server counted it by then, if at all); its
        number in the answer order."""
        return self.by_answer.ledger.add(now)

    def settled(self, probe: bool) -> None:
        if probe:
            self.probe.out = False

    def succeeded(self, seq: int, started_at: float, now: float, probe: bool) -> bool:
        """An answer that was not a 429; True when its round trip was held up."""
        window = self._learned.window
        held_up = self.trips.note(seq, started_at, now, window, self.skew.value)
        self.trips.expire(now)
        self.skew.relax(now, window)
        if probe:  # the headers said no room, the server said yes
            self.probe.doubt()
        return held_up

    def refused(self, now: float, probe: bool, news: bool) -> None:
        """A 429 (``news``: of a request sent after the last cut). Seen coming or not, the
        headers may be right; not seen coming, the server counts later than we allowed for."""
        if probe or self.report is not None:
            self.probe.believe()
        if news and self.report is not None and not probe:
            self.skew.double(now)

    def restart(self, after: float) -> None:
        """What the server counted before a hold is its business now: start over from the
        first answer to a request sent after ``after``."""
        self.by_start.restart()
        self.by_answer.restart()
        self.probe.tight_since = None
        self._fresh_after = after

    def forget_order(self) -> None:
        """The limit changed: what the counting order showed belongs to the old one."""
        self.by_start.order.forget()
        self.by_answer.order.forget()

    def learn(self, seq: int, started_at: float, answer: int, remaining: int, reset: float | None,
              now: float, started: int, probe: bool, held_up: bool) -> None:
        """The server's ``remaining`` as of request ``seq``, answered ``answer``-th at ``now``."""
        limit, window = self._learned.limit, self._learned.window
        if self.by_start.report is None and limit:
            # No report yet to compare with: a budget spent beyond what our own requests in
            # the window explain (junk, or a resumed job's own earlier run) is believed when
            # the next answer says so too; until then one request at a time, as in slow start.
            ledger = self.by_start.ledger
            ours = seq + 1 - ledger.base - bisect_right(ledger.times, started_at - window)
            if limit - remaining > ours + max(2, limit // 20) and not self.confirming:
                self.confirming = True
                return
        self.confirming = False
        skew = self.skew.value
        taken = self.by_start.learn(Report(seq, started_at, remaining), reset, now, limit, window,
                                    skew, held_up)
        self.by_answer.learn(Report(answer, now, remaining), reset, now, limit, window, 0.0, False)
        if taken and not probe and remaining - (started - 1 - seq) >= 1:
            self.probe.tight_since = None

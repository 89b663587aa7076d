"""The budget guard: no start while the server's own count, as its headers tell it, is spent.

The freshest trusted ``remaining``, minus our starts since the request it answered, plus our
starts that have aged out of a sliding window since, minus a reserve for out-of-order
counting, must stay >= 1. Four small parts help it: ``Skew`` (how late the server may count a
request), ``RoundTrips`` (answers held up far beyond the usual), ``CountingOrder`` (how far the
server's counting order strays from ours) and ``Probe`` (testing headers that keep it shut).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from typing import NamedTuple

from bulkops.telnyx.limiter.learned import Learned

SKEW = 0.02  # s: a request may be counted this long after it starts (the server's queue, a
# busy server loop, the network): it leaves a sliding window that much later than ours
MAX_SKEW = 0.1  # s: ... however often a 429 says the server counts later still
SKEW_MEMORY = 60  # windows without a 429 after which a raised skew halves again
RESERVE_SHARE = 0.05  # of the limit: the most the counting-order reserve keeps back
_RTT_MEMORY = 64  # round trips kept to tell a usual one from one held up by a busy server
_FENCE_EVERY = 16  # answers between two looks at what is usual
_SUSPECTS = 2  # answers in a row that show an unexplained drop before the guard believes it
_DOUBTS = 3  # probes answered 200 against the headers' word before the guard turns off
_TRIM = 4096  # drop start times no longer needed once this many piled up
SPREAD_Z = 3.0  # standard deviations of margin on when the k-th request in flight is counted


class Report(NamedTuple):
    """The server's word on its counter, as of one of our requests."""

    seq: int
    started_at: float
    remaining: int


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


class _Mark(NamedTuple):
    high: int  # the highest ``remaining + seq`` seen
    high_at: float  # when the request that showed it started
    drop: int  # the largest unexplained fall below it
    since: int  # the request whose report opened this window of observations


class CountingOrder:
    """Counted in start order, ``remaining + seq`` never drops within a window: it only rises,
    when a window resets or a sliding window or a bucket gives budget back. A drop below the
    highest mark, beyond what our requests ageing out between the two explain (each edge
    blurred by the skew), means requests were counted out of order (latency before the count,
    another client on the key); the guard keeps that many in reserve."""

    __slots__ = ("_mark",)

    def __init__(self) -> None:
        self._mark: _Mark | None = None

    def forget(self) -> None:
        self._mark = None

    def note(self, report: Report, starts: list[float], limit: int | None, window: float,
             skew: float) -> None:
        mark = report.remaining + report.seq
        order = self._mark
        if order is None or mark - order.high >= max(1, (limit or 2) // 2):
            self._mark = _Mark(mark, report.started_at, 0, report.seq)  # a new window
        elif mark >= order.high:
            self._mark = order._replace(high=mark, high_at=report.started_at)
        elif report.seq >= order.since:
            aged = max(0, bisect_right(starts, order.high_at - window + skew)
                       - bisect_right(starts, report.started_at - window - skew))
            self._mark = order._replace(drop=max(order.drop, order.high - mark - aged))

    @property
    def drop(self) -> int:
        """The largest stray seen in this window of observations."""
        return self._mark.drop if self._mark else 0

    def covered(self, limit: int, window: float, skew: float) -> bool:
        """Do the strays fit in the reserve (or need none)?"""
        return self.drop - int(skew * limit / window) <= int(RESERVE_SHARE * limit)

    def reserve(self, limit: int, window: float, skew: float) -> int:
        """The strays beyond what the skew allows for, capped at ``RESERVE_SHARE``."""
        drop = self._mark.drop if self._mark else 0
        allowed = int(skew * limit / window)
        return min(max(0, drop - allowed), int(RESERVE_SHARE * limit))


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


class Ledger:
    """Moments of one kind in the order they happened (our starts, or our answers): the
    ``n``-th is ``times[n - base]``."""

    __slots__ = ("times", "base")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.base = 0

    def add(self, moment: float) -> int:
        """Record a moment (never earlier than the last); its number."""
        self.times.append(moment)
        return self.base + len(self.times) - 1

    def trim(self, before: float) -> None:
        """Forget moments before ``before``."""
        cut = bisect_right(self.times, before)
        if cut:
            del self.times[:cut]
            self.base += cut


class View:
    """The server's count as one order of our requests explains it: by when they started (a
    server that counts on arrival) or by when they were answered (one that counts after the
    latency, just before it answers). A report is ``remaining`` as of request number
    ``index`` in that order; every request after it in the order may not be counted yet."""

    __slots__ = ("ledger", "report", "order", "_suspects", "_reset_at", "by_start")

    def __init__(self, *, by_start: bool) -> None:
        self.ledger = Ledger()
        self.report: Report | None = None
        self.order = CountingOrder()
        self._suspects = 0  # reports in a row too low to believe
        self._reset_at = math.inf
        self.by_start = by_start  # the start order: ages a request out ``skew`` late

    def room_at(self, now: float, total: int, limit: int, window: float, skew: float,
                held_up: list[tuple[int, float]]) -> tuple[float, bool]:
        """The moment the server has room for one more of ``total`` requests (``-inf``: it has
        now), and whether what is spent is explained by our own requests. A request leaves
        the server's window ``skew`` after it leaves ours (negative: the next start cannot be
        counted sooner than that, while those before it were counted by their answer)."""
        report = self.report
        assert report is not None
        reserve = self.order.reserve(limit, window, skew)
        strict = report.remaining - (total - 1 - report.seq) - reserve
        if strict >= 1:
            return -math.inf, True
        # The server counts (at most) our last ``limit - remaining`` requests up to the report,
        # within one window before it; as those age out of a window it has room again (a
        # sliding log frees them one by one, a fixed window all at once at its reset).
        times, base = self.ledger.times, self.ledger.base
        in_window = bisect_right(times, report.started_at - window)
        claimed = limit - report.remaining
        counted = max(in_window, report.seq - claimed + 1 - base) if limit else in_window
        refilled = max(bisect_right(times, now - window - skew), counted)
        held = [(seq - base, gone) for seq, gone in held_up if gone > now]
        for index, _ in held:  # not aged out yet: nor, to be safe, any start after it
            if counted <= index < refilled:
                refilled = index
        need = 1 - (strict + refilled - counted)
        ours = claimed <= report.seq + 1 - base - in_window + max(2, claimed // 20)
        if need <= 0:
            return -math.inf, ours
        index = refilled + need - 1
        moment = times[index] + window + skew + 1e-9 if index < len(times) else self._reset_at
        for index_held, gone in held:
            if counted <= index_held <= index:
                moment = max(moment, gone + 1e-9)
        return moment, ours

    def spread_room(self, now: float, total: int, limit: int, window: float,
                    trips: RoundTrips) -> bool:
        """Room once the requests in flight are taken to reach the counter spread out as round
        trips do, not all at once (answer view, heavy tail only): the k-th of them to be
        counted comes no sooner than the quantile ``(k - 1 - SPREAD_Z * sqrt(k)) / n`` of the
        recent round trips, and finds the window at most full by then."""
        report = self.report
        assert report is not None
        times, base = self.ledger.times, self.ledger.base
        available = report.remaining - self.order.reserve(limit, window, 0.0)
        claimed = limit - report.remaining
        counted = max(bisect_right(times, report.started_at - window), report.seq - claimed + 1 - base)
        in_log = report.seq - base + 1 - counted
        pending = total - report.seq  # the ones in flight (or answered since), and the next
        for k in range(1, pending + 1):
            share = (k - 1 - SPREAD_Z * math.sqrt(k)) / pending
            soonest = trips.quantile(share) if share > 0 else 0.0
            aged = min(max(0, bisect_right(times, now + soonest - window) - counted), in_log)
            if available + aged - k < 0:
                return False
        return True

    def learn(self, report: Report, reset: float | None, now: float, limit: int | None,
              window: float, skew: float, held_up: bool) -> bool:
        """Take ``report`` as the freshest unless it is suspect or older; True if taken."""
        previous = self.report
        if previous is not None and limit:
            expected = previous.remaining - (report.seq - previous.seq)
            if expected - report.remaining > max(2, limit // 20):
                # More budget gone than our requests explain: a proxy's junk, or another
                # client's burst. Believe it when the next answers say so too.
                if report.seq <= previous.seq or self._suspects < _SUSPECTS:
                    self._suspects += report.seq > previous.seq
                    return False
        if not held_up:  # counted late, it shows when, not the usual counting order
            self.order.note(report, self.ledger.times, limit, window, skew)
        if previous is not None and report.seq <= previous.seq:
            return False  # an older view of the counter: it only told the counting order
        self._suspects = 0
        self.report = report
        self._reset_at = now + (reset if reset is not None and reset <= window else window)
        return True

    def restart(self) -> None:
        self.report = None
        self.order.forget()

    def trim(self, now: float, window: float) -> None:
        oldest = min(now, self.report.started_at if self.report else now)
        self.ledger.trim(oldest - 2 * window - 1.0)


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
                and answers.spread_room(now, started, limit, window, self.trips)):
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

"""Two views of the server's count for the budget guard: by the order our requests started
in (a server that counts on arrival) and by the order they were answered in (one that counts
after the latency). Each is a ``Ledger`` of moments, the freshest ``Report`` and a
``CountingOrder`` that measures how far the server's counting strays from that order."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import NamedTuple

RESERVE_SHARE = 0.05  # of the limit: the most the counting-order reserve keeps back
SPREAD_Z = 3.0  # standard deviations of margin on when the k-th request in flight is counted
_SUSPECTS = 2  # answers in a row that show an unexplained drop before the guard believes it


class Report(NamedTuple):
    """The server's word on its counter, as of one of our requests."""

    seq: int
    started_at: float
    remaining: int


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
                    quantile: Callable[[float], float]) -> bool:
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
            soonest = quantile(share) if share > 0 else 0.0
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

"""AIMD: headers are hints, a 429 is the fact. A cap on the rate, cut by 429s."""

from __future__ import annotations

import math
from collections import deque

MIN_RATE = 1.0  # requests/s: the floor of any learned rate (a junk header must not stop the pool)
BACKOFF = 0.95  # after a 429: this share of what the server let through in the last window
STEP = 0.005  # per window without a 429, the cap grows by this share
RECOVERY = 0.05  # ... or by this one while under BACKOFF of what got through before
PACE_STEP = 0.01  # a 429 while the server lets through what it says: pace this much lower
PACE_FLOOR = 0.90  # ... down to this share of the limit
_MAX_ROUND_TRIP = 10.0  # successes are kept this long past two windows, to size a cut


class Aimd:
    """A 429 for a request started after the last cut cuts the cap, sized once the hold ends
    (by then the requests sent before it have their answers); each clean window raises it."""

    __slots__ = ("cap", "_raised_at", "_cut_seq", "_allowed", "_successes", "_pending")

    def __init__(self) -> None:
        self.cap: float | None = None  # None: no cap
        self._raised_at = -math.inf
        self._cut_seq = 0  # a 429 of a request started before the last cut is no news
        self._allowed = 0.0  # what the server let through per second before the last cut
        self._successes: deque[float] = deque()  # start times of answers that were not 429
        self._pending: float | None = None  # a cut to size: up to when

    def is_news(self, seq: int) -> bool:
        """Is a 429 of request ``seq`` news (sent after the last cut)?"""
        return seq >= self._cut_seq

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def cut(self, started_at: float, now: float, next_seq: int) -> None:
        """Mark a cut, to be sized by ``size`` once the hold ends."""
        self._cut_seq = next_seq
        self._raised_at = now
        self._pending = started_at

    def size(self, rate: float | None, window: float, limit: int | None, pace: float) -> None:
        """Size the pending cut: to ``BACKOFF`` of what the server let through in the window
        before the refused start, or, when that was all its headers promise (``limit`` at
        ``pace``: jitter beat the margin), one ``PACE_STEP`` lower. Nothing let through:
        the rate is left alone, the hold was the answer."""
        end, self._pending = self._pending, None
        if end is None:
            return
        let_through = sum(1 for t in self._successes if end - window < t <= end)
        self._allowed = let_through / window
        if limit and let_through >= BACKOFF * pace * limit:
            full = limit / window
            target = max(PACE_FLOOR * full, (rate or full) - PACE_STEP * full)
        elif let_through:
            target = BACKOFF * let_through / window
            if self.cap is not None:  # the cap failed too: decrease it, whatever got through
                target = min(target, BACKOFF * self.cap)
        else:
            return
        self.cap = max(MIN_RATE, target if rate is None else min(target, rate))

    def succeeded(self, started_at: float, now: float, window: float, limit: int | None) -> None:
        """An answer that was not a 429: counted for sizing, and once per clean window the
        cap grows (fast while well under what got through before); at ``limit / window``
        it is lifted, back to the headers' pace."""
        successes = self._successes
        successes.append(started_at)
        while successes and successes[0] < now - 2 * window - _MAX_ROUND_TRIP:
            successes.popleft()
        cap = self.cap
        if cap is not None and now - self._raised_at >= window:
            self._raised_at = now
            cap *= 1 + (STEP if cap >= BACKOFF * self._allowed else RECOVERY)
            self.cap = None if limit and cap >= limit / window else cap

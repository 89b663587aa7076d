"""The 429 hold: after a 429 nobody starts before the moment the server asked for."""

from __future__ import annotations

import math
from collections.abc import Mapping

from bulkops.telnyx.headers import ServerBudget, parse_retry_after
from bulkops.telnyx.limiter.learned import MAX_WINDOW


def asked_wait(headers: Mapping[str, str], budget: ServerBudget, window: float | None, *,
               wall_now: float, default: float) -> float:
    """What a 429 asks for: Retry-After, else an x-ratelimit-reset within the window, else
    ``default``. A reset of 0, a negative one or one longer than its window is junk, not the
    server's moment (a reset of 0 would retry the whole pool into the same wall)."""
    retry_after = parse_retry_after(
        next((v for k, v in headers.items() if k.lower() == "retry-after"), None), wall_now=wall_now)
    reset = budget.reset_after
    if reset is not None and not 0 < reset <= (window or MAX_WINDOW):
        reset = None
    return next(w for w in (retry_after, reset, default) if w is not None)


class Hold:
    """Until when the pool is held, the longest wait a 429 asked for, and what holds cost."""

    __slots__ = ("until", "asked_max", "count", "seconds", "_max_wait")

    def __init__(self, *, default_wait: float, max_wait: float) -> None:
        self.until = -math.inf
        self.asked_max = min(default_wait, max_wait)
        self.count = 0  # holds started
        self.seconds = 0.0  # total time held
        self._max_wait = max_wait

    def wait(self, now: float) -> float:
        """Seconds the pool is still held (0 when it is not)."""
        return max(self.until - now, 0.0)

    def extend(self, now: float, asked: float) -> float:
        """Hold until ``asked`` seconds from ``now`` (capped), unless held longer already: a
        later 429 of a request sent before the hold extends it, an earlier one never shortens
        it. Returns the seconds the pool is now held for."""
        wait = min(asked, self._max_wait)
        self.asked_max = max(self.asked_max, wait)
        if now >= self.until:
            self.count += 1
        until = now + wait
        if until > self.until:
            self.seconds += until - max(now, self.until)
            self.until = until
        # Each until is at most max_wait past its own answer: clamp the float residue.
        return min(max(self.until - now, 0.0), self._max_wait)

"""GCRA pacing (virtual scheduling, burst 1): starts ``1 / rate`` apart."""

from __future__ import annotations

import math


class Pacer:
    """The theoretical arrival time (TAT) of the next start is its only state."""

    __slots__ = ("tat",)

    def __init__(self) -> None:
        self.tat = -math.inf

    def wait(self, now: float) -> float:
        """Seconds until the next start is due (0 when it is)."""
        return max(self.tat - now, 0.0)

    def start(self, now: float, interval: float, *, credit: bool) -> None:
        """Book a start at ``now``, the next one ``interval`` later.

        A start made late (timers fire late, the loop is busy) keeps one interval of credit
        when ``credit`` (else every late wake-up would lower the rate; the margin and the
        budget guard cover the pair of starts that come closer). More than that behind, the
        pool was idle or held: the next start still waits half an interval, so no two starts
        share an instant (the server could count them in either order).
        """
        allowed = interval if credit else 0.0
        self.tat = (self.tat if now - self.tat <= allowed else now - allowed / 2) + interval

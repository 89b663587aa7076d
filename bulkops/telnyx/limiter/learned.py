"""What the server's headers taught: its limit and its window, believed by majority."""

from __future__ import annotations

from collections import deque

from bulkops.telnyx.headers import ServerBudget

MAX_WINDOW = 60.0  # a longer "window" from x-ratelimit-reset is junk for pacing
_VOTES = 8  # a new limit needs a majority of the last this many answers that state one
_WINDOW_MEMORY = 64  # the window is the largest steady reset among this many answers


class Learned:
    """The limit changes only when most recent answers agree on it (a proxy's junk now and
    then must not move the pace); the window is one the limit header states (``100;w=60``),
    else the first reset, then the largest seen twice in a row among recent answers (resets
    are whole seconds counting down, so the largest is the window)."""

    __slots__ = ("limit", "_votes", "_window", "_last_reset", "_steady")

    def __init__(self) -> None:
        self.limit: int | None = None
        self._votes: deque[int] = deque(maxlen=_VOTES)
        self._window: float | None = None
        self._last_reset: float | None = None
        self._steady: deque[float] = deque(maxlen=_WINDOW_MEMORY)

    @property
    def window(self) -> float:
        """The learned window in seconds (1 s until one is learned)."""
        return self._window or 1.0

    @property
    def known_window(self) -> float | None:
        return self._window

    def hear(self, budget: ServerBudget) -> bool:
        """Count ``budget``'s limit as a vote; True when it agrees with the limit in force
        (only such answers teach the window and the budget)."""
        limit = budget.limit
        if limit is None:
            return False
        self._votes.append(limit)
        if self.limit is None or (limit != self.limit and 2 * self._votes.count(limit) > len(self._votes)):
            self.limit = limit
        if limit != self.limit:
            return False
        self._hear_window(budget)
        return True

    def _hear_window(self, budget: ServerBudget) -> None:
        if budget.window and budget.window <= MAX_WINDOW:
            self._window = budget.window
            return
        reset, previous = budget.reset_after, self._last_reset
        if reset is not None and 0 < reset <= MAX_WINDOW:
            self._last_reset = reset
            steady = reset if self._window is None else min(reset, previous or 0.0)
            if steady > 0:
                self._steady.append(steady)
                # The largest among recent answers: a window learned from junk is forgotten.
                self._window = steady if steady >= (self._window or 0.0) else max(self._steady)

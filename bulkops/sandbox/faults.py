"""Rate limiting like Telnyx and seeded fault injection: the decisions, not the plumbing.

Both are pure logic over an injectable clock / RNG so they can be tested without
a server; ``middleware.py`` applies them to requests.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from enum import Enum

from .config import FaultConfig, RetryAfterMode

# With rate limiting off, headers still go out (every Telnyx response has them),
# announcing this nominal limit per window; it is never enforced.
UNLIMITED_NOMINAL = 1_000_000
_PRUNE_AT = 4_096  # forget expired windows once this many keys were seen


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until this key's window resets

    @property
    def reset_seconds(self) -> int:
        """``x-ratelimit-reset``: whole seconds until the reset, rounded up, at least 1.

        Rounding up means a client that waits this long always lands in the new
        window; "at least 1" keeps a client from busy-looping on 0.
        """
        return max(1, math.ceil(self.reset_after))

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset_seconds),
        }

    def retry_after(self, mode: RetryAfterMode, wall_now: datetime | None = None) -> str | None:
        """The ``Retry-After`` value of a 429 in ``mode``; None when it is left out."""
        if mode == "absent":
            return None
        if mode == "seconds":
            return str(self.reset_seconds)
        moment = (wall_now or datetime.now(UTC)) + timedelta(seconds=self.reset_after)
        if moment.microsecond:  # HTTP dates have whole seconds: round up, never early
            moment = moment.replace(microsecond=0) + timedelta(seconds=1)
        return format_datetime(moment, usegmt=True)


class RateLimiter:
    """Fixed window per API key: ``rate`` requests per ``window`` seconds.

    A key's window opens with its first request and lasts ``window`` seconds;
    refused requests (429) do not count against it.
    """

    def __init__(self, rate: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, list[float]] = {}  # key -> [start, count]
        self.rate = rate
        self.window = window

    def configure(self, rate: int, window: float) -> None:
        """New limits take effect at once; every key starts a fresh window."""
        self.rate = rate
        self.window = window
        self._windows.clear()

    def check(self, key: str) -> RateDecision:
        now = self._clock()
        entry = self._windows.get(key)
        if entry is None or now >= entry[0] + self.window:
            if entry is None and len(self._windows) >= _PRUNE_AT:
                self._prune(now)
            entry = [now, 0]
            self._windows[key] = entry
        limit = self.rate or UNLIMITED_NOMINAL
        reset_after = entry[0] + self.window - now
        if self.rate and entry[1] >= self.rate:
            return RateDecision(False, limit, 0, reset_after)
        entry[1] += 1
        return RateDecision(True, limit, max(0, limit - int(entry[1])), reset_after)

    def _prune(self, now: float) -> None:
        expired = [k for k, (start, _) in self._windows.items() if now >= start + self.window]
        for key in expired:
            del self._windows[key]


class FaultKind(str, Enum):
    ERROR = "error"  # 5xx, nothing applied
    ERROR_AFTER_WRITE = "error_after_write"  # write applied, then 5xx
    DROP = "drop"  # connection closed, nothing applied
    DROP_AFTER_WRITE = "drop_after_write"  # write applied, then connection closed
    SLOW = "slow"  # answer held back slow_ms
    IGNORED_WRITE = "ignored_write"  # ignore_writes swallowed a write (counted, not drawn)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What to do to one request."""

    latency_s: float = 0.0
    fault: FaultKind | None = None
    error_status: int = 0
    slow_s: float = 0.0


NO_FAULT = FaultPlan()


class FaultInjector:
    """Draws a ``FaultPlan`` per request from one RNG seeded by ``FaultConfig.seed``.

    The sequence of plans is deterministic for a seed and a sequence of requests;
    with concurrent clients the order requests arrive in is not, so tests assert
    on counts and effects, never on which request was hit.
    """

    config: FaultConfig
    _rng: random.Random

    def __init__(self, config: FaultConfig) -> None:
        self.configure(config)

    def configure(self, config: FaultConfig) -> None:
        """Replace the settings and restart the RNG from their seed."""
        self.config = config
        self._rng = random.Random(f"bulkops-sandbox/faults/{config.seed}")

    def plan(self, is_write: bool) -> FaultPlan:
        c = self.config
        if not c.active:
            return NO_FAULT
        rng = self._rng
        latency = 0.0
        if c.latency_ms or c.jitter_ms:
            latency = max(0.0, c.latency_ms + rng.uniform(-c.jitter_ms, c.jitter_ms)) / 1000.0
        fault: FaultKind | None = None
        if c.error_rate and rng.random() < c.error_rate:
            fault = FaultKind.ERROR
        elif is_write and c.error_after_write_rate and rng.random() < c.error_after_write_rate:
            fault = FaultKind.ERROR_AFTER_WRITE
        elif c.drop_rate and rng.random() < c.drop_rate:
            # A dropped write reached the server for half of these: the client cannot tell.
            fault = FaultKind.DROP_AFTER_WRITE if is_write and rng.random() < 0.5 else FaultKind.DROP
        elif c.slow_rate and rng.random() < c.slow_rate:
            fault = FaultKind.SLOW
        status = rng.choice((500, 502, 503)) if fault in (FaultKind.ERROR, FaultKind.ERROR_AFTER_WRITE) else 0
        slow = c.slow_ms / 1000.0 if fault is FaultKind.SLOW else 0.0
        return FaultPlan(latency_s=latency, fault=fault, error_status=status, slow_s=slow)

"""Rate limiting (a Telnyx-like fixed window, a sliding log or a token bucket, all with
Telnyx's headers) and seeded fault injection: the decisions, not the plumbing.

Both are pure logic over an injectable clock / RNG so they can be tested without
a server; ``middleware.py`` applies them to requests.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from enum import Enum

from .config import FaultConfig, LimiterKind, RetryAfterMode

# With rate limiting off, headers still go out (every Telnyx response has them),
# announcing this nominal limit per window; it is never enforced.
UNLIMITED_NOMINAL = 1_000_000
_PRUNE_AT = 4_096  # forget idle keys (expired windows, empty logs, full buckets) past this many


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until this key's budget is whole again (x-ratelimit-reset)
    retry_after_s: float | None = None  # refused: seconds until one request would pass

    @property
    def reset_seconds(self) -> int:
        """``x-ratelimit-reset``: whole seconds until the reset, rounded up, at least 1.

        Rounding up means a client that waits this long always lands in the new
        window; "at least 1" keeps a client from busy-looping on 0.
        """
        return _whole_seconds(self.reset_after)

    @property
    def wait_seconds(self) -> int:
        """Refused: whole seconds until one request would pass (Retry-After), at least 1."""
        return _whole_seconds(self.reset_after if self.retry_after_s is None else self.retry_after_s)

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
        wait = self.reset_after if self.retry_after_s is None else self.retry_after_s
        if mode == "seconds":
            return str(self.wait_seconds)
        moment = (wall_now or datetime.now(UTC)) + timedelta(seconds=wait)
        if moment.microsecond:  # HTTP dates have whole seconds: round up, never early
            moment = moment.replace(microsecond=0) + timedelta(seconds=1)
        return format_datetime(moment, usegmt=True)


def _whole_seconds(seconds: float) -> int:
    # round(.., 9): a float artifact (2.0000000000000004) must not become 3.
    return max(1, math.ceil(round(seconds, 9)))


class RateLimiter:
    """Per API key: ``rate`` requests per ``window`` seconds, by one of three algorithms.

    - ``fixed`` (Telnyx-like): a key's window opens with its first request and lasts
      ``window`` seconds; x-ratelimit-reset is the time until it ends.
    - ``fixed-clock``: the same windows, but they turn on the server's own clock (multiples of
      ``window`` of its monotonic time), at a phase the client cannot know.
    - ``sliding``: at most ``rate`` requests in any trailing ``window`` (a log of accepted
      requests); x-ratelimit-reset is the time until the oldest leaves the log.
    - ``bucket``: ``rate`` tokens refilled continuously at ``rate / window`` per second;
      x-ratelimit-reset is the time until the bucket is full again.

    Every kind answers the same headers (limit, remaining, reset in whole seconds rounded up)
    and, on a 429, a Retry-After of the time until one request would pass. Refused requests
    (429) never count.
    """

    def __init__(self, rate: int, window: float, clock: Callable[[], float] = time.monotonic,
                 kind: LimiterKind = LimiterKind.FIXED) -> None:
        self._clock = clock
        self._windows: dict[str, list[float]] = {}  # fixed: key -> [start, count]
        self._logs: dict[str, deque[float]] = {}  # sliding: key -> accepted request times
        self._buckets: dict[str, list[float]] = {}  # bucket: key -> [tokens, as of]
        self.rate = rate
        self.window = window
        self.kind = kind

    def configure(self, rate: int, window: float, kind: LimiterKind | None = None) -> None:
        """New limits take effect at once; every key starts afresh."""
        self.rate = rate
        self.window = window
        if kind is not None:
            self.kind = kind
        self._windows.clear()
        self._logs.clear()
        self._buckets.clear()

    def check(self, key: str) -> RateDecision:
        now = self._clock()
        if not self.rate:
            return self._unlimited(key, now)
        if self.kind is LimiterKind.SLIDING:
            return self._sliding(key, now)
        if self.kind is LimiterKind.BUCKET:
            return self._bucket(key, now)
        return self._fixed(key, now)

    def _unlimited(self, key: str, now: float) -> RateDecision:
        entry = self._window_of(key, now)
        entry[1] += 1
        return RateDecision(True, UNLIMITED_NOMINAL, max(0, UNLIMITED_NOMINAL - int(entry[1])),
                            entry[0] + self.window - now)

    def _window_of(self, key: str, now: float) -> list[float]:
        entry = self._windows.get(key)
        if entry is None or now >= entry[0] + self.window:
            if entry is None and len(self._windows) >= _PRUNE_AT:
                self._prune(now)
            opened = math.floor(now / self.window) * self.window if self.kind is LimiterKind.FIXED_CLOCK else now
            entry = [opened, 0]
            self._windows[key] = entry
        return entry

    def _fixed(self, key: str, now: float) -> RateDecision:
        entry = self._window_of(key, now)
        reset_after = entry[0] + self.window - now
        if entry[1] >= self.rate:
            return RateDecision(False, self.rate, 0, reset_after)
        entry[1] += 1
        return RateDecision(True, self.rate, max(0, self.rate - int(entry[1])), reset_after)

    def _sliding(self, key: str, now: float) -> RateDecision:
        log = self._logs.get(key)
        if log is None:
            if len(self._logs) >= _PRUNE_AT:
                self._prune(now)
            log = self._logs[key] = deque()
        while log and log[0] <= now - self.window:
            log.popleft()
        if len(log) >= self.rate:
            until_oldest = log[0] + self.window - now
            return RateDecision(False, self.rate, 0, until_oldest, until_oldest)
        log.append(now)
        return RateDecision(True, self.rate, self.rate - len(log), log[0] + self.window - now)

    def _bucket(self, key: str, now: float) -> RateDecision:
        per_second = self.rate / self.window
        entry = self._buckets.get(key)
        if entry is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            entry = self._buckets[key] = [float(self.rate), now]
        tokens = min(float(self.rate), entry[0] + (now - entry[1]) * per_second)
        entry[1] = now
        if tokens < 1:
            entry[0] = tokens
            return RateDecision(False, self.rate, 0, (self.rate - tokens) / per_second,
                                (1 - tokens) / per_second)
        entry[0] = tokens = tokens - 1
        return RateDecision(True, self.rate, int(tokens), (self.rate - tokens) / per_second)

    def _prune(self, now: float) -> None:
        for key in [k for k, (start, _) in self._windows.items() if now >= start + self.window]:
            del self._windows[key]
        for key in [k for k, log in self._logs.items() if not log or log[-1] <= now - self.window]:
            del self._logs[key]
        full_after = self.window  # an idle bucket is full again after one window
        for key in [k for k, (_, at) in self._buckets.items() if now - at >= full_after]:
            del self._buckets[key]


# Rate-limit headers seen from proxies, gateways and other APIs: missing, zero, negative,
# junk, repeated, fractional, absurd, epoch seconds or milliseconds, contradicting.
ODD_RATE_HEADERS: tuple[dict[str, str], ...] = (
    {},
    {"x-ratelimit-remaining": "5"},
    {"x-ratelimit-limit": "0", "x-ratelimit-remaining": "0"},
    {"x-ratelimit-limit": "-5", "x-ratelimit-remaining": "-1", "x-ratelimit-reset": "-3"},
    {"x-ratelimit-limit": "lots", "x-ratelimit-remaining": "many", "x-ratelimit-reset": "soon"},
    {"x-ratelimit-limit": "100, 100", "x-ratelimit-remaining": "7, 7", "x-ratelimit-reset": "1, 1"},
    {"x-ratelimit-limit": "99.5", "x-ratelimit-remaining": "0.5", "x-ratelimit-reset": "0.25"},
    {"x-ratelimit-limit": "1000000000000", "x-ratelimit-remaining": "999999999999"},
    {"x-ratelimit-limit": "1", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "86400"},
    {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "500", "x-ratelimit-reset": "0"},
    {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "{epoch}"},
    {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "{epoch_ms}"},
)


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
        """Replace the settings and restart the RNGs from their seed."""
        self.config = config
        self._rng = random.Random(f"bulkops-sandbox/faults/{config.seed}")
        # Its own RNG: turning odd headers on leaves every other fault where it was.
        self._odd_rng = random.Random(f"bulkops-sandbox/odd-headers/{config.seed}")
        self._latency_rng = random.Random(f"bulkops-sandbox/latency/{config.seed}")

    def odd_rate_headers(self) -> dict[str, str] | None:
        """For a share ``odd_header_rate`` of answers, rate-limit headers as proxies and
        gateways garble them (in place of the true ones); None for the others."""
        rate = self.config.odd_header_rate
        if not rate or self._odd_rng.random() >= rate:
            return None
        now = time.time()  # "{epoch}": a reset an hour away as epoch seconds / milliseconds
        marks = {"{epoch}": str(int(now + 3600)), "{epoch_ms}": str(int((now + 3600) * 1000))}
        return {k: marks.get(v, v) for k, v in self._odd_rng.choice(ODD_RATE_HEADERS).items()}

    def _draw_latency(self, rng: random.Random) -> float:
        c = self.config
        if c.latency_shape == "exponential":
            return rng.expovariate(1000.0 / c.latency_ms) if c.latency_ms else 0.0
        return max(0.0, c.latency_ms + rng.uniform(-c.jitter_ms, c.jitter_ms)) / 1000.0

    def latency_before_count(self) -> float:
        """Seconds a request spends before the rate limiter counts it (0 unless
        ``latency_before_count``): the heavy tail of a real network, ahead of the counter."""
        c = self.config
        if not c.latency_before_count or not (c.latency_ms or c.jitter_ms):
            return 0.0
        return self._draw_latency(self._latency_rng)

    def plan(self, is_write: bool) -> FaultPlan:
        c = self.config
        if not c.active:
            return NO_FAULT
        rng = self._rng
        latency = 0.0
        if (c.latency_ms or c.jitter_ms) and not c.latency_before_count:
            latency = self._draw_latency(rng)
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

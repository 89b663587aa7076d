"""Settings of the sandbox server: what it holds, how it limits, which faults it injects.

Both dataclasses validate themselves on construction so that a bad CLI flag or
control-route body fails with a message naming the setting, never deep inside
a request handler.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from bulkops.errors import ConfigError

RetryAfterMode = Literal["seconds", "http-date", "absent"]
RETRY_AFTER_MODES: tuple[RetryAfterMode, ...] = ("seconds", "http-date", "absent")
LatencyShape = Literal["uniform", "exponential"]
LATENCY_SHAPES: tuple[LatencyShape, ...] = ("uniform", "exponential")


class LimiterKind(str, Enum):
    """How the sandbox counts requests against ``rate`` per ``window`` (faults.RateLimiter)."""

    FIXED = "fixed"  # Telnyx-like: a window opens with a key's first request
    FIXED_CLOCK = "fixed-clock"  # fixed windows that turn on the server's clock (unknown phase)
    SLIDING = "sliding"  # at most `rate` in any trailing window (a log)
    BUCKET = "bucket"  # `rate` tokens, refilled continuously at rate/window per second


MAX_NUMBERS = 1_000_000  # the seeded number space holds ~2.8 million long codes; keep memory sane
DEFAULT_API_KEY = "sandbox-key"
MAX_SHORT_CODES = 10_000  # an account holds a handful; enough to page through


def _check_probability(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a probability between 0 and 1 (got {value!r}); use e.g. 0.05")


def _check_non_negative(name: str, value: float) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"{name} must be a finite number >= 0 (got {value!r})")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Seeded fault injection; every probability is drawn per request from one RNG.

    Faults are decided after rate limiting and authentication, so a 429 or a 401
    is never replaced by an injected fault.
    """

    error_rate: float = 0.0  # 5xx (500/502/503, code 10007) and the write NOT applied
    error_after_write_rate: float = 0.0  # writes only: applied, then 5xx answered
    drop_rate: float = 0.0  # connection closed with no response; writes: applied for half (seeded)
    latency_ms: float = 0.0  # mean added latency per request
    jitter_ms: float = 0.0  # uniform +- jitter around latency_ms, clipped at 0
    latency_shape: LatencyShape = "uniform"  # or "exponential" of mean latency_ms (a heavy tail)
    latency_before_count: bool = False  # the latency passes before the rate limiter counts
    slow_rate: float = 0.0  # the response is held back slow_ms (after any write was applied)
    slow_ms: float = 30_000.0
    odd_header_rate: float = 0.0  # answers whose x-ratelimit-* headers are junk (faults.ODD_RATE_HEADERS)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("error_rate", "error_after_write_rate", "drop_rate", "slow_rate", "odd_header_rate"):
            _check_probability(name, getattr(self, name))
        for name in ("latency_ms", "jitter_ms", "slow_ms"):
            _check_non_negative(name, getattr(self, name))
        if self.latency_shape not in LATENCY_SHAPES:
            raise ConfigError(f"latency_shape must be one of {', '.join(LATENCY_SHAPES)} "
                              f"(got {self.latency_shape!r})")
        if not isinstance(self.latency_before_count, bool):
            raise ConfigError(f"latency_before_count must be true or false (got {self.latency_before_count!r})")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"fault seed must be an integer (got {self.seed!r})")

    @property
    def active(self) -> bool:
        """True when any fault or added latency is configured."""
        return any(
            (
                self.error_rate,
                self.error_after_write_rate,
                self.drop_rate,
                self.latency_ms,
                self.jitter_ms,
                self.slow_rate,
            )
        )

    def merged(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A copy with ``changes`` (JSON field names) applied; unknown names are an error."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(
                f"unknown fault setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **dict(changes))


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything that shapes one sandbox run; the same seed gives the same account.

    Rate limiting is per API key (the bearer token presented): a fixed window that opens
    with the key's first request (``limiter="fixed"``, like Telnyx), a sliding log, or a
    token bucket, all with the same headers. ``rate=0`` turns it off: requests are never
    refused, but every response still carries the ``x-ratelimit-*`` headers, with a
    nominal limit of ``UNLIMITED_NOMINAL`` (see faults.py).
    """

    numbers: int = 1000
    profiles: int = 5
    # Short codes, round-robin over the profiles, every SHORT_CODE_UNBOUND_EVERY-th bound to
    # none. 0 by default so the library's sandbox answers as before; `bulkops sandbox` seeds 12.
    short_codes: int = 0
    seed: int = 0
    api_key: str = DEFAULT_API_KEY
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    rate: int = 0  # requests per window per API key; 0 = off
    window: float = 1.0
    limiter: LimiterKind = LimiterKind.FIXED
    retry_after: RetryAfterMode = "seconds"
    faults: FaultConfig = field(default_factory=FaultConfig)
    bulk_max: int = 1000  # most numbers accepted in one bulk order
    bulk_speed: float = 500.0  # numbers per second a bulk order processes
    order_fail_rate: float = 0.0  # share of an order's numbers listed as failed, not applied
    order_stuck_rate: float = 0.0  # share of orders accepted and never processed (stay pending)
    orders_refused: int = 0  # 0: orders served; 403, 404 or 405: the order routes answer that
    ignore_writes: bool = False  # PATCH answers 200 with the unchanged profile
    assign_delay: float = 2.0  # mean seconds a 10DLC link stays PENDING_* (each 0.5-1.5 x this)
    assign_fail_rate: float = 0.0  # share of 10DLC links ending FAILED_ASSIGNMENT with failureReasons
    unassigned_share: float = 0.2
    control: bool = False  # expose /_control/* observability routes
    record: bool = False  # keep every (request, response) pair for contract tests

    def __post_init__(self) -> None:
        _check_int("numbers", self.numbers, 0, MAX_NUMBERS)
        _check_int("profiles", self.profiles, 0, 10_000)
        _check_int("short_codes", self.short_codes, 0, MAX_SHORT_CODES)
        _check_int("port", self.port, 0, 65_535)
        _check_int("rate", self.rate, 0, 10**9)
        _check_int("bulk_max", self.bulk_max, 1, 10**7)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer (got {self.seed!r})")
        _check_non_negative("window", self.window)
        if self.window <= 0:
            raise ConfigError(f"window must be > 0 seconds (got {self.window!r})")
        _check_non_negative("bulk_speed", self.bulk_speed)
        if self.bulk_speed <= 0:
            raise ConfigError(f"bulk_speed must be > 0 numbers per second (got {self.bulk_speed!r})")
        _check_probability("unassigned_share", self.unassigned_share)
        try:  # "bucket" as well as LimiterKind.BUCKET
            object.__setattr__(self, "limiter", LimiterKind(self.limiter))
        except ValueError:
            kinds = ", ".join(kind.value for kind in LimiterKind)
            raise ConfigError(f"limiter must be one of {kinds} (got {self.limiter!r})") from None
        _check_probability("order_fail_rate", self.order_fail_rate)
        _check_probability("order_stuck_rate", self.order_stuck_rate)
        _check_non_negative("assign_delay", self.assign_delay)
        _check_probability("assign_fail_rate", self.assign_fail_rate)
        if self.orders_refused not in (0, 403, 404, 405):
            raise ConfigError(f"orders_refused must be 0, 403, 404 or 405 (got {self.orders_refused!r})")
        if self.retry_after not in RETRY_AFTER_MODES:
            raise ConfigError(
                f"retry_after must be one of {', '.join(RETRY_AFTER_MODES)} (got {self.retry_after!r})"
            )
        if not isinstance(self.faults, FaultConfig):
            raise ConfigError("faults must be a FaultConfig")
        key = self.api_key
        if not isinstance(key, str) or not key or not key.isascii() or not key.isprintable() or " " in key:
            # Never echo the key itself: it may be a real one pasted by mistake.
            raise ConfigError("api_key must be non-empty printable ASCII without spaces; choose another key")


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high} (got {value!r})")

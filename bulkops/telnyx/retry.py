"""The retry policy of one API call: which failures are retried, how long to wait, when to stop.

Three kinds of failure, decided by the HTTP layer (``client.py``):

- ``Transient`` (408, 5xx, connection reset, timeout): retried with exponential backoff and
  FULL jitter, at most ``max_attempts`` times and ``max_elapsed`` seconds. Telnyx warns the
  write may already have been applied; our PATCH sets an absolute value, so a retry is safe.
- ``RateLimited`` (429): retried at once: the shared limiter already holds the whole pool until
  the server's moment, so a backoff here would only add to it. Capped by ``max_rate_limited``,
  and the held time does not count against ``max_elapsed``.
- ``Permanent`` (other 4xx): not retried; the row fails with Telnyx's code/title/detail.

A call that is not safe to repeat (``repeatable=False``: a bulk order POST, which would leave a
second order) is retried only when the request surely never counted: a 429, or ``NotSent`` (no
connection could be made). Any other transient failure ends it at once, ``GaveUp`` retryable:
the request may have landed.

``AuthError`` (and any other exception) is never retried and propagates unchanged; everything
that ends a call early becomes ``GaveUp``, a row failure.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from bulkops.models import ApiErrorInfo
from bulkops.telnyx.clock import Clock

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # transient failures (408, 5xx, connection errors, timeouts) per call
    max_elapsed: float = 300.0  # seconds one call may spend retrying (429 holds excluded)
    backoff_base: float = 0.5  # first backoff is uniform in [0, base]; the ceiling doubles
    backoff_max: float = 30.0  # ... up to this
    max_rate_limited: int = 50  # 429s per call (they wait as the server says, not by backoff)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_rate_limited < 0:
            raise ValueError("max_attempts must be >= 1 and max_rate_limited >= 0")
        if self.max_elapsed < 0 or self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("max_elapsed, backoff_base and backoff_max must be >= 0")

    def backoff_ceiling(self, failures: int) -> float:
        """The upper bound of the jittered wait after the ``failures``-th transient failure."""
        return min(self.backoff_max, self.backoff_base * 2.0 ** min(failures - 1, 64))


class _CallError(Exception):
    """A failed attempt: its message is built from method, path and status, never secrets."""

    def __init__(self, info: ApiErrorInfo, message: str | None = None) -> None:
        super().__init__(message or info.describe())
        self.info = info


class Transient(_CallError):
    """Retryable: 408, 5xx, or no response at all (``info.status`` is None)."""


class NotSent(Transient):
    """No connection could be made: the request never reached the server."""


class RateLimited(_CallError):
    """429: ``wait`` is how long the limiter now holds the pool for."""

    def __init__(self, info: ApiErrorInfo, wait: float, message: str | None = None) -> None:
        super().__init__(info, message)
        self.wait = wait


class Permanent(_CallError):
    """Any other 4xx (or an unusable answer): the row fails, Telnyx's fields kept verbatim."""


@dataclass(frozen=True)
class Outcome(Generic[T]):
    value: T
    attempts: int  # HTTP attempts it took, 1 = first try


class GaveUp(Exception):
    """The call failed for good (``info`` says why).

    For a write, the row is recorded as failed with ``info``. For a read the job cannot go
    on without (profile check, listing, snapshot), it is fatal: ``runner.gave_up_error``
    turns it into the ``ApiError`` that stops the job.
    """

    def __init__(self, info: ApiErrorInfo, attempts: int, *, retryable: bool,
                 why: str | None = None) -> None:
        why = why or ("retries exhausted" if retryable else "not retryable")
        super().__init__(f"gave up after {attempts} attempt(s), {why}: {info.describe()}")
        self.info = info
        self.attempts = attempts
        self.retryable = retryable  # True: transient or rate limited, the write may have landed


_JITTER = random.Random()  # full-jitter draws need no cryptographic quality


@dataclass
class _Tally:
    """What one call has been through, for the stop and wait decisions."""

    transient: int = 0
    rate_limited: int = 0
    held: float = 0.0  # seconds the limiter held the pool for this call's 429s


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    clock: Clock,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    rng: random.Random | None = None,
    repeatable: bool = True,
) -> Outcome[T]:
    """Call ``fn`` until it succeeds or the policy gives up; ``on_retry(attempt, error, wait)``
    is told before each retry. Raises ``GaveUp``; other exceptions propagate unchanged.
    ``repeatable=False``: retry only what surely never counted (429, ``NotSent``)."""
    started = clock.now()
    # Hot path: nearly every call succeeds at once, so tenacity is only set up after a failure.
    try:
        return Outcome(await fn(), 1)
    except Permanent as error:
        raise GaveUp(error.info, 1, retryable=False) from error
    except (Transient, RateLimited) as error:
        first_failure: BaseException | None = error
    jitter = rng or _JITTER
    tally = _Tally()

    def failure(state: RetryCallState) -> BaseException:
        error = state.outcome.exception() if state.outcome else None
        assert error is not None  # only failed attempts reach these callbacks
        return error

    def wait(state: RetryCallState) -> float:
        error = failure(state)
        if isinstance(error, RateLimited):
            return 0.0  # the limiter holds every worker until the server's moment
        return jitter.uniform(0.0, policy.backoff_ceiling(tally.transient))

    def stop(state: RetryCallState) -> bool:
        if isinstance(failure(state), RateLimited):
            return tally.rate_limited >= policy.max_rate_limited
        spent = clock.now() - started - tally.held
        return tally.transient >= policy.max_attempts or spent + state.upcoming_sleep > policy.max_elapsed

    def tally_failure(state: RetryCallState) -> None:
        error = failure(state)
        if isinstance(error, RateLimited):
            tally.rate_limited += 1
            tally.held += error.wait
        else:
            tally.transient += 1

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry(state.attempt_number, failure(state), state.upcoming_sleep)

    retrying = AsyncRetrying(
        sleep=clock.sleep,
        retry=retry_if_exception_type((Transient, RateLimited) if repeatable else
                                      (NotSent, RateLimited)),
        after=tally_failure,
        wait=wait,
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
    attempts = 1

    async def attempt() -> T:  # a coroutine function, as tenacity requires
        nonlocal attempts, first_failure
        if first_failure is not None:  # replay the first attempt's failure: tallied, waited on
            replay, first_failure = first_failure, None
            raise replay
        attempts += 1
        return await fn()

    try:
        value: T = await retrying(attempt)
    except (Transient, RateLimited) as error:
        # Not safe to repeat and maybe landed: it was never retried, so say that, not "exhausted".
        landed = not repeatable and isinstance(error, Transient) and not isinstance(error, NotSent)
        raise GaveUp(error.info, attempts, retryable=True,
                     why="not repeated, as it may have landed" if landed else None) from error
    except Permanent as error:
        raise GaveUp(error.info, attempts, retryable=False) from error
    return Outcome(value, attempts)

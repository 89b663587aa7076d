"""The retry policy with a stepping clock: no server, no real waiting."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable

import pytest

from bulkops.errors import AuthError
from bulkops.models import ApiErrorInfo
from bulkops.telnyx.retry import (
    GaveUp, Outcome, Permanent, RateLimited, RetryPolicy, Transient, call_with_retry,
)


class SteppingClock:
    """Time moves only when someone sleeps (or a test says an attempt took a while)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_750_000_000.0 + self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class Highest(random.Random):
    """Full jitter drawn at its upper bound, so the backoff ceilings become visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def scripted(
    results: Iterable[BaseException | str], clock: SteppingClock, took: float = 0.0
) -> Callable[[], Awaitable[str]]:
    """An API call that fails or succeeds in the given order; each attempt takes ``took`` s."""
    pending = iter(results)

    async def call() -> str:
        clock.t += took
        result = next(pending)
        if isinstance(result, BaseException):
            raise result
        return result

    return call


SERVER_ERROR = ApiErrorInfo(503, "10007", "Service unavailable", "try again")
TOO_MANY = ApiErrorInfo(429, "10011", "Too many requests", "slow down")


def transient() -> Transient:
    return Transient(SERVER_ERROR)


def limited(wait: float = 1.0) -> RateLimited:
    return RateLimited(TOO_MANY, wait)


async def test_a_first_try_success_takes_one_attempt_and_no_sleep() -> None:
    clock = SteppingClock()
    assert await call_with_retry(scripted(["ok"], clock), RetryPolicy(), clock=clock) == Outcome("ok", 1)
    assert clock.sleeps == []


async def test_transient_failures_are_retried_with_exponential_full_jitter_backoff() -> None:
    clock = SteppingClock()
    calls: list[tuple[int, str, float]] = []
    outcome = await call_with_retry(
        scripted([transient(), transient(), transient(), "ok"], clock),
        RetryPolicy(),
        clock=clock,
        on_retry=lambda attempt, error, wait: calls.append((attempt, type(error).__name__, wait)),
        rng=Highest(),
    )
    assert outcome == Outcome("ok", 4)
    assert clock.sleeps == [0.5, 1.0, 2.0]  # ceilings of base * 2^n, drawn at the top
    assert calls == [(1, "Transient", 0.5), (2, "Transient", 1.0), (3, "Transient", 2.0)]


async def test_backoff_is_drawn_between_zero_and_a_capped_ceiling() -> None:
    clock = SteppingClock()
    policy = RetryPolicy(max_attempts=30, backoff_base=0.5, backoff_max=3.0, max_elapsed=10_000)
    call = scripted([transient()] * 29 + ["ok"], clock)
    await call_with_retry(call, policy, clock=clock, rng=random.Random(7))
    ceilings = [min(3.0, 0.5 * 2**n) for n in range(29)]
    assert all(0.0 <= wait <= top for wait, top in zip(clock.sleeps, ceilings, strict=True))
    assert len(set(clock.sleeps)) == 29  # jittered: no two waits alike
    assert max(clock.sleeps) > 1.5 and min(clock.sleeps) < 0.5  # the full range, not +-25%


async def test_transient_failures_give_up_after_max_attempts_keeping_the_last_error() -> None:
    clock = SteppingClock()
    last = Transient(ApiErrorInfo(None, detail="PATCH /phone_numbers/%2B1/messaging: connection reset"))
    with pytest.raises(GaveUp) as caught:
        call = scripted([transient()] * 4 + [last], clock)
        await call_with_retry(call, RetryPolicy(max_attempts=5), clock=clock)
    assert caught.value.attempts == 5 and caught.value.retryable
    assert caught.value.info is last.info
    assert len(clock.sleeps) == 4


async def test_a_call_not_safe_to_repeat_says_it_was_not_repeated_not_that_retries_ran_out() -> None:
    clock = SteppingClock()
    with pytest.raises(GaveUp) as caught:
        await call_with_retry(scripted([transient()], clock), RetryPolicy(max_attempts=5),
                              clock=clock, repeatable=False)
    assert caught.value.attempts == 1 and caught.value.retryable
    assert "not repeated, as it may have landed" in str(caught.value)
    assert "retries exhausted" not in str(caught.value)


async def test_rate_limited_calls_retry_at_once_because_the_limiter_holds_the_pool() -> None:
    clock = SteppingClock()
    outcome = await call_with_retry(
        scripted([limited()] * 10 + ["ok"], clock), RetryPolicy(max_attempts=2), clock=clock
    )
    assert outcome == Outcome("ok", 11)  # 429s do not use up the transient attempts
    assert all(wait == 0.0 for wait in clock.sleeps)


async def test_rate_limited_calls_give_up_after_max_rate_limited() -> None:
    clock = SteppingClock()
    with pytest.raises(GaveUp) as caught:
        await call_with_retry(scripted([limited()] * 10, clock), RetryPolicy(max_rate_limited=3), clock=clock)
    assert caught.value.attempts == 3 and caught.value.retryable
    assert caught.value.info == TOO_MANY


async def test_max_elapsed_bounds_the_time_spent_retrying() -> None:
    clock = SteppingClock()
    policy = RetryPolicy(max_attempts=10, max_elapsed=250.0, backoff_base=0.0)
    with pytest.raises(GaveUp) as caught:
        await call_with_retry(scripted([transient()] * 10, clock, took=100.0), policy, clock=clock)
    assert caught.value.attempts == 3  # 300 s spent: over the 250 s budget


async def test_time_held_by_429s_does_not_count_against_max_elapsed() -> None:
    clock = SteppingClock()
    policy = RetryPolicy(max_elapsed=60.0, backoff_base=0.0)
    results: list[BaseException | str] = [limited(200.0), limited(200.0), transient(), "ok"]
    pending = iter(results)

    async def call() -> str:
        result = next(pending)
        if isinstance(result, RateLimited):
            clock.t += result.wait  # waited out the pool's hold inside the limiter
        if isinstance(result, BaseException):
            raise result
        return result

    assert await call_with_retry(call, policy, clock=clock) == Outcome("ok", 4)


async def test_a_permanent_error_gives_up_at_once_with_telnyx_fields_verbatim() -> None:
    clock = SteppingClock()
    info = ApiErrorInfo(422, "10015", "Invalid value", "The messaging_profile_id is not a valid UUID.")
    with pytest.raises(GaveUp) as caught:
        await call_with_retry(scripted([Permanent(info), "ok"], clock), RetryPolicy(), clock=clock)
    assert caught.value.attempts == 1 and not caught.value.retryable
    assert caught.value.info is info
    assert "code 10015" in str(caught.value) and "not a valid UUID" in str(caught.value)
    assert clock.sleeps == []


@pytest.mark.parametrize("error", [AuthError("The API refused the key (HTTP 401)."), ValueError("a bug")])
async def test_auth_errors_and_bugs_propagate_unchanged_without_retry(error: Exception) -> None:
    clock = SteppingClock()
    with pytest.raises(type(error)) as caught:
        await call_with_retry(scripted([error, "ok"], clock), RetryPolicy(), clock=clock)
    assert caught.value is error
    assert clock.sleeps == []


async def test_a_plain_callable_returning_an_awaitable_is_awaited() -> None:
    clock = SteppingClock()

    async def answer() -> int:
        return 42

    assert await call_with_retry(lambda: answer(), RetryPolicy(), clock=clock) == Outcome(42, 1)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(backoff_max=-1)

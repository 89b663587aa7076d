"""The one way a test waits for something: poll it with a deadline, never a fixed sleep.

    await wait_until(lambda: sandbox.stats.writes_applied >= 10, within=30, what="10 writes applied")
    order = await poll(fetch_order, until=lambda o: not o["pending"], within=30, what="the order settled")

Both check at once, then every ``every`` seconds, and fail the test with an ``AssertionError``
naming ``what`` (and ``explain()``, if given) once ``within`` seconds have passed. They measure
the deadline on the monotonic clock and sleep through the running event loop, so a sandbox
served by the test's own loop keeps answering while they wait.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")

POLL_S = 0.01  # often enough that a wait costs nothing, rare enough to leave the loop free


def _timed_out(what: str, within: float, explain: Callable[[], str] | None) -> AssertionError:
    detail = f"\n{explain()}" if explain is not None else ""
    return AssertionError(f"waited {within:g} s for {what}: it did not happen{detail}")


async def wait_until(condition: Callable[[], bool], *, within: float, what: str, every: float = POLL_S,
                     explain: Callable[[], str] | None = None) -> None:
    """Return once ``condition()`` is true; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            raise _timed_out(what, within, explain)
        await anyio.sleep(every)


async def poll(probe: Callable[[], Awaitable[T]], *, until: Callable[[T], bool], within: float, what: str,
               every: float = POLL_S, explain: Callable[[T], str] | None = None) -> T:
    """Await ``probe()`` until ``until`` holds for what it returned, and return that; fail the test
    after ``within`` seconds (``explain`` is given the last value)."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, within, None if explain is None else functools.partial(explain, value))
        await anyio.sleep(every)

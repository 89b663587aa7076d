"""Time as the limiter and the retry policy read it: the real clock, or a virtual one in tests."""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def now(self) -> float: ...  # monotonic seconds

    def wall(self) -> float: ...  # epoch seconds (for Retry-After HTTP dates)

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock; tests inject a virtual one."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)



"""The limiter with one mechanism switched off at a time, for ``tests.limiter_ablation``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bulkops.telnyx.limiter.aimd import Aimd
from bulkops.telnyx.limiter.guard import BudgetGuard, Probe, RoundTrips, Skew
from bulkops.telnyx.limiter.views import CountingOrder, View
from bulkops.telnyx.ratelimit import RateLimiter


class _FixedSkew(Skew):
    __slots__ = ()

    def double(self, now: float) -> None:
        pass


class _NoSkew(_FixedSkew):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()
        self.value = 0.0


class _NoFence(RoundTrips):
    __slots__ = ()

    def note(self, seq: int, started_at: float, now: float, window: float, skew: float) -> bool:
        return False


class _NoReserve(CountingOrder):
    __slots__ = ()

    def reserve(self, limit: int, window: float, skew: float) -> int:
        return 0


class _NoCut(Aimd):
    __slots__ = ()

    def size(self, rate: float | None, window: float, limit: int | None, pace: float) -> None:
        self._pending = None


class _NoProbe(Probe):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()
        self.trust = math.inf

    def believe(self) -> None:
        self.doubts = 0


class _StartOrderOnly(BudgetGuard):
    __slots__ = ()

    def views(self) -> list[View]:
        return [self.by_start]


class _NoSpread(RoundTrips):
    __slots__ = ()

    @property
    def heavy(self) -> bool:
        return False


def start_order_only(**kwargs: Any) -> RateLimiter:
    limiter = RateLimiter(**kwargs)
    limiter.guard = _StartOrderOnly(limiter.learned)
    return limiter


def variant(**parts: Callable[[], Any]) -> Callable[..., RateLimiter]:
    """A limiter factory whose guard (or AIMD) parts are replaced by ``parts``."""

    def make(**kwargs: Any) -> RateLimiter:
        limiter = RateLimiter(**kwargs)
        for name, part in parts.items():
            if name == "aimd":
                limiter.aimd = part()
            elif name == "order":  # the counting order of both views
                limiter.guard.by_start.order = part()
                limiter.guard.by_answer.order = part()
            else:
                setattr(limiter.guard, name, part())
        return limiter

    return make


VARIANTS: dict[str, Callable[..., RateLimiter]] = {
    "baseline": RateLimiter,
    "no-doubling": variant(skew=_FixedSkew),
    "no-skew": variant(skew=_NoSkew),
    "no-fence": variant(trips=_NoFence),
    "no-reserve": variant(order=_NoReserve),
    "no-aimd": variant(aimd=_NoCut),
    "no-probes": variant(probe=_NoProbe),
    "no-answer-view": start_order_only,
    "no-spread": variant(trips=_NoSpread),
    "bare-guard": variant(skew=_NoSkew, trips=_NoFence, order=_NoReserve),
}

"""Healing: whether the numbers orders did not move go into one more order round, or to PATCH.

A number an order did not move (listed failed, or still pending at ``--order-timeout``) can
be PATCHed (one request each) or put into a new order. The rule (docs/orders.md):

    re-order the n numbers  iff  round  <  (1 - f) * n / R

- ``R``: the learned rate (requests/s the limiter allows; else the rate observed so far);
  n / R is what PATCHing them costs.
- ``round``: what one more round costs, ``wait + requests / R``: its POSTs, a poll each, and
  its read-backs (250 numbers per request), plus the wait for it to settle, which is
  ``p * timeout + (1 - p) * settle``: ``p`` the chance that one of its k orders gets stuck
  (``1 - (1 - s) ** k``, ``s`` the share of this job's orders that timed out), ``settle`` the
  time an order of that size took so far (its numbers / the observed order speed, plus the
  first poll).
- ``f``: the share of numbers the job's orders did not move so far; f * n / R is what the
  numbers a round leaves still cost by PATCH. With f near 1 (a server whose orders move
  nothing), a round never pays, so the job turns to PATCH.

Numbers listed failed by a re-order (a second order that did not move them) always go to
PATCH: its answer is how the report gets Telnyx's code, title and detail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

READ_BATCH = 250  # numbers per read-back request (the API's page[size] maximum)
POLL_WAIT = 1.0  # seconds: an order is polled at the earliest this long after its POST
DEFAULT_SPEED = 100.0  # numbers/s an order is assumed to move before one was seen to settle
MIN_RATE = 0.5  # requests/s: a floor, so a rate not learned yet never reads as free PATCHes


@dataclass(frozen=True, slots=True)
class History:
    """What this job's closed orders showed (from the journal, so it survives a restart)."""

    orders: int = 0  # settled or timed out
    timed_out: int = 0
    numbers: int = 0  # numbers those orders held
    moved: int = 0  # of them, read back on the target afterwards

    @property
    def stuck_share(self) -> float:
        return self.timed_out / self.orders if self.orders else 0.0

    @property
    def unmoved_share(self) -> float:
        return 1.0 - self.moved / self.numbers if self.numbers else 0.0


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures one decision uses, each as measured or configured."""

    rate: float  # R, requests/s
    speed: float  # numbers/s one order moves (observed; DEFAULT_SPEED before any)
    timeout: float  # --order-timeout, seconds
    history: History


@dataclass(frozen=True, slots=True)
class Decision:
    """The rule applied to one set of leftovers: re-order them, or PATCH them."""

    numbers: int
    orders: int  # orders one more round would post
    round_seconds: float
    patch_seconds: float  # n / R
    left_seconds: float  # f * n / R: the PATCHes a round would still leave
    reorder: bool

    def describe(self) -> str:
        verdict = "re-order" if self.reorder else "PATCH"
        return (f"{verdict}: numbers={self.numbers} orders={self.orders} "
                f"round={self.round_seconds:.1f}s+left={self.left_seconds:.1f}s "
                f"patch={self.patch_seconds:.1f}s")


def decide(groups: Sequence[int], chunk: int, figures: Figures) -> Decision:
    """Apply the rule to leftovers in groups (one per target profile and generation: an
    order takes one group's numbers), cut into orders of ``chunk``."""
    counts = [count for count in groups if count > 0]
    n = sum(counts)
    sizes = [min(chunk, count - start) for count in counts for start in range(0, count, chunk)]
    rate = max(MIN_RATE, figures.rate)
    k = len(sizes)
    requests = k * 2 + sum(math.ceil(size / READ_BATCH) for size in sizes)  # POST + poll + reads
    stuck = 1.0 - (1.0 - figures.history.stuck_share) ** k if k else 0.0
    settle = POLL_WAIT + max(sizes, default=0) / max(figures.speed, 1e-9)
    wait = stuck * figures.timeout + (1.0 - stuck) * min(settle, figures.timeout)
    round_seconds = wait + requests / rate
    patch_seconds = n / rate
    left_seconds = figures.history.unmoved_share * n / rate
    return Decision(n, k, round_seconds, patch_seconds, left_seconds,
                    n > 0 and round_seconds + left_seconds < patch_seconds)

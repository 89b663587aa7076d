"""The run's story: a bounded time series of what a job's runs did, kept in its journal.

While a job runs, ``Recorder`` samples once a second what the client and the limiter counted
(requests, answers by class, 429s, pool-wide holds, transient faults), what the write phase
finished (rows done, failed), the bulk orders open and the limit the limiter learned, and
adds it to the current bucket of the journal's ``series`` table. Buckets start one second
wide; when a job has more than ``MAX_POINTS`` of them, every pair is merged into one twice as
wide (``coarsen``), so a run of hours keeps a few thousand points at most, coarser the longer
it ran. A resumed job appends to the same series at the width it had reached.

Counts are what happened in a bucket; gauges (orders open, the limit) are as they were at
its end. The HTML report (``htmlreport.py``) and ``status --watch`` read it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import anyio

from bulkops.errors import BulkOpsError
from bulkops.journal.records import SERIES_COUNTS, SeriesPoint
from bulkops.journal.store import Journal
from bulkops.progress import Tracker
from bulkops.telnyx.client import ClientStats, TelnyxClient

log = logging.getLogger("bulkops")

MAX_POINTS = 2000  # per job; then pairs of buckets are merged (the width doubles)
SAMPLE_EVERY = 1.0  # seconds between samples while a job runs


def _classes(stats: ClientStats) -> tuple[int, int, int]:
    """Answers so far by class: 2xx, 4xx (429 included), 5xx."""
    by = [0, 0, 0]
    for status, n in stats.responses.items():
        if 200 <= status < 300:
            by[0] += n
        elif 400 <= status < 500:
            by[1] += n
        elif status >= 500:
            by[2] += n
    return by[0], by[1], by[2]


def coarsen(points: Sequence[SeriesPoint], width: int) -> list[SeriesPoint]:
    """``points`` merged into buckets of ``width`` seconds (a multiple of theirs): counts
    added, gauges those of the latest point of each bucket."""
    merged: dict[int, SeriesPoint] = {}
    for p in sorted(points, key=lambda p: p.t):
        t = p.t - p.t % width
        if (into := merged.get(t)) is None:
            merged[t] = replace(p, t=t, width=width)
            continue
        sums = {c: getattr(into, c) + getattr(p, c) for c in SERIES_COUNTS}
        merged[t] = replace(into, **sums, orders_open=p.orders_open, rate_limit=p.rate_limit)
    return list(merged.values())


class Recorder:
    """Samples one job's run into its journal's series (see the module docstring)."""

    def __init__(self, journal: Journal, job_id: int, client: TelnyxClient, *,
                 clock: Callable[[], float] = time.time, max_points: int = MAX_POINTS) -> None:
        self.journal = journal
        self.job_id = job_id
        self.client = client
        self.clock = clock
        self.max_points = max_points
        self.width = 1
        self.points = 0
        self._last_t: int | None = None
        self._stats = client.stats  # this run's baseline: the client counts from its start
        self._tracker: Tracker | None = None
        self._rows = (0, 0)  # the tracker's done, failed at the last sample

    async def start(self) -> None:
        """Continue the job's series where an earlier run left it (its width, its count)."""
        points = await self.journal.series(self.job_id)
        if points:
            self.width = max(p.width for p in points)
            self.points = len(points)
            self._last_t = points[-1].t

    def follow(self, tracker: Tracker) -> None:
        """The phase whose rows finish from now on (its done and failed counters)."""
        self._tracker = tracker
        self._rows = (tracker.done, tracker.failed)

    def _point(self, now: float) -> SeriesPoint:
        stats, before = self.client.stats, self._stats
        self._stats = stats
        (ok, client_err, server_err), (ok0, client0, server0) = _classes(stats), _classes(before)
        done = failed = 0
        orders_open = None
        if (tracker := self._tracker) is not None:
            done, failed = tracker.done - self._rows[0], tracker.failed - self._rows[1]
            self._rows = (tracker.done, tracker.failed)
            orders_open = tracker.orders_open
        t = int(now) - int(now) % self.width
        return SeriesPoint(
            t, self.width, requests=stats.requests - before.requests, answers_2xx=ok - ok0,
            answers_4xx=client_err - client0, answers_5xx=server_err - server0,
            rate_limited=stats.rate_limited - before.rate_limited, holds=stats.holds - before.holds,
            held_seconds=round(stats.held_seconds - before.held_seconds, 3),
            transient=server_err - server0 + stats.transport_errors - before.transport_errors,
            done=done, failed=failed, orders_open=orders_open, rate_limit=self.client.limiter.rate)

    async def sample(self) -> None:
        """Add what happened since the last sample to the current bucket."""
        point = self._point(self.clock())
        await self.journal.add_point(self.job_id, point)
        if point.t != self._last_t:
            self._last_t = point.t
            self.points += 1
        if self.points > self.max_points:
            await self._coarsen()

    async def _coarsen(self) -> None:
        while self.points > self.max_points:
            self.width *= 2
            points = coarsen(await self.journal.series(self.job_id), self.width)
            await self.journal.replace_series(self.job_id, points)
            self.points = len(points)
            self._last_t = points[-1].t if points else None
        log.debug("series coarsened job=%d width=%ds points=%d", self.job_id, self.width,
                  self.points)

    async def run(self) -> None:
        """Sample every ``SAMPLE_EVERY`` seconds until cancelled. A journal that cannot take a
        sample stops the sampling, not the job: the series is the story, not the record."""
        try:
            while True:
                await anyio.sleep(SAMPLE_EVERY)
                await self.sample()
        except BulkOpsError as exc:
            log.warning("warning: the run's series is no longer recorded (%s)", exc)

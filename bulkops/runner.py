"""The worker pool: journaled PATCHes through one shared rate limiter.

Shape (``pump``): ``concurrency`` workers share one small deque; the first idle worker
refills it with the source's next page (PENDING items read from the journal in keyset
pages, or snapshotted pages from the read-back pipeline). A ``Writer`` marks each item in
flight, PATCHes, checks the answer and records the outcome; the journal's flusher commits
outcomes in batches. Memory stays flat whatever the job size.

Only fatal errors (auth, journal, a failure storm: ``storm.py``) stop the pool: a worker that
meets one keeps it in a ``FatalBox`` and cancels the group, so the caller sees the
``BulkOpsError`` itself, never an exception group. A failed row is a recorded outcome.
Ctrl-C / SIGTERM stop taking items, let requests in flight finish for a bounded grace period,
then cancel.
"""

from __future__ import annotations

import logging
import signal
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TypeVar

import anyio
from anyio import CancelScope

from bulkops.errors import ApiError, ApiUnreachable, BulkOpsError
from bulkops.journal.records import Item, ItemUpdate
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops import resources
from bulkops.models import UNASSIGNED, ApiErrorInfo, Resource
from bulkops.progress import Tracker
from bulkops.storm import FailureStorm
from bulkops.telnyx.client import TelnyxClient
from bulkops.telnyx.ratelimit import NotStarted
from bulkops.telnyx.retry import GaveUp

log = logging.getLogger("bulkops")

T = TypeVar("T")

LOGGED_FAILURES = 20  # per run; the report has every one
GRACE = 15.0  # seconds requests in flight get after the first Ctrl-C


class StopSignal:
    """Set once the operator asked to stop; a second signal cancels at once."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.signals = 0
        self.hard: set[CancelScope] = set()  # the pools running now (a pipeline runs two)

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def request(self, reason: str) -> None:
        self.signals += 1
        if self.signals == 1:
            log.info("stop requested (%s): finishing requests in flight; send again to stop now", reason)
            self.event.set()
        elif self.hard:
            log.info("stop requested again (%s): cancelling requests in flight", reason)
            for scope in self.hard:
                scope.cancel()


async def watch_signals(stop: StopSignal) -> None:
    """Turn SIGINT / SIGTERM into a graceful stop (runs until cancelled)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            stop.request(signal.Signals(signum).name)


def gave_up_error(exc: GaveUp) -> ApiError:
    """A request the job cannot go on without failed for good. The entry point (jobs.py)
    adds the base URL and what the operator's next step is for that command."""
    info = exc.info
    if not exc.retryable:  # the API answered, and the answer was final
        return ApiError(f"the API refused a request the job needs ({info.describe()}); no "
                        "further request was sent.", status=info.status, code=info.code,
                        title=info.title, detail=info.detail)
    return ApiUnreachable(
        f"the API could not be reached or kept failing: {exc.attempts} attempt(s), the last "
        f"{info.describe()}; no further request was sent.",
        status=info.status, code=info.code, title=info.title, detail=info.detail,
    )


@dataclass
class FatalBox:
    """The first fatal error any task of a group met; the group is cancelled when it is kept.

    Tasks ``keep`` the error instead of raising it, and the caller ``raise_if_set`` after its
    own cleanup, outside the task group: callers see the ``BulkOpsError`` itself, never an
    exception group.
    """

    error: BulkOpsError | None = None

    def keep(self, error: BulkOpsError | GaveUp, group: CancelScope) -> None:
        if self.error is None:
            self.error = gave_up_error(error) if isinstance(error, GaveUp) else error
        group.cancel()

    def raise_if_set(self) -> None:
        if self.error is not None:
            raise self.error


async def pump(
    source: AsyncGenerator[list[T], None],
    handle: Callable[[T], Awaitable[None]],
    *,
    concurrency: int,
    stop: StopSignal,
    grace: float = GRACE,
) -> FatalBox:
    """Hand the items of ``source``'s batches to ``concurrency`` workers until done or stopped.

    Workers share one small queue that the first idle worker refills with the source's next
    batch, so memory holds at most about one batch, and nothing per item but a deque pop (a
    memory stream per item cost more than the journal). Returns the fatal error, if any; the
    caller raises it after its own cleanup.
    """
    fatal = FatalBox()
    queue: deque[T] = deque()
    refill = anyio.Lock()
    exhausted = False

    async def next_item() -> T | None:
        nonlocal exhausted
        while not queue:
            if exhausted or stop.requested:
                return None
            async with refill:
                if queue or exhausted:
                    continue
                try:
                    queue.extend(await source.__anext__())
                except StopAsyncIteration:
                    exhausted = True
        return queue.popleft()

    async def worker() -> None:
        while not stop.requested:
            item = await next_item()
            if item is None:
                return
            await handle(item)

    async def guarded(group: CancelScope) -> None:
        try:
            await worker()
        except (BulkOpsError, GaveUp) as exc:
            fatal.keep(exc, group)

    async def grace_timer(group: CancelScope) -> None:
        await stop.event.wait()
        await anyio.sleep(grace)
        log.info("stop: grace period of %.0fs is over; cancelling requests in flight", grace)
        group.cancel()

    async with aclosing(source):
        async with anyio.create_task_group() as tg:
            stop.hard.add(tg.cancel_scope)
            timer = anyio.CancelScope()

            async def timed() -> None:
                with timer:
                    await grace_timer(tg.cancel_scope)

            tg.start_soon(timed)
            async with anyio.create_task_group() as workers:
                for _ in range(concurrency):
                    workers.start_soon(guarded, tg.cancel_scope)
            timer.cancel()
        stop.hard.discard(tg.cancel_scope)
    return fatal


def _same_profile(answer: str | None, desired: str) -> bool:
    # Telnyx answers null (or "") for an unassigned number; we journal "" for it.
    return (answer or UNASSIGNED) == desired


def _describe(profile: str) -> str:
    return profile or "unassigned"


class Writer:
    """Processes one item: PATCH (``resources.write``, by kind), read back, record the outcome."""

    def __init__(self, journal: Journal, client: TelnyxClient, tracker: Tracker,
                 storm: FailureStorm, stop: StopSignal) -> None:
        self.journal = journal
        self.client = client
        self.tracker = tracker
        self.storm = storm  # raises FailureStormError: the pool stops (FailureStorm(0): never)
        self.stop = stop  # once set, a row still waiting for its turn goes back to pending
        self.logged_failures = 0  # one Writer per run: the log cap is per run

    async def __call__(self, item: Item) -> None:
        record = self.journal.record
        record(ItemUpdate(item.job_id, item.phone_number, item.state, ItemState.IN_FLIGHT))
        try:
            outcome = await resources.write(self.client, item, self.stop.event)
        except NotStarted:  # stopped while it waited for the limiter: resumed as if never taken
            record(ItemUpdate(item.job_id, item.phone_number, ItemState.IN_FLIGHT, ItemState.PENDING))
            return
        except GaveUp as gave_up:
            record(
                ItemUpdate(
                    item.job_id, item.phone_number, ItemState.IN_FLIGHT, ItemState.FAILED,
                    attempts=item.attempts + gave_up.attempts, http_status=gave_up.info.status,
                    error=gave_up.info,
                )
            )
            self._failed(item, gave_up.info, permanent=not gave_up.retryable)
            return
        answer = outcome.value.profile_id
        attempts = item.attempts + outcome.attempts
        if _same_profile(answer, item.desired):
            record(
                ItemUpdate(item.job_id, item.phone_number, ItemState.IN_FLIGHT, ItemState.DONE,
                           attempts=attempts, http_status=200)
            )
            self.tracker.done += 1
            self.storm.succeeded()
            return
        # A server that answers 200 but did not apply the change must not count as success.
        info = ApiErrorInfo(
            status=200, title="not applied",
            detail=f"the API answered {_describe(answer or '')}, not {_describe(item.desired)}",
        )
        record(
            ItemUpdate(item.job_id, item.phone_number, ItemState.IN_FLIGHT, ItemState.FAILED,
                       attempts=attempts, http_status=200, error=info, note="not applied")
        )
        self._failed(item, info, permanent=True)

    def _failed(self, item: Item, info: ApiErrorInfo, *, permanent: bool) -> None:
        self.tracker.failed += 1
        self.logged_failures += 1
        if self.logged_failures <= LOGGED_FAILURES:
            log.info("row failed line=%d %s=%s: %s", item.line,
                     "number" if item.resource is Resource.PHONE_NUMBER else item.resource.value,
                     item.phone_number, info.describe())
        elif self.logged_failures == LOGGED_FAILURES + 1:
            log.info("row failed: more failures follow; the report lists every one")
        self.storm.failed(item.line, info, permanent=permanent)


async def write_items(
    journal: Journal,
    job_id: int,
    client: TelnyxClient,
    tracker: Tracker,
    *,
    concurrency: int,
    stop: StopSignal,
    storm: FailureStorm,
) -> FatalBox:
    """Send every PENDING item of the job; outcomes land in the journal."""
    return await write_pending(journal, job_id, Writer(journal, client, tracker, storm, stop),
                               concurrency=concurrency, stop=stop)


async def write_pending(journal: Journal, job_id: int, writer: Writer, *, concurrency: int,
                        stop: StopSignal) -> FatalBox:
    """Send every PENDING item of the job with ``writer`` (one per run: see ``Writer``)."""
    return await write_from(journal, journal.iter_items(job_id, {ItemState.PENDING}, batch=500),
                            writer, concurrency=concurrency, stop=stop)


async def write_from(
    journal: Journal,
    source: AsyncGenerator[list[Item], None],
    writer: Callable[[Item], Awaitable[None]],
    *,
    concurrency: int,
    stop: StopSignal,
) -> FatalBox:
    """Write the items ``source`` yields, with the journal's flusher running alongside."""
    flush_failure = FatalBox()

    async def flusher(group: CancelScope) -> None:
        try:
            await journal.run_flusher()
        except BulkOpsError as exc:  # the journal cannot record outcomes: stop sending
            flush_failure.keep(exc, group)

    async with anyio.create_task_group() as tg:
        tg.start_soon(flusher, tg.cancel_scope)
        fatal = await pump(source, writer, concurrency=concurrency, stop=stop)
        tg.cancel_scope.cancel()
    if flush_failure.error is not None:
        return flush_failure
    await journal.flush()
    return fatal

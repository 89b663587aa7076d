"""Server-side bulk orders: the write path that sends a list of numbers per request.

``POST /messaging_numbers_bulk_updates`` takes up to ``--bulk-size`` numbers for one target
profile and answers an ``order_id``; ``GET .../{order_id}`` shows its ``success`` / ``pending``
/ ``failed`` lists. An order promises little (API-NOTES): no reasons, no status, and its
``success`` list is not proof. So, for every order:

1. it is journaled SUBMITTING, with its numbers (PENDING -> ORDERED), before the POST, and its
   ``order_id`` is journaled when the answer comes (OPEN);
2. it is polled through the shared limiter (first when its size and the order speed seen so
   far say it is done; backing off to 10 s while it does not move) until nothing is pending,
   or until ``--order-timeout`` from its POST;
3. its numbers are then read back (``GET /phone_numbers/messaging``, 250 per request): those on
   the desired profile are DONE (``via`` = the order id); the others go back to PENDING.
   Those a re-order listed failed (they failed in two orders) get one PATCH each at once,
   which applies or gives Telnyx's reason for the report. The rest (listed failed by a first
   order, or pending at the timeout) are healed: each round, ``healing.decide`` puts them
   into re-orders while one more round costs less than PATCHing them (docs/orders.md).

A crash leaves orders SUBMITTING (maybe posted, id unknown: read back, then LOST) or OPEN
(polled again, never posted again). No number is PATCHed while an order holding it is open,
as Telnyx warns a pending order can overwrite a change made meanwhile: the pipeline PATCHes
a settled re-order's leftovers itself once that order is over, while other orders are still
open; the caller PATCHes whatever is still PENDING once every order is over (leftovers a
round would not pay for, and numbers of refused or lost orders when orders became
unavailable).

Bounds: at most MAX_OPEN_ORDERS orders are open at once, each with at most one request in
flight (its POST, a poll or a read-back); the PATCHes for every order's leftovers share one
``CapacityLimiter(--concurrency)`` and one ``Writer`` (its failure storm and its log cap are
the run's). So requests in flight never exceed --concurrency plus the open orders. Ctrl-C
works as in ``runner.pump``: no new order is posted, polls stop (open orders stay OPEN for the
next run), what is in flight gets a grace period, a second Ctrl-C cancels at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from bulkops.config import RunSettings
from bulkops.errors import BulkOpsError
from bulkops.healing import DEFAULT_SPEED, Decision, Figures, History, decide
from bulkops.journal.records import Item, OrderRecord
from bulkops.journal.states import ItemState, OrderState
from bulkops.journal.store import Journal
from bulkops.models import ApiErrorInfo
from bulkops.progress import Tracker
from bulkops.runner import GRACE, FatalBox, StopSignal, Writer, write_from
from bulkops.snapshot import SNAPSHOT_BATCH, read_states
from bulkops.storm import FailureStorm
from bulkops.telnyx.client import OrdersUnavailable, TelnyxClient
from bulkops.telnyx.retry import GaveUp

log = logging.getLogger("bulkops")

POLL_FIRST = 1.0  # seconds before an order's first poll, until an order's speed is seen
POLL_MIN = 0.5  # never sooner after the last poll
POLL_MAX = 10.0  # the poll interval backs off to this
POLL_BACKOFF = 1.5  # when a poll saw no progress (a stuck or queued order)
POLL_MARGIN = 1.15  # polls aim this much after the time the order's speed says it is done
MAX_GENERATION = 6  # numbers still pending after this many re-orders go to PATCH
# Telnyx's other bulk number API allows 20 pending jobs per account (API-NOTES).
MAX_OPEN_ORDERS = 20
REORDER_SPLIT = 4
VIA_UNKNOWN_ORDER = "order (id unknown)"  # report ``via`` of a number a lost order applied
LOST_POSTS = 3  # POSTs without a usable answer before the job turns to PATCH
_UNKNOWN = ("(not polled yet)",)  # pending list of an order whose first poll failed
Rule = Callable[[Sequence[int], int, Figures], Decision]
_TOO_BIG = ("at most", "too many", "too large", "too big", "maximum", "exceed", "split", "limit")


def _answered_unreadable(info: ApiErrorInfo) -> bool:
    """A 2xx whose body could not be read: the server took the order, id unknown."""
    return info.status is not None and 200 <= info.status < 300


def _too_big(info: ApiErrorInfo) -> bool:
    """A 4xx that says the order holds too many numbers (then the chunk is halved)."""
    if info.status == 413:
        return True
    text = " ".join(filter(None, (info.title, info.detail))).lower()
    return info.status in (400, 422) and any(word in text for word in _TOO_BIG)


class OrderPipeline:
    """Orders for the PENDING items of one job, after its snapshot; leftovers stay PENDING."""

    def __init__(self, journal: Journal, job_id: int, client: TelnyxClient,
                 settings: RunSettings, tracker: Tracker, stop: StopSignal,
                 storm: FailureStorm, *, submit: bool = True, rule: Rule = decide) -> None:
        self.journal = journal
        self.job_id = job_id
        self.client = client
        self.tracker = tracker
        self.stop = stop
        self.size = settings.bulk_size
        self.concurrency = settings.concurrency
        self.timeout = settings.order_timeout
        self.submit_new = submit  # False (--mode patch): only finish orders a crash left open
        self.rule = rule  # re-order or PATCH what orders did not move (healing.decide)
        self.unavailable = False  # endpoint missing or refused: the rest goes by PATCH
        self.lost_posts = 0
        self.posted = 0  # orders the server answered with an id
        self.sent = 0  # POSTs sent, answered or not
        self.fatal = FatalBox()
        self.slots = anyio.Semaphore(MAX_OPEN_ORDERS)
        self.writer = Writer(journal, client, tracker, storm, stop)  # the run's one Writer
        self.patching = anyio.CapacityLimiter(settings.concurrency)  # every order's leftovers
        self.halted = False
        self.speed: float | None = None  # numbers/s one order moves, as polls saw it
        self.answered: dict[int, float] = {}  # order ref -> when its POST was answered
        self.learned = anyio.Event()  # set once a poll has shown an order's speed
        self.started = time.monotonic()
        self.requests_before = client.stats.requests  # the snapshot's reads came before
        tracker.orders_open = 0

    async def run(self) -> FatalBox:
        """Recover, then rounds of (follow open orders, post new ones) until no order is left.

        The whole phase runs in one scope a second Ctrl-C cancels, and that the first cancels
        ``GRACE`` seconds later (as ``runner.pump``)."""
        async with anyio.create_task_group() as phase:
            self.stop.hard.add(phase.cancel_scope)
            timer = anyio.CancelScope()
            phase.start_soon(self._grace_timer, timer, phase.cancel_scope)
            try:
                await self._guard(phase.cancel_scope, self._rounds)
            finally:
                timer.cancel()
                self.stop.hard.discard(phase.cancel_scope)
        return self.fatal

    async def _grace_timer(self, timer: anyio.CancelScope, phase: anyio.CancelScope) -> None:
        with timer:
            await self.stop.event.wait()
            await anyio.sleep(GRACE)
            log.info("stop: grace period of %.0fs is over; cancelling requests in flight", GRACE)
            phase.cancel()

    async def _rounds(self) -> None:
        for order in await self.journal.orders(self.job_id, {OrderState.SUBMITTING}):
            if self.stop.requested:
                return  # it stays SUBMITTING: the next run reads it back
            log.info("resume: order %d (%d numbers) may have been posted without its id "
                     "being saved; reading its numbers back before anything is sent again",
                     order.id, order.numbers)
            await self._close(order, OrderState.LOST)
        while not self.stop.requested and self.fatal.error is None:
            followed, sent = 0, self.sent
            async with anyio.create_task_group() as tg:
                for order in await self.journal.orders(self.job_id, {OrderState.OPEN}):
                    await self.slots.acquire()
                    self._opened()
                    tg.start_soon(self._guard, tg.cancel_scope, self._follow, order, None)
                    followed += 1
                if self.submit_new and not self.unavailable:
                    heal = await self._heal()
                    await self._guard(tg.cancel_scope, self._submit_all, tg, heal)
            # A round whose POSTs all went unanswered goes on: their numbers are orderable
            # again, until LOST_POSTS of them turn the job to PATCH.
            if not (followed or self.sent - sent) or self.unavailable:
                break

    async def _guard(self, group: anyio.CancelScope, fn: Callable[..., Awaitable[Any]],
                     *args: Any) -> None:
        try:
            await fn(*args)
        except (BulkOpsError, GaveUp) as exc:
            self.fatal.keep(exc, group)

    def _opened(self) -> None:
        self.tracker.orders_open = (self.tracker.orders_open or 0) + 1

    def _closed(self) -> None:
        self.tracker.orders_open = max(0, (self.tracker.orders_open or 0) - 1)
        self.slots.release()

    # --- posting ------------------------------------------------------------------------------

    async def _heal(self) -> bool:
        """Whether this round re-orders the numbers orders did not move (healing.decide)."""
        groups = await self.journal.leftovers(self.job_id, MAX_GENERATION)
        if not groups:
            return False
        history = History(*await self.journal.order_history(self.job_id))
        figures = Figures(self._rate(), self.speed or DEFAULT_SPEED, self.timeout, history)
        decision = self.rule([count for *_, count in groups], self._chunk(1), figures)
        log.info("orders left numbers unmoved; %s (R=%.1f/s, order speed %.0f/s%s, stuck "
                 "%.0f%%, unmoved %.1f%%, timeout %gs)", decision.describe(), figures.rate,
                 figures.speed, "" if self.speed else " assumed", 100 * history.stuck_share,
                 100 * history.unmoved_share, self.timeout)
        return decision.reorder

    def _rate(self) -> float:
        """R: the limiter's learned rate, else the rate the requests went at so far."""
        if (rate := self.client.rate) is not None:
            return rate
        return ((self.client.stats.requests - self.requests_before)
                / max(1.0, time.monotonic() - self.started))

    async def _submit_all(self, tg: anyio.abc.TaskGroup, heal: bool = False) -> None:
        """Group what orders may take by (target, generation) and post chunks of --bulk-size."""
        buckets: dict[tuple[str, int], list[str]] = {}
        async for page in self.journal.iter_orderable(self.job_id, heal=heal,
                                                      max_generation=MAX_GENERATION):
            for number, desired, generation in page:
                bucket = buckets.setdefault((desired, generation), [])
                bucket.append(number)
                while len(bucket) >= (size := self._chunk(generation)):
                    if not self._can_post():
                        return
                    chunk, bucket[:] = bucket[:size], bucket[size:]
                    await self._submit(tg, desired, generation, chunk)
        for (desired, generation), bucket in buckets.items():
            while bucket:
                if not self._can_post():
                    return
                size = self._chunk(generation)
                chunk, bucket[:] = bucket[:size], bucket[size:]
                await self._submit(tg, desired, generation, chunk)

    def _chunk(self, generation: int) -> int:
        """Re-orders (of numbers an order did not move) are cut 4 times smaller: one that gets
        stuck again then holds fewer numbers back, at the cost of a few more POSTs."""
        return self.size if generation == 0 else max(1, self.size // REORDER_SPLIT)

    def _can_post(self) -> bool:
        return not (self.stop.requested or self.unavailable or self.fatal.error is not None)

    async def _submit(self, tg: anyio.abc.TaskGroup, desired: str, generation: int,
                      numbers: Sequence[str]) -> None:
        await self.slots.acquire()
        if not self._can_post():  # Ctrl-C (or a fatal error) while waiting for a slot
            self.slots.release()
            return
        self._opened()
        order = await self.journal.open_order(self.job_id, desired, numbers, generation)
        posted_at = time.time()  # the timeout runs from before the POST: never too late
        self.sent += 1
        try:
            answer = (await self.client.create_order(desired, numbers)).value
        except OrdersUnavailable as refused:
            await self.journal.close_order(self.job_id, order.id, OrderState.REFUSED, (), None)
            self._closed()
            if not self.unavailable:
                log.info("bulk orders unavailable (%s); the whole job goes by PATCH",
                         refused.info.describe())
            self.unavailable = True
            return
        except GaveUp as gave_up:
            await self._refused(tg, order, numbers, gave_up)
            return
        self.answered[order.id] = time.time()
        await self.journal.order_posted(order.id, answer.order_id, posted_at)
        self.posted += 1
        log.info("order posted order_id=%s numbers=%d target=%s", answer.order_id, len(numbers),
                 desired or "unassigned")
        posted = OrderRecord(order.id, self.job_id, desired, answer.order_id, OrderState.OPEN,
                             generation, len(numbers), posted_at)
        tg.start_soon(self._guard, tg.cancel_scope, self._follow, posted, answer.pending)

    async def _refused(self, tg: anyio.abc.TaskGroup, order: OrderRecord,
                       numbers: Sequence[str], gave_up: GaveUp) -> None:
        info = gave_up.info
        # No answer (client.create_order retries a POST only when it surely never arrived),
        # or a 2xx whose body is unreadable: either way the order may exist.
        if gave_up.retryable or _answered_unreadable(info):
            self.lost_posts += 1
            log.info("order %d got no usable answer (%s); reading its numbers back", order.id,
                     info.describe())
            await self._close(order, OrderState.LOST)
            self._closed()
            if self.lost_posts >= LOST_POSTS:
                log.info("bulk orders kept failing; the rest of the job goes by PATCH")
                self.unavailable = True
            return
        await self.journal.close_order(self.job_id, order.id, OrderState.REFUSED, (), None)
        self._closed()
        if _too_big(info) and len(numbers) > 1:
            self.size = max(1, len(numbers) // 2)
            log.info("order too big (%s); --bulk-size is now %d", info.describe(), self.size)
            for start in range(0, len(numbers), self.size):
                if not self._can_post():
                    return
                await self._submit(tg, order.profile_id, order.generation,
                                   numbers[start:start + self.size])
            return
        # Refused for another reason: per-number PATCHes give each number's own answer.
        log.info("bulk order refused (%s); the rest of the job goes by PATCH", info.describe())
        self.unavailable = True

    # --- following ------------------------------------------------------------------------------

    async def _follow(self, order: OrderRecord, pending: Sequence[str] | None) -> None:
        """Poll until nothing is pending or the order times out; read it back. What a re-order
        listed failed is PATCHed at once (it failed in two orders); the rest it left waits
        for the next round, which re-orders it or leaves it to PATCH (``_heal``). Those
        numbers are held by no open order any more, so the PATCHes run while other orders
        are still open (the order's slot is free by then)."""
        try:
            ended = await self._poll(order, pending)
        finally:
            self._closed()
        if ended is OrderState.SETTLED and order.generation:
            await self._patch_left(order)

    async def _patch_left(self, order: OrderRecord) -> None:
        if self.stop.requested:
            return
        source = self.journal.iter_order_items(order.job_id, order.id, ItemState.PENDING)
        (await write_from(self.journal, source, self._patch, concurrency=self.concurrency,
                          stop=self.stop)).raise_if_set()

    async def _patch(self, item: Item) -> None:
        async with self.patching:  # one bound for all orders' pools: --concurrency in flight
            if self.halted:  # another order's PATCHes met a fatal error (a storm): send no more
                return
            try:
                await self.writer(item)
            except BaseException:
                self.halted = True
                raise

    async def _poll(self, order: OrderRecord, pending: Sequence[str] | None) -> OrderState | None:
        assert order.order_id is not None and order.posted_at is not None
        interval = POLL_FIRST
        wait = self._due(order.numbers, POLL_FIRST)  # the first poll: when it should be done
        first = True
        while True:
            if pending is not None and not pending:
                await self._close(order, OrderState.SETTLED)
                return OrderState.SETTLED
            left = order.posted_at + self.timeout - time.time()
            if left <= 0 and pending is not None:
                log.info("order timed out order_id=%s pending=%s after %.0fs; reading its "
                         "numbers back", order.order_id,
                         "unknown" if pending is _UNKNOWN else len(pending), self.timeout)
                await self._close(order, OrderState.TIMED_OUT)
                return OrderState.TIMED_OUT
            if pending is not None:  # the first poll of a resumed order goes out at once
                learning = first and self.speed is None
                await self._nap(max(0.0, min(wait, left)), learning)
                if learning and self.speed is not None:
                    # Another order's poll showed the speed meanwhile: poll this one when that
                    # speed says it is done, not at the blind first guess.
                    answered = self.answered.get(order.id, order.posted_at)
                    due = answered + self._due(order.numbers, POLL_FIRST) - time.time()
                    left = order.posted_at + self.timeout - time.time()
                    await self._nap(max(0.0, min(due, left)), False)
                if self.stop.requested:
                    return None  # stays OPEN in the journal: the next run polls it again
            first = False
            before = None if pending is None or pending is _UNKNOWN else len(pending)
            try:
                pending = (await self.client.get_order(order.order_id)).value.pending
                moved = self._progress(order, before, len(pending))
                # Moving: poll when its speed says it is done; not moving (stuck or queued):
                # back off, from the first interval again once it has moved.
                interval = POLL_FIRST if moved else min(POLL_MAX, interval * POLL_BACKOFF)
                wait = self._due(len(pending), POLL_MIN) if moved else interval
            except OrdersUnavailable as refused:
                self._lost(order, refused.info)
                await self._close(order, OrderState.LOST)
                return OrderState.LOST
            except GaveUp as gave_up:
                if gave_up.retryable:
                    pending = pending if pending is not None else _UNKNOWN
                    interval = min(POLL_MAX, interval * POLL_BACKOFF)
                    wait = interval
                    continue  # the server is struggling: keep polling until the timeout
                self._lost(order, gave_up.info)
                await self._close(order, OrderState.LOST)
                return OrderState.LOST

    async def _nap(self, seconds: float, learning: bool) -> None:
        """Sleep ``seconds``, or less: until Ctrl-C, or (``learning``) until a poll shows an
        order's speed."""
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                async def wake(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()
                tg.start_soon(wake, self.stop.event)
                if learning:
                    tg.start_soon(wake, self.learned)

    def _due(self, pending: int, floor: float) -> float:
        """Seconds until ``pending`` numbers should be done at the speed orders showed."""
        if self.speed is None:
            return floor
        return min(POLL_MAX, max(floor, POLL_MARGIN * pending / self.speed))

    def _progress(self, order: OrderRecord, before: int | None, pending: int) -> bool:
        """Learn an order's speed from a poll; whether it moved since the last one."""
        moved = order.numbers - pending
        # From the POST's answer (not its journaling: the limiter may hold a POST a while);
        # for an order a crash left open and still moving, from its journaled POST time
        # (earlier: a lower speed, so later polls; one long done says nothing). Moved by
        # now: a lower bound of the order's speed.
        since = self.answered.get(order.id, order.posted_at if pending else None)
        if moved > 0 and since is not None and (elapsed := time.time() - since) > 0:
            self.speed = max(self.speed or 0.0, moved / elapsed)
            self.learned.set()
        return before is None or pending < before

    def _lost(self, order: OrderRecord, info: ApiErrorInfo) -> None:
        log.info("order %s cannot be polled (%s); reading its numbers back", order.order_id,
                 info.describe())
        self.lost_posts += 1
        if self.lost_posts >= LOST_POSTS:  # a server that forgets orders: stop re-ordering
            log.info("bulk orders kept getting lost; the rest of the job goes by PATCH")
            self.unavailable = True

    async def _close(self, order: OrderRecord, to: OrderState) -> None:
        """Read the order's numbers back and end it: applied ones DONE, the others PENDING."""
        numbers = await self.journal.order_numbers(order.id)
        applied: list[str] = []
        for start in range(0, len(numbers), SNAPSHOT_BATCH):
            batch = numbers[start:start + SNAPSHOT_BATCH]
            entries = await read_states(self.client, batch)
            applied.extend(e.phone_number for e in entries if e.current == order.profile_id)
        via = order.order_id or VIA_UNKNOWN_ORDER  # LOST before its id was saved
        done = await self.journal.close_order(self.job_id, order.id, to, applied, via)
        self.tracker.done += done
        log.info("order %s order_id=%s numbers=%d applied=%d not_applied=%d", to.value,
                 order.order_id or "unknown", len(numbers), done, len(numbers) - done)

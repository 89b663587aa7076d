"""The snapshot: the current profile of every pending item, read before it is written.

Short codes are read one ``GET /short_codes/{id}`` each (``resources.read_short_codes``).

Numbers are read in batches of 250 with ``GET /phone_numbers/messaging?filter[phone_number]=
a,b,...`` (one request per 250 numbers, not one per number). The journal then knows each
number's prior profile, rows already in place are skipped without a PATCH, and rows whose
write landed before an interruption are confirmed done by read-back instead of being sent
again. With nobody to approve a plan, ``snapshot_and_write`` reads and writes as one pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio

from bulkops import resources
from bulkops.journal.records import Item, SnapshotEntry
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops.models import Resource
from bulkops.progress import Tracker
from bulkops.runner import FatalBox, StopSignal, Writer, pump, write_from
from bulkops.storm import FailureStorm
from bulkops.telnyx.client import TelnyxClient
from bulkops.telnyx.retry import GaveUp

log = logging.getLogger("bulkops")

SNAPSHOT_BATCH = 250  # the API's page[size] maximum
SNAPSHOT_CONCURRENCY = 8
SHOWN_UNKNOWN = 20  # ledger lines for numbers the API does not know, per snapshot


class _Unknown:
    """The ledger line of each row the snapshot fails because the API does not know its
    number (journal.sql SNAPSHOT_SQL), the first ``SHOWN_UNKNOWN`` of them."""

    def __init__(self) -> None:
        self.seen = 0

    def log(self, page: list[Item], entries: list[SnapshotEntry]) -> None:
        for item, entry in zip(page, entries):
            if entry.current is not None or item.expected is not None:
                continue  # a rollback's number gone since is left alone, not failed
            self.seen += 1
            if self.seen <= SHOWN_UNKNOWN:
                log.info("row failed line=%d %s=%s: not on this account (read back); no "
                         "request was sent", item.line,
                         "number" if item.resource is Resource.PHONE_NUMBER else item.resource.value,
                         item.phone_number)
            elif self.seen == SHOWN_UNKNOWN + 1:
                log.info("more rows not on this account: the report lists them all")


async def item_batches(journal: Journal, job_id: int, state: ItemState = ItemState.PENDING,
                       ) -> AsyncGenerator[list[list[Item]], None]:
    """Pages of one read-back request each, for ``pump`` (one page is one work item)."""
    async with aclosing(journal.iter_items(job_id, {state}, batch=SNAPSHOT_BATCH)) as pages:
        async for page in pages:
            yield [page]


async def unread_batches(journal: Journal, job_id: int, fresh_after: str,
                         ) -> AsyncGenerator[list[list[Item]], None]:
    """Like ``item_batches``, without the rows a run of this job read since ``fresh_after``
    and never sent (a resume after a crash a moment ago): their state is known already, and
    reading 100,000 numbers again costs 400 requests. Rows that may have been sent (attempts,
    or reset from in flight, which clears ``on_account``) and rows never read are read."""
    batch: list[Item] = []
    async with aclosing(journal.iter_items(job_id, {ItemState.PENDING},
                                           batch=SNAPSHOT_BATCH)) as pages:
        async for page in pages:
            for item in page:
                if (item.prior is not None and item.on_account is not None
                        and item.attempts == 0 and item.updated_at >= fresh_after):
                    continue
                batch.append(item)
                if len(batch) == SNAPSHOT_BATCH:
                    yield [batch]
                    batch = []
    if batch:
        yield [batch]


async def read_states(client: TelnyxClient, numbers: list[str]) -> list[SnapshotEntry]:
    """The current profile of each number (None: not on the account), 250 per request."""
    try:
        found = (await client.get_numbers(numbers)).value
    except GaveUp as exc:
        if exc.retryable:
            raise
        # A server that refuses the comma-separated filter: read the batch one by one.
        log.info("snapshot: the list filter was refused (%s); reading %d numbers one by one",
                 exc.info.describe(), len(numbers))
        found = {}
        for number in numbers:
            state = await client.get_number(number)
            if state is not None:
                found[number] = state
    return [SnapshotEntry(n, found[n].profile_or_unassigned if n in found else None) for n in numbers]


async def read_items(client: TelnyxClient, page: list[Item]) -> list[SnapshotEntry]:
    """The current value of each item of a page, by resource kind (``resources``)."""
    numbers = [item.phone_number for item in page if item.resource is Resource.PHONE_NUMBER]
    if len(numbers) == len(page):
        return await read_states(client, numbers)
    found = {e.phone_number: e for e in await read_states(client, numbers)} if numbers else {}
    found.update((e.phone_number, e) for e in await resources.read_short_codes(
        client, [item for item in page if item.resource is Resource.SHORT_CODE]))
    return [found[item.phone_number] for item in page]


async def take_snapshot(
    journal: Journal,
    job_id: int,
    client: TelnyxClient,
    *,
    stop: StopSignal,
    force: bool = False,
    fresh_after: str | None = None,
) -> FatalBox:
    """Read the current profile of every PENDING item and record it in the journal
    (``fresh_after``: but those read since then and never sent, ``unread_batches``)."""

    unknown = _Unknown()

    async def read(page: list[Item]) -> None:
        entries = await read_items(client, page)
        await journal.apply_snapshot(job_id, entries, force=force)
        unknown.log(page, entries)

    source = item_batches(journal, job_id) if fresh_after is None or force else \
        unread_batches(journal, job_id, fresh_after)
    return await pump(source, read, concurrency=SNAPSHOT_CONCURRENCY, stop=stop)


async def snapshot_and_write(
    journal: Journal,
    job_id: int,
    client: TelnyxClient,
    tracker: Tracker,
    *,
    concurrency: int,
    stop: StopSignal,
    storm: FailureStorm,
    force: bool = False,
) -> FatalBox:
    """Snapshot and write as one pipeline: each batch of 250 is read back, then written.

    Used when nobody has to approve a plan first (--yes, cron): the server answers the
    next batches' reads while the workers write the first ones, instead of every read
    waiting for the last one. Each row is still read back before it is written.
    """
    send, receive = anyio.create_memory_object_stream[list[Item]](SNAPSHOT_CONCURRENCY * 2)

    unknown = _Unknown()

    async def read(page: list[Item]) -> None:
        numbers = [item.phone_number for item in page]
        entries = await read_items(client, page)
        await journal.apply_snapshot(job_id, entries, force=force)
        unknown.log(page, entries)
        pending = await journal.pending_among(job_id, numbers)
        # The page's items as read before the snapshot: it changes no field a write uses.
        still = [item for item in page if item.phone_number in pending]
        tracker.skipped += len(page) - len(still)
        try:
            await send.send(still)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the writers stopped (signal or fatal error): these rows stay pending

    async def snapshots() -> FatalBox:
        async with send:
            return await pump(item_batches(journal, job_id), read, concurrency=SNAPSHOT_CONCURRENCY,
                              stop=stop)

    async def snapshotted() -> AsyncGenerator[list[Item], None]:
        async with receive:
            async for page in receive:
                yield page

    reading = FatalBox()

    async def run_reads(group: anyio.CancelScope) -> None:
        if (error := (await snapshots()).error) is not None:
            reading.keep(error, group)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_reads, tg.cancel_scope)
        writing = await write_from(journal, snapshotted(), Writer(journal, client, tracker, storm, stop),
                                   concurrency=concurrency, stop=stop)
        tg.cancel_scope.cancel()  # writers gone (done, stopped or fatal): no reader may block
    return reading if reading.error is not None else writing



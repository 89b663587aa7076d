"""The snapshot of current state, and the plan it yields.

Before any write, every pending number is read in batches of 250 with
``GET /phone_numbers/messaging?filter[phone_number]=a,b,...`` (one request per
250 numbers, not one per number). The journal then knows each number's prior
profile, rows already in place are skipped without a PATCH, and rows whose
write landed before an interruption are confirmed done by read-back instead of
being sent again.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import anyio

from .client import TelnyxClient
from .errors import InputError
from .journal import Item, Journal, SnapshotEntry
from .models import ItemState
from .progress import Tracker
from .retry import GaveUp
from .runner import FatalBox, StopSignal, Writer, pump, write_from
from .storm import FailureStorm

log = logging.getLogger("bulkops")

SNAPSHOT_BATCH = 250  # the API's page[size] maximum
SNAPSHOT_CONCURRENCY = 8


class Action(str, Enum):
    CHANGE = "will change"
    IN_PLACE = "already in place"
    NOT_ON_ACCOUNT = "not on account"
    DONE = "done"
    FAILED = "failed"
    LEFT_ALONE = "left alone"


@dataclass
class PlanSummary:
    change: int = 0
    in_place: int = 0
    not_on_account: int = 0
    done: int = 0
    failed: int = 0
    left_alone: int = 0

    def add(self, action: Action) -> None:
        name = {
            Action.CHANGE: "change", Action.IN_PLACE: "in_place",
            Action.NOT_ON_ACCOUNT: "not_on_account", Action.DONE: "done",
            Action.FAILED: "failed", Action.LEFT_ALONE: "left_alone",
        }[action]
        setattr(self, name, getattr(self, name) + 1)

    @property
    def writes(self) -> int:
        """Requests the run will send (a number unknown to the snapshot is still tried once)."""
        return self.change + self.not_on_account

    def rows(self) -> list[tuple[str, int]]:
        return [
            (Action.CHANGE.value, self.change),
            (Action.IN_PLACE.value, self.in_place),
            (Action.NOT_ON_ACCOUNT.value, self.not_on_account),
            (Action.LEFT_ALONE.value, self.left_alone),
            (Action.DONE.value, self.done),
            (Action.FAILED.value, self.failed),
        ]


def classify(item: Item) -> Action:
    if item.state is ItemState.PENDING:
        return Action.NOT_ON_ACCOUNT if item.on_account is False else Action.CHANGE
    if item.state is ItemState.SKIPPED:
        return Action.IN_PLACE if (item.note or "").startswith("already") else Action.LEFT_ALONE
    if item.state is ItemState.DONE:
        return Action.DONE
    return Action.FAILED if item.state is ItemState.FAILED else Action.CHANGE


async def item_batches(journal: Journal, job_id: int, state: ItemState = ItemState.PENDING,
                       ) -> AsyncGenerator[list[list[Item]], None]:
    """Pages of one read-back request each, for ``pump`` (one page is one work item)."""
    async with aclosing(journal.iter_items(job_id, {state}, batch=SNAPSHOT_BATCH)) as pages:
        async for page in pages:
            yield [page]


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


async def take_snapshot(
    journal: Journal,
    job_id: int,
    client: TelnyxClient,
    *,
    stop: StopSignal,
    force: bool = False,
) -> FatalBox:
    """Read the current profile of every PENDING item and record it in the journal."""

    async def read(page: list[Item]) -> None:
        numbers = [item.phone_number for item in page]
        await journal.apply_snapshot(job_id, await read_states(client, numbers), force=force)

    return await pump(item_batches(journal, job_id), read, concurrency=SNAPSHOT_CONCURRENCY, stop=stop)


async def snapshot_and_write(
    journal: Journal,
    job_id: int,
    client: TelnyxClient,
    tracker: Tracker,
    *,
    concurrency: int,
    stop: StopSignal,
    force: bool = False,
    storm: FailureStorm | None = None,
) -> FatalBox:
    """Snapshot and write as one pipeline: each batch of 250 is read back, then written.

    Used when nobody has to approve a plan first (--yes, cron): the server answers the
    next batches' reads while the workers write the first ones, instead of every read
    waiting for the last one. Each row is still read back before it is written.
    """
    send, receive = anyio.create_memory_object_stream[list[Item]](SNAPSHOT_CONCURRENCY * 2)

    async def read(page: list[Item]) -> None:
        numbers = [item.phone_number for item in page]
        await journal.apply_snapshot(job_id, await read_states(client, numbers), force=force)
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
        reading.error = (await snapshots()).error
        if reading.error is not None:
            group.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_reads, tg.cancel_scope)
        writing = await write_from(journal, snapshotted(), Writer(journal, client, tracker, storm),
                                   concurrency=concurrency, stop=stop)
        tg.cancel_scope.cancel()  # writers gone (done, stopped or fatal): no reader may block
    return reading if reading.error is not None else writing


async def summarize(journal: Journal, job_id: int) -> PlanSummary:
    summary = PlanSummary()
    async with aclosing(journal.iter_items(job_id, None, batch=5000)) as pages:
        async for page in pages:
            for item in page:
                summary.add(classify(item))
    return summary


PLAN_COLUMNS = ["line", "phone_number", "current_profile_id", "desired_profile_id", "action", "note"]


def open_private(path: Path, what: str = "report", option: str = "--output") -> int:
    """A file readable by its owner only (reports and plans name every number)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InputError(f"cannot write the {what} {path}: {exc.strerror}; choose another "
                         f"{option}") from None
    os.fchmod(fd, 0o600)
    return fd


async def write_plan_csv(journal: Journal, job_id: int, output: Path) -> PlanSummary:
    summary = PlanSummary()
    with os.fdopen(open_private(output, "plan", "--output / --plan-output"), "w", newline="",
                   encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PLAN_COLUMNS)
        async with aclosing(journal.iter_items(job_id, None, batch=5000)) as pages:
            async for page in pages:
                for item in page:
                    action = classify(item)
                    summary.add(action)
                    current = "" if item.on_account is False else (item.prior or "")
                    writer.writerow([item.line, item.phone_number, current, item.desired,
                                     action.value, item.note or ""])
    return summary

"""Each resource kind's requests: how an item is read and written (the change model's plug).

An item (``journal.records.Item``) is one attribute of one resource: ``models.Resource`` says
which. The pipeline (snapshot, write, verify) asks this module, and nothing else, how to read
the current value of a page of items and how to write one; journal, plan, report and rollback
only carry the kind. Phone numbers are read 250 to a request and written by
``PATCH /phone_numbers/{id}/messaging`` (or bulk orders, ``orders.py``); short codes, a
handful per profile, are read by ``GET /short_codes/{id}`` and written by
``PATCH /short_codes/{id}`` through their UUID (``Item.ref``), then read back by the same GET.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import anyio

from bulkops.journal.records import Item, SnapshotEntry
from bulkops.models import NumberState, Resource, ShortCode
from bulkops.telnyx.client import TelnyxClient
from bulkops.telnyx.retry import GaveUp, Outcome

Written = Coroutine[Any, Any, Outcome[NumberState]] | Coroutine[Any, Any, Outcome[ShortCode]]


def write(client: TelnyxClient, item: Item, stop: anyio.Event | None) -> Written:
    """The request that sends one item's desired value; its answer's ``profile_id`` is the
    value read back (None: unassigned). Raises what the client raises (GaveUp, AuthError,
    NotStarted).

    A phone number's is the client's own coroutine, not one awaited in here: it runs a
    million times a job, and every await of a request resumes each frame above it."""
    if item.resource is Resource.SHORT_CODE:
        return _write_short_code(client, item, stop)
    return client.update_profile(item.phone_number, item.desired, stop=stop)


async def _write_short_code(client: TelnyxClient, item: Item,
                            stop: anyio.Event | None) -> Outcome[ShortCode]:
    ref = _ref(item)
    sent = await client.update_short_code(ref, item.desired, stop=stop)
    # Read back by GET (issue 19): what a later reader sees, not only the PATCH's answer. A
    # read that fails (or finds nothing) leaves the PATCH's own answer as the value: a write
    # that landed is never recorded failed because its read-back did not come.
    try:
        after = await client.get_short_code(ref)
    except GaveUp:
        after = None
    return Outcome(after or sent.value, sent.attempts)


async def read_short_codes(client: TelnyxClient, items: list[Item]) -> list[SnapshotEntry]:
    """The current profile of each short-code item ("" unbound; None: not on the account)."""
    entries = []
    for item in items:
        found = await client.get_short_code(_ref(item))
        entries.append(SnapshotEntry(item.phone_number,
                                     None if found is None else found.profile_or_unassigned))
    return entries


def _ref(item: Item) -> str:
    if item.ref is None:  # set at load (or listing) for every short-code item
        raise ValueError(f"short code {item.phone_number} of job {item.job_id} has no id")
    return item.ref

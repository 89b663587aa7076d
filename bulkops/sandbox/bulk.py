"""Server-side bulk orders: ``POST /messaging_numbers_bulk_updates`` and its status route.

An order answers at once with every number ``pending``; a background task then
works through it at ``bulk_speed`` numbers per second, moving each number to
``success`` (applied) or ``failed`` (not on the account, or its target profile
was deleted meanwhile). As on Telnyx, a per-number change made while the order
is pending can be overwritten when the order reaches that number.

Faults (seeded): ``fail_rate`` lists a number as failed without applying it (a
PATCH of it then applies, or answers why not); ``stuck_rate`` accepts an order
and never processes it, so its numbers stay pending for ever.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable

from aiohttp import web

from .params import json_type, read_object
from .problems import dumps, invalid, not_found
from .state import SandboxState
from .stats import SandboxStats
from .validation import profile_target, require


class BulkOrder:
    """Progress of one order (mutable: only its own task advances it)."""

    __slots__ = ("order_id", "profile_id", "numbers", "assign_only", "done", "success", "failed")

    def __init__(self, order_id: str, profile_id: str | None, numbers: tuple[str, ...], assign_only: bool) -> None:
        self.order_id = order_id
        self.profile_id = profile_id  # None = unassign
        self.numbers = numbers
        self.assign_only = assign_only
        self.done = 0  # numbers[:done] are settled
        self.success: list[str] = []
        self.failed: list[str] = []

    @property
    def pending(self) -> tuple[str, ...]:
        return self.numbers[self.done :]

    def as_json(self) -> dict[str, object]:
        """A ``BulkMessagingSettingsUpdatePhoneNumbers``."""
        return {
            "record_type": "messaging_numbers_bulk_update",
            "order_id": self.order_id,
            "success": list(self.success),
            "pending": list(self.pending),
            "failed": list(self.failed),
        }


class BulkOrders:
    """Every order of one sandbox and the tasks processing them."""

    def __init__(
        self,
        state: SandboxState,
        stats: SandboxStats,
        speed: float,
        ids: random.Random,
        writes_enabled: Callable[[], bool],
        *,
        faults: random.Random | None = None,
        fail_rate: float = 0.0,
        stuck_rate: float = 0.0,
    ) -> None:
        self._state = state
        self._stats = stats
        self._speed = speed
        self._ids = ids
        self._writes_enabled = writes_enabled
        self._faults = faults or random.Random(0)
        # Its own stream: which orders get stuck depends on the order sequence alone, not on
        # how the per-number failure draws interleave with it (timing).
        self._stuck = random.Random(self._faults.random())
        self._fail_rate = fail_rate
        self._stuck_rate = stuck_rate
        self._orders: dict[str, BulkOrder] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def create(self, profile_id: str | None, numbers: tuple[str, ...], assign_only: bool) -> BulkOrder:
        order_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        order = BulkOrder(order_id, profile_id, numbers, assign_only)
        self._orders[order_id] = order
        if self._stuck_rate and self._stuck.random() < self._stuck_rate:
            return order  # accepted, never processed: every number stays pending
        task = asyncio.get_running_loop().create_task(self._run(order))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return order

    def get(self, order_id: str) -> BulkOrder | None:
        return self._orders.get(order_id)

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def _run(self, order: BulkOrder) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = max(0.01, min(0.1, 1.0 / self._speed))
        total = len(order.numbers)
        while order.done < total:
            await asyncio.sleep(tick)
            due = min(total, int((loop.time() - start) * self._speed))
            while order.done < due:
                self._settle(order, order.numbers[order.done])
                order.done += 1

    def _settle(self, order: BulkOrder, number: str) -> None:
        target = order.profile_id
        if self._state.get(number) is None or (target is not None and not self._state.has_profile(target)):
            order.failed.append(number)
            return
        if self._fail_rate and self._faults.random() < self._fail_rate:
            order.failed.append(number)  # listed as failed, nothing applied, no reason given
            return
        if self._writes_enabled():
            self._state.assign(number, target, time.time())
            self._stats.record_write(number, bulk=True)
        order.success.append(number)

    async def close(self) -> None:
        """Stop processing (pending numbers stay pending)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _numbers(value: object, bulk_max: int) -> tuple[str, ...]:
    pointer = "/numbers"
    if not isinstance(value, list):
        raise invalid(f"{pointer} must be an array of E.164 numbers, not {json_type(value)}.", pointer=pointer)
    if not value:
        raise invalid(f"{pointer} must list at least one number.", pointer=pointer)
    if len(value) > bulk_max:
        raise invalid(
            f"{pointer} holds {len(value)} numbers; an order takes at most {bulk_max}. Split the list.",
            pointer=pointer,
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"{pointer}/{i} must be a string, not {json_type(item)}.", pointer=f"{pointer}/{i}")
    return tuple(dict.fromkeys(item.strip() for item in value))  # duplicates once, order kept


async def create_order(request: web.Request, state: SandboxState, orders: BulkOrders, bulk_max: int) -> web.Response:
    body = await read_object(request)
    require(body, "messaging_profile_id", "numbers")
    target = profile_target(state, body["messaging_profile_id"])
    numbers = _numbers(body["numbers"], bulk_max)
    assign_only = body.get("assign_only")
    if assign_only is not None and not isinstance(assign_only, bool):
        raise invalid(f"/assign_only must be true or false, not {json_type(assign_only)}.", pointer="/assign_only")
    order = orders.create(target, numbers, bool(assign_only))
    return web.json_response({"data": order.as_json()}, dumps=dumps)


def get_order(order_id: str, orders: BulkOrders) -> web.Response:
    order = orders.get(order_id.lower())
    if order is None:
        raise not_found(
            f"No bulk update order {order_id[:40]!r}; use the order_id that "
            "POST /v2/messaging_numbers_bulk_updates answered.",
            parameter="order_id",
        )
    return web.json_response({"data": order.as_json()}, dumps=dumps)

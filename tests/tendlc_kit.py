"""Helpers of the 10DLC tests: pick sandbox numbers and campaigns by what a test needs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bulkops.sandbox import NumberType, Sandbox
from bulkops.sandbox.tendlc import CampaignRecord

T = TypeVar("T")


def campaign(sandbox: Sandbox, description: str) -> CampaignRecord:
    """The seeded campaign with this description ("Account notifications", "Sweepstakes", ...)."""
    return next(c for c in sandbox.tendlc.campaigns.values() if c.description == description)


def active(sandbox: Sandbox, k: int = 0) -> str:
    """The id of the k-th seeded campaign that takes numbers."""
    return [c.campaign_id for c in sandbox.tendlc.campaigns.values() if c.refusal() is None][k]


def unlinked_long_codes(sandbox: Sandbox, count: int = 1) -> list[str]:
    """Long codes on a profile with no campaign link yet."""
    links = sandbox.tendlc.links()
    found = []
    for number, profile in sandbox.dump().items():
        record = sandbox.state.get(number)
        if profile and record is not None and record.type is NumberType.LONGCODE and number not in links:
            found.append(number)
            if len(found) == count:
                return found
    raise AssertionError(f"the sandbox has fewer than {count} unlinked long codes on a profile")


def linked_number(sandbox: Sandbox) -> str:
    """A number seeded ASSIGNED to a campaign."""
    return next(iter(sandbox.tendlc.links()))


def toll_free_on_profile(sandbox: Sandbox) -> str:
    return next(n for n, p in sandbox.dump().items()
                if p and (r := sandbox.state.get(n)) is not None and r.type is NumberType.TOLLFREE)


def unassigned_long_code(sandbox: Sandbox) -> str:
    return next(n for n, p in sandbox.dump().items()
                if p is None and (r := sandbox.state.get(n)) is not None and r.type is NumberType.LONGCODE)


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = 30.0,
                     every: float = 0.02) -> T:
    """Poll ``probe`` until it returns something other than None, or fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if value is not None:
            return value
        assert loop.time() < deadline, f"nothing came within {within} s"
        await asyncio.sleep(every)

"""Shared helpers of the bulk-order tests: order requests counted at the sandbox, rows to move,
the orders a journal holds, and a job loaded and snapshotted but not sent."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bulkops.config import Secret
from bulkops.errors import Interrupted
from bulkops.jobs import JobRequest, run_job
from bulkops.journal.states import OrderState
from bulkops.journal.store import Journal
from bulkops.models import Kind
from bulkops.plan import PlanSummary
from bulkops.sandbox import Sandbox
from tests.harness import write_assign_csv
from tests.jobhelpers import settings_for

POST_ROUTE = "POST /v2/messaging_numbers_bulk_updates"


def posts(sandbox: Sandbox) -> int:
    return sandbox.stats.count(route=POST_ROUTE)


def mixed_rows(sandbox: Sandbox, count: int, seed: int = 1) -> list[tuple[str, str]]:
    """``count`` numbers, each to a random profile other than its current one."""
    rng = random.Random(seed)
    dump = sandbox.dump()
    numbers = sandbox.numbers()[:count]
    return [(n, rng.choice([p for p in sandbox.profile_ids() if p != dump[n]])) for n in numbers]


async def orders_of(journal: Path) -> list[tuple[str, int, int]]:
    """(state, generation, numbers) of every order the journal holds, of every job, oldest first;
    read through the journal (without its lock), as ``bulkops status`` reads it."""
    async with await Journal.open(journal, lock=False) as reader:
        orders = [order for job in await reader.jobs()
                  for order in await reader.orders(job.id, list(OrderState))]
    return [(o.state.value, o.generation, o.numbers) for o in sorted(orders, key=lambda o: o.id)]


async def loaded_not_sent(sandbox: Sandbox, tmp_path: Path, rows: list[tuple[str, str]]) -> JobRequest:
    """A journal with the job loaded and snapshotted, nothing sent (a declined confirmation)."""
    csv_path = write_assign_csv(tmp_path / "a.csv", rows)
    request = JobRequest(Kind.ASSIGN, csv_path, tmp_path / "a.db", name="a")

    async def decline(summary: PlanSummary) -> bool:
        return False

    with pytest.raises(Interrupted):
        await run_job(request, settings_for(sandbox, assume_yes=False, confirm_threshold=0),
                      Secret(sandbox.api_key), confirm=decline)
    assert sandbox.stats.writes_applied == 0
    return request

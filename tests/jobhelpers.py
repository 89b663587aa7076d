"""Shared helpers for end-to-end tests: CSVs from the sandbox's numbers, runs via the library."""

from __future__ import annotations

import asyncio
import csv
import sqlite3
from contextlib import closing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bulkops.config import RunSettings, Secret
from bulkops.execute import JobResult
from bulkops.jobs import JobRequest, run_job
from bulkops.journal.records import Item
from bulkops.journal.store import Journal
from bulkops.models import Kind
from bulkops.telnyx.retry import RetryPolicy
from bulkops.sandbox import Sandbox

PATCH_ROUTE = "PATCH /v2/phone_numbers/{id}/messaging"


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def settings_for(sandbox: Sandbox, **overrides: Any) -> RunSettings:
    policy = overrides.pop("policy", RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_max=0.2))
    values: dict[str, Any] = {"base_url": sandbox.base_url, "assume_yes": True, "concurrency": 8,
                              "timeout": 5.0, "policy": policy}
    values.update(overrides)
    return RunSettings(**values)


async def run(sandbox: Sandbox, kind: Kind, csv_path: Path, journal: Path, *,
              profile_id: str | None = None, key: str | None = None, **overrides: Any) -> JobResult:
    request = JobRequest(kind, csv_path, journal, name=csv_path.stem, profile_id=profile_id)
    return await run_job(request, settings_for(sandbox, **overrides), Secret(key or sandbox.api_key))


def other_profile(sandbox: Sandbox, current: str | None) -> str:
    return next(p for p in sandbox.profile_ids() if p != current)


def patches(sandbox: Sandbox) -> int:
    """PATCH requests the sandbox received (any status)."""
    return sandbox.stats.count(route=PATCH_ROUTE)


async def journal_items(path: Path, job_id: int = 1) -> dict[str, Item]:
    items: dict[str, Item] = {}
    async with await Journal.open(path, lock=False) as journal:
        async for page in journal.iter_items(job_id):
            items.update((i.phone_number, i) for i in page)
    return items


async def run_started(journal: Path, deadline: float = 30.0, *, table: str = "runs") -> None:
    """Poll (with a deadline) until the run has journaled its start (``table`` "series": its
    first second of writes, by when its signal handlers are in place)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while loop.time() < end:
        if journal.exists():
            try:
                with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
                    if db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]:
                        return
            except sqlite3.Error:
                pass  # the run is still creating it
        await asyncio.sleep(0.05)
    raise AssertionError("the run never started")

"""Shared helpers for the journal tests: journals made the same way, and the only place tests
reach into a Journal's connection or buffer (to stage states no public call makes, and to watch
the statements a flush sends).

The ``journal`` fixture is imported by name into the test modules that use it, so it does not
apply suite-wide the way a conftest fixture would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bulkops.journal.records import Item, ItemUpdate
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops.models import ApiErrorInfo, Kind, NumberRow

P_A = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"
P_B = "5b7a6e2c-0d55-4ad3-9f2a-6c1a3a0f1b22"
P_C = "6c8b7f3d-1e66-4be4-8a3b-7d2b4b1a2c33"
REPO = Path(__file__).resolve().parents[1]
PENDING, IN_FLIGHT, DONE, FAILED, SKIPPED = (ItemState.PENDING, ItemState.IN_FLIGHT,
                                             ItemState.DONE, ItemState.FAILED, ItemState.SKIPPED)


def num(i: int) -> str:
    return f"+1312555{i:04d}"


async def create(path: Path, kind: Kind = Kind.ASSIGN) -> Journal:
    return await Journal.create(path, kind=kind, name="test job", job_file="job.toml",
                                csv_path="/data/in.csv", csv_sha256="ab" * 32,
                                default_profile_id=P_A, settings={"rate": 5.0, "concurrency": 4})


async def loaded(path: Path, n: int, desired: str = P_A) -> Journal:
    journal = await create(path)
    await journal.stage_rows(1, [NumberRow(i + 2, num(i), desired) for i in range(n)])
    assert (await journal.finish_staging(1)).conflict_count == 0
    return journal


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await loaded(tmp_path / "job.db", 10)
    yield j
    await j.close()


async def all_items(journal: Journal, job_id: int = 1) -> dict[str, Item]:
    found: dict[str, Item] = {}
    async for page in journal.iter_items(job_id):
        found.update((item.phone_number, item) for item in page)
    return found


def upd(n: int, frm: ItemState, to: ItemState, *, attempts: int | None = None,
        http_status: int | None = None, error: ApiErrorInfo | None = None,
        note: str | None = None) -> ItemUpdate:
    return ItemUpdate(1, num(n), frm, to, attempts, http_status, error, note)


# --- reaching inside: private attributes are touched here only --------------------------------

def _connection(journal: Journal) -> aiosqlite.Connection:
    conn = journal._conn
    assert conn is not None, "the journal is closed"
    return conn


async def execute_sql(journal: Journal, sql: str,
                      params: Sequence[Any] | Mapping[str, Any] = ()) -> None:
    """Run one statement on the journal's own connection, between its other operations; the
    connection autocommits, so the change is in the file when this returns."""
    async with journal._mutex:
        await _connection(journal).execute(sql, params)


async def query_plan(journal: Journal, sql: str,
                     params: Sequence[Any] | Mapping[str, Any] = ()) -> list[str]:
    """The detail column of ``EXPLAIN QUERY PLAN sql``: how SQLite would find the rows."""
    rows = await _connection(journal).execute_fetchall("EXPLAIN QUERY PLAN " + sql, params)
    return [row[3] for row in rows]


@asynccontextmanager
async def trace_statements(journal: Journal) -> AsyncIterator[list[str]]:
    """Every statement the journal's connection runs inside the block, in order."""
    statements: list[str] = []
    conn = _connection(journal)
    await conn.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        await conn.set_trace_callback(None)  # type: ignore[arg-type]


def buffered(journal: Journal) -> list[ItemUpdate]:
    """The updates recorded but not yet flushed, in the order a flush would write them."""
    return list(journal._buffer)

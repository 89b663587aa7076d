"""The journal's state machine: legal transitions, the update buffer and how a flush writes it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bulkops.errors import JournalError
from bulkops.journal.records import Item, SnapshotEntry
from bulkops.journal.states import TRANSITIONS, ItemState
from bulkops.journal.store import Journal
from bulkops.journal.sql import (
    DONE_SQL, FLUSH_SQL, SNAPSHOT_SQL, _general, flush_statements, pending_among_sql,
)
from bulkops.models import ApiErrorInfo, NumberRow

from tests.journal_kit import (
    DONE, FAILED, IN_FLIGHT, P_A, PENDING, SKIPPED, all_items, execute_sql, journal, loaded, num,
    query_plan, trace_statements, upd,
)
from tests.poll_kit import wait_until


# --- the state machine ----------------------------------------------------------------------

PATH_TO = {PENDING: [], IN_FLIGHT: [(PENDING, IN_FLIGHT)], FAILED: [(PENDING, FAILED)],
           ItemState.ORDERED: [(PENDING, ItemState.ORDERED)]}


async def test_every_legal_transition_is_recorded_and_survives_reopen(tmp_path: Path) -> None:
    legal = [(frm, to) for frm, tos in TRANSITIONS.items() for to in sorted(tos)]
    assert len(legal) == 11
    path = tmp_path / "job.db"
    async with await loaded(path, len(legal)) as j:
        for i, (frm, to) in enumerate(legal):
            for a, b in PATH_TO[frm]:
                j.record(upd(i, a, b))
            j.record(upd(i, frm, to))
    async with await Journal.open(path) as j:
        items = await all_items(j)
    assert [items[num(i)].state for i in range(len(legal))] == [to for _, to in legal]


@pytest.mark.parametrize(("frm", "to"), [(DONE, PENDING), (SKIPPED, IN_FLIGHT),
                                         (PENDING, PENDING), (FAILED, DONE)])
async def test_an_illegal_transition_raises_and_buffers_nothing(
        journal: Journal, frm: ItemState, to: ItemState) -> None:
    with pytest.raises(JournalError, match=f"illegal journal transition {frm.value} -> "
                                           f"{to.value} .* bug"):
        journal.record(upd(1, frm, to))
    assert journal.pending_updates == 0


async def test_flush_writes_the_whole_buffer_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    async with await loaded(path, 300) as j:
        for i in range(300):
            j.record(upd(i, PENDING, IN_FLIGHT))
            j.record(upd(i, IN_FLIGHT, DONE, attempts=1, http_status=200))
        assert j.pending_updates == 300  # each outcome replaced its bare "in flight"
        async with trace_statements(j) as statements:
            await j.flush()
        assert j.pending_updates == 0
    assert [s for s in statements if not s.startswith("UPDATE items")] == ["BEGIN IMMEDIATE",
                                                                          "COMMIT"]
    async with await Journal.open(path) as j:
        assert (await j.counts(1)).get(DONE) == 300
        assert {(i.attempts, i.http_status) for i in (await all_items(j)).values()} == {(1, 200)}


async def test_a_plain_done_ends_the_row_exactly_as_the_general_statement_would(
        journal: Journal) -> None:
    err = ApiErrorInfo(503, "10007", "Unavailable", "try later")
    for n in (1, 2):  # the same history: a retried request with an error and a note
        journal.record(upd(n, PENDING, IN_FLIGHT))
    await journal.flush()
    for n in (1, 2):
        journal.record(upd(n, IN_FLIGHT, PENDING, attempts=2, error=err, note="retrying"))
    await journal.flush()
    done = [upd(n, PENDING, DONE, attempts=3, http_status=200) for n in (1, 2)]
    runs = flush_statements(done[:1], "2026-01-01T00:00:00Z")
    assert [sql for sql, _ in runs] == [DONE_SQL]
    journal.record(done[0])  # the short statement
    await journal.flush()
    # row 2 through the general statement, as before the short one
    await execute_sql(journal, FLUSH_SQL, _general(done[1], "2026-01-01T00:00:00Z"))
    items = await all_items(journal)

    def outcome(item: Item) -> tuple[object, ...]:
        return (item.state, item.attempts, item.http_status, item.error_code, item.error_title,
                item.error_detail, item.note)

    assert outcome(items[num(1)]) == outcome(items[num(2)]) == (
        DONE, 3, 200, None, None, None, "retrying")


@pytest.mark.parametrize("sql, params", [
    (pending_among_sql(3), (1, num(1), num(2), num(3))),
    (SNAPSHOT_SQL, (1, num(1), P_A, False, True, "t", "why")),
    (DONE_SQL, (1, 200, "t", 1, num(1), "pending")),
    (FLUSH_SQL, {"to": "done", "from": "pending", "job": 1, "now": "t", "number": num(1),
                 "attempts": 1, "note": None, "retry": False, "http": 200, "err": False,
                 "code": None, "title": None, "detail": None, "fresh": True}),
], ids=["pending_among", "snapshot", "done", "flush"])
async def test_per_row_statements_find_rows_by_number_never_by_scanning_the_job(
        tmp_path: Path, sql: str, params: object) -> None:
    async with await loaded(tmp_path / "job.db", 50) as journal:
        plan = await query_plan(journal, sql, params)  # type: ignore[arg-type]
    # The snapshot's one subquery (the lost order of a row that landed) is a rowid lookup.
    lookups = {"CORRELATED SCALAR SUBQUERY 1", "CORRELATED SCALAR SUBQUERY 2",
               "SEARCH o USING INTEGER PRIMARY KEY (rowid=?)"}
    assert plan[0] == "SEARCH items USING INDEX sqlite_autoindex_items_1 (job_id=? AND phone_number=?)"
    assert set(plan[1:]) <= lookups, plan


def test_flush_statements_keep_the_order_of_a_rows_updates() -> None:
    updates = [upd(1, PENDING, DONE, attempts=1, http_status=200),
               upd(2, PENDING, IN_FLIGHT), upd(3, PENDING, DONE, attempts=1, http_status=200),
               upd(4, PENDING, DONE, attempts=1, http_status=200)]
    runs = flush_statements(updates, "2026-01-01T00:00:00Z")
    assert [(sql, len(rows)) for sql, rows in runs] == [(DONE_SQL, 1), (FLUSH_SQL, 1), (DONE_SQL, 2)]


async def test_outcome_fields_are_kept_and_the_error_clears_on_success(journal: Journal) -> None:
    err = ApiErrorInfo(503, "10007", "Unavailable", "try later")
    journal.record(upd(1, PENDING, IN_FLIGHT))
    journal.record(upd(1, IN_FLIGHT, PENDING, attempts=3, error=err))
    journal.record(upd(2, PENDING, FAILED, attempts=1, http_status=422, note="bad",
                       error=ApiErrorInfo(422, "10015", "Invalid", "no such profile")))
    await journal.flush()
    items = await all_items(journal)
    one, two = items[num(1)], items[num(2)]
    assert (one.state, one.attempts, one.http_status, one.error_code, one.error_detail) == (
        PENDING, 3, 503, "10007", "try later")
    assert (two.http_status, two.error_code, two.error_title, two.note) == (
        422, "10015", "Invalid", "bad")
    journal.record(upd(1, PENDING, IN_FLIGHT))
    journal.record(upd(1, IN_FLIGHT, DONE, attempts=4, http_status=200))
    await journal.flush()
    one = (await all_items(journal))[num(1)]
    assert (one.state, one.attempts, one.http_status, one.error_code, one.error_title) == (
        DONE, 4, 200, None, None)


async def test_close_flushes_what_was_recorded(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    j = await loaded(path, 3)
    j.record(upd(0, PENDING, DONE, note="rolled"))
    await j.close()
    with pytest.raises(JournalError, match="journal closed"):
        j.record(upd(1, PENDING, DONE))
    async with await Journal.open(path) as j:
        assert (await all_items(j))[num(0)].note == "rolled"


async def test_a_cancelled_flush_loses_nothing_and_leaves_the_journal_usable(
        tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    async with await loaded(path, 50) as j:
        for i in range(50):
            j.record(upd(i, PENDING, IN_FLIGHT))
        task = asyncio.ensure_future(j.flush())
        await asyncio.sleep(0)  # let it begin its transaction, then cancel it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        j.record(upd(0, IN_FLIGHT, DONE))
        assert (await j.counts(1)).get(IN_FLIGHT) == 49
    async with await Journal.open(path) as j:
        counts = await j.counts(1)
    assert (counts.get(IN_FLIGHT), counts.get(DONE)) == (49, 1)


async def test_an_update_that_no_longer_matches_the_journal_is_reported(journal: Journal) -> None:
    await journal.apply_snapshot(1, [SnapshotEntry(num(1), P_A)])  # -> SKIPPED in place
    journal.record(upd(1, PENDING, IN_FLIGHT))
    journal.record(upd(2, PENDING, IN_FLIGHT))
    with pytest.raises(JournalError, match="1 of 2 item updates did not match"):
        await journal.flush()
    items = await all_items(journal)
    assert (items[num(1)].state, items[num(2)].state) == (SKIPPED, IN_FLIGHT)


async def test_run_flusher_flushes_until_cancelled(journal: Journal) -> None:
    flusher = asyncio.ensure_future(journal.run_flusher(interval=0.01))
    journal.record(upd(1, PENDING, DONE))
    await wait_until(lambda: not journal.pending_updates, within=30, what="the flusher to flush")
    flusher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flusher
    async with await Journal.open(journal.path, lock=False) as reader:
        assert (await reader.counts(1)).get(DONE) == 1


async def test_sqlite_errors_become_journal_errors_naming_the_file(journal: Journal) -> None:
    with pytest.raises(JournalError, match=re.escape(f"the journal {journal.path} failed while "
                                                     "staging CSV rows (UNIQUE constraint")) as caught:
        await journal.stage_rows(1, [NumberRow(7, num(1), P_A), NumberRow(7, num(2), P_A)])
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

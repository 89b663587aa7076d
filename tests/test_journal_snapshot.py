"""The journal around a run: the snapshot of prior profiles, rollback jobs, resume and retry."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.errors import JournalError
from bulkops.journal.records import ItemUpdate, SnapshotEntry
from bulkops.journal.sql import NOT_ON_ACCOUNT_NOTE
from bulkops.journal.states import ItemState, JobState
from bulkops.journal.store import Journal
from bulkops.models import ApiErrorInfo, Kind

from tests.journal_kit import (
    DONE, FAILED, IN_FLIGHT, P_A, P_B, P_C, PENDING, SKIPPED, all_items, buffered, journal,
    loaded, num, upd,
)


# --- snapshot -------------------------------------------------------------------------------

async def test_snapshot_records_priors_and_skips_what_is_in_place(journal: Journal) -> None:
    await journal.apply_snapshot(1, [SnapshotEntry(num(1), P_B), SnapshotEntry(num(2), ""),
                                     SnapshotEntry(num(3), P_A), SnapshotEntry(num(4), None)])
    await journal.apply_snapshot(1, [SnapshotEntry(num(1), P_C), SnapshotEntry(num(2), P_C)])
    items = await all_items(journal)
    seen = {n: (items[num(n)].prior, items[num(n)].on_account, items[num(n)].state,
                items[num(n)].note) for n in range(1, 6)}
    assert seen == {
        1: (P_B, True, PENDING, None),  # known prior never overwritten
        2: ("", True, PENDING, None),  # "" = had none, and it stays known
        3: (P_A, True, SKIPPED, "already in place"),
        4: (None, False, ItemState.FAILED, NOT_ON_ACCOUNT_NOTE),  # not on the account: failed
                                                                  # unsent, prior stays unknown
        5: (None, None, PENDING, None),  # not checked
    }


async def test_snapshot_after_interruption_confirms_a_landed_write_as_done(journal: Journal) -> None:
    await journal.apply_snapshot(1, [SnapshotEntry(num(1), P_B), SnapshotEntry(num(2), P_B)])
    # The process died after PATCHing num(1) but before recording it; the resume reads it back.
    await journal.apply_snapshot(1, [SnapshotEntry(num(1), P_A), SnapshotEntry(num(2), P_B)])
    items = await all_items(journal)
    assert (items[num(1)].state, items[num(1)].note, items[num(1)].prior) == (
        DONE, "confirmed by read-back", P_B)
    assert (items[num(2)].state, items[num(2)].prior) == (PENDING, P_B)


async def test_a_request_that_lands_within_one_flush_is_written_once_with_its_outcome(
        journal: Journal) -> None:
    journal.record(upd(1, PENDING, IN_FLIGHT))
    journal.record(upd(2, PENDING, IN_FLIGHT))
    journal.record(ItemUpdate(1, num(1), IN_FLIGHT, DONE, attempts=1, http_status=200))
    assert journal.pending_updates == 2  # merged as it was recorded
    assert [(u.phone_number, u.from_state, u.to_state) for u in buffered(journal)] == [
        (num(1), PENDING, DONE), (num(2), PENDING, IN_FLIGHT)]
    await journal.flush()
    items = await all_items(journal)
    assert (items[num(1)].state, items[num(1)].attempts, items[num(1)].http_status) == (DONE, 1, 200)
    assert items[num(2)].state is IN_FLIGHT


# --- rollback -------------------------------------------------------------------------------

async def _finished_parent(journal: Journal) -> None:
    await journal.apply_snapshot(1, [SnapshotEntry(num(i), P_B) for i in range(4)]
                                 + [SnapshotEntry(num(4), P_A), SnapshotEntry(num(5), "")])
    journal.record(upd(0, PENDING, DONE))  # P_B -> P_A: rolled back
    journal.record(upd(1, PENDING, FAILED))  # failed: not rolled back
    journal.record(upd(5, PENDING, DONE))  # "" -> P_A: rolled back to unassigned
    await journal.flush()
    await journal.apply_snapshot(1, [SnapshotEntry(num(2), P_A)])  # landed unrecorded
    await journal.set_job_state(1, JobState.FINISHED)


async def test_rollback_job_undoes_what_the_job_changed(journal: Journal) -> None:
    await _finished_parent(journal)
    job_id = await journal.create_rollback_job(1, name="undo", settings={"rate": 1})
    job = await journal.job(job_id)
    items = await all_items(journal, job_id)
    assert (job.kind, job.state, job.parent_id, job.name) == (Kind.ROLLBACK, JobState.READY, 1,
                                                              "undo")
    assert {n: (i.desired, i.expected, i.prior, i.state) for n, i in items.items()} == {
        num(0): (P_B, P_A, P_A, PENDING), num(2): (P_B, P_A, P_A, PENDING),
        num(5): ("", P_A, P_A, PENDING)}


async def test_rollback_job_creation_resumes_an_unfinished_one(journal: Journal) -> None:
    await _finished_parent(journal)
    first = await journal.create_rollback_job(1, name="undo", settings={})
    await journal.set_job_state(first, JobState.INTERRUPTED)
    assert await journal.create_rollback_job(1, name="undo again", settings={}) == first
    await journal.set_job_state(first, JobState.FINISHED)
    second = await journal.create_rollback_job(1, name="undo again", settings={})
    assert second not in (first, 1)
    assert [j.id for j in await journal.jobs()] == [1, first, second]
    with pytest.raises(JournalError, match="has no job 42"):
        await journal.create_rollback_job(42, name="x", settings={})


async def test_rollback_snapshot_skips_numbers_changed_since_unless_forced(
        journal: Journal) -> None:
    await _finished_parent(journal)
    job_id = await journal.create_rollback_job(1, name="undo", settings={})
    await journal.apply_snapshot(job_id, [SnapshotEntry(num(0), P_C), SnapshotEntry(num(2), "")])
    await journal.apply_snapshot(job_id, [SnapshotEntry(num(5), P_C)], force=True)
    items = await all_items(journal, job_id)
    assert {n: (i.state, i.note) for n, i in items.items()} == {
        num(0): (SKIPPED, f"changed since the job: now {P_C}"),
        num(2): (SKIPPED, "changed since the job: now unassigned"),
        num(5): (PENDING, None)}
    assert items[num(5)].prior == P_A  # the known prior (what the job set) is kept


# --- resume / retry -------------------------------------------------------------------------

async def test_reset_in_flight_and_reset_failed_make_rows_pending_again(journal: Journal) -> None:
    journal.record(upd(1, PENDING, IN_FLIGHT))
    journal.record(upd(2, PENDING, IN_FLIGHT))
    journal.record(upd(3, PENDING, FAILED, attempts=5, note="not applied",
                       error=ApiErrorInfo(404, "10005", "Not found", "no such number")))
    journal.record(upd(4, PENDING, DONE))
    assert await journal.reset_in_flight(1) == 2
    assert await journal.reset_failed(1) == 1
    items = await all_items(journal)
    assert [items[num(n)].state for n in range(1, 5)] == [PENDING, PENDING, PENDING, DONE]
    three = items[num(3)]
    assert (three.attempts, three.http_status, three.error_code, three.error_title,
            three.error_detail, three.note) == (5, None, None, None, None, None)


async def test_keyset_iteration_visits_each_item_once_while_they_change(tmp_path: Path) -> None:
    async with await loaded(tmp_path / "j.db", 2500) as j:
        seen: list[int] = []
        async for page in j.iter_items(1, {PENDING}, batch=300):
            seen.extend(item.line for item in page)
            for item in page[::2]:  # finish half of each page: behind the cursor
                j.record(ItemUpdate(1, item.phone_number, PENDING, DONE))
            for item in page[1::2]:  # and send the other half back and forth
                j.record(ItemUpdate(1, item.phone_number, PENDING, IN_FLIGHT))
                j.record(ItemUpdate(1, item.phone_number, IN_FLIGHT, PENDING))
            await j.flush()
        assert seen == list(range(2, 2502))
        mixed = [i.line async for page in j.iter_items(1, [DONE, PENDING], batch=7)
                 for i in page]
        assert mixed == list(range(2, 2502))
        assert [p async for p in j.iter_items(1, [])] == []
        counts = await j.counts(1)
    assert (counts.get(DONE), counts.get(PENDING), counts.total, counts.rejected) == (
        1250, 1250, 2500, 0)


async def test_discard_deletes_a_fresh_journal_and_keeps_a_used_one(tmp_path: Path) -> None:
    fresh = await loaded(tmp_path / "fresh.db", 3)
    await fresh.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    used = await loaded(tmp_path / "used.db", 3)
    used.record(upd(1, PENDING, IN_FLIGHT))
    with pytest.raises(JournalError, match="rows of it were already sent or decided"):
        await used.discard()
    await used.close()
    async with await Journal.open(tmp_path / "used.db") as reopened:
        with pytest.raises(JournalError, match="this run did not create it"):
            await reopened.discard()
    assert (tmp_path / "used.db").exists()

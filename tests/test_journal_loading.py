"""Loading a job into the journal: staged CSV rows, duplicates and conflicts, rejected rows, and
the numbers a migration lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.errors import JournalError
from bulkops.journal.records import Conflict
from bulkops.journal.states import JobState
from bulkops.journal.store import Journal
from bulkops.models import Kind, MigrateRow, NumberRow, Problem

from tests.journal_kit import P_A, P_B, P_C, PENDING, all_items, create, journal, num


# --- loading --------------------------------------------------------------------------------

async def test_duplicates_with_the_same_target_collapse_into_the_first_line(
        tmp_path: Path) -> None:
    async with await create(tmp_path / "j.db") as j:
        await j.stage_rows(1, [NumberRow(2, num(1), P_A, (("tag", "first"),)),
                               NumberRow(3, num(2), P_B)])
        await j.stage_rows(1, [NumberRow(4, num(1), P_A, (("tag", "second"),)),
                               NumberRow(5, num(1), P_A), NumberRow(6, num(3), "")])
        result = await j.finish_staging(1)
        items = await all_items(j)
        assert await j.distinct_desired(1) == {P_A: [2], P_B: [3]}
    assert (result.rows, result.collapsed, result.collapsed_lines) == (5, 2, (4, 5))
    assert (result.conflicts, result.conflict_count) == ((), 0)
    assert sorted(items) == [num(1), num(2), num(3)]
    first = items[num(1)]
    assert (first.line, first.extra, first.state, first.prior) == (2, (("tag", "first"),),
                                                                   PENDING, None)
    assert items[num(3)].desired == ""


async def test_conflicting_targets_report_both_lines_and_create_no_items(
        tmp_path: Path) -> None:
    async with await create(tmp_path / "j.db") as j:
        await j.stage_rows(1, [NumberRow(2, num(1), P_A), NumberRow(3, num(2), P_A),
                               NumberRow(4, num(1), P_A), NumberRow(5, num(1), P_B),
                               NumberRow(6, num(2), "")])
        result = await j.finish_staging(1)
        assert await all_items(j) == {}
    assert result.conflicts == (Conflict(num(1), 2, P_A, 5, P_B), Conflict(num(2), 3, P_A, 6, ""))
    assert (result.conflict_count, result.collapsed, result.collapsed_lines) == (2, 1, (4,))


async def test_rejected_rows_are_kept_in_order_and_counted(journal: Journal) -> None:
    problems = [Problem("in.csv", 40 + i, f"bad number {i}", column=1, field="phone_number")
                for i in range(5)]
    await journal.add_rejected(1, problems[:3])
    await journal.add_rejected(1, problems[3:])
    pages = [page async for page in journal.iter_rejected(1, batch=2)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [p for page in pages for p in page] == problems
    counts = await journal.counts(1)
    assert (counts.rejected, counts.total) == (5, 10)


async def test_distinct_desired_gives_the_first_five_lines_and_skips_unassign(
        tmp_path: Path) -> None:
    async with await create(tmp_path / "j.db") as j:
        await j.stage_rows(1, [NumberRow(i, num(i), P_B if i % 2 else "") for i in range(2, 20)]
                           + [NumberRow(30, num(30), P_A)])
        assert await j.distinct_desired(1) == {P_B: [3, 5, 7, 9, 11], P_A: [30]}  # staged
        await j.finish_staging(1)
        assert await j.distinct_desired(1) == {P_B: [3, 5, 7, 9, 11], P_A: [30]}  # items


async def test_clear_items_restarts_a_loading_job_but_never_a_ready_one(journal: Journal) -> None:
    await journal.add_rejected(1, [Problem("in.csv", 3, "bad")])
    await journal.clear_items(1)
    assert (await journal.counts(1)).total == 0 and (await journal.counts(1)).rejected == 0
    await journal.stage_rows(1, [NumberRow(2, num(1), P_A)])
    await journal.finish_staging(1)
    await journal.set_job_state(1, JobState.READY)
    with pytest.raises(JournalError, match="only a job still loading may be reloaded"):
        await journal.clear_items(1)
    assert (await journal.counts(1)).total == 1


# --- migrate --------------------------------------------------------------------------------

async def test_listing_a_migration_freezes_its_numbers_once(tmp_path: Path) -> None:
    rows = [MigrateRow(2, P_A, P_B, (("team", "x"),)), MigrateRow(3, P_C, "")]
    async with await create(tmp_path / "j.db", Kind.MIGRATE) as j:
        await j.add_migrations(1, rows)
        assert await j.unlisted_migrations(1) == rows
        await j.add_listed_numbers(1, rows[0], [num(1), num(2), num(2)])
        assert await j.unlisted_migrations(1) == rows[1:]
        with pytest.raises(JournalError, match="or was listed: this is a bug"):
            await j.add_listed_numbers(1, rows[0], [num(9)])
        await j.add_listed_numbers(1, rows[1], [num(2), num(3)])  # num(2) moved between pages
        items = await all_items(j)
        with pytest.raises(JournalError, match="UNIQUE constraint failed: migrations"):
            await j.add_migrations(1, [MigrateRow(7, P_A, P_C)])  # the CSV parser refuses these
    assert sorted(items) == [num(1), num(2), num(3)]
    one = items[num(1)]
    assert (one.desired, one.prior, one.on_account, one.line, one.extra) == (
        P_B, P_A, True, 2, (("team", "x"),))
    assert (items[num(2)].desired, items[num(3)].desired) == (P_B, "")

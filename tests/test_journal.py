"""The SQLite journal: real files in tmp_path, a real second process for the lock."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bulkops.errors import JournalError, JournalLockedError
from bulkops.journal.records import Conflict, Item, ItemUpdate, SnapshotEntry
from bulkops.journal.states import TRANSITIONS, JobState
from bulkops.journal.store import Journal
from bulkops.journal.sql import (
    DONE_SQL, FLUSH_SQL, SNAPSHOT_SQL, _general, flush_statements, pending_among_sql,
)
from bulkops.journal.states import ItemState
from bulkops.models import ApiErrorInfo, Kind, MigrateRow, NumberRow, Problem

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


# --- create / open / lock ------------------------------------------------------------------

async def test_create_then_open_round_trips_the_job(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    async with await create(path) as j:
        created = await j.job()
    async with await Journal.open(path) as j:
        assert await j.job(1) == created
        assert await j.jobs() == [created]
    assert (created.kind, created.state, created.parent_id) == (Kind.ASSIGN, JobState.LOADING, None)
    assert (created.name, created.csv_path, created.default_profile_id) == (
        "test job", "/data/in.csv", P_A)
    assert dict(created.settings) == {"rate": 5.0, "concurrency": 4}
    assert created.created_at.endswith("Z")


async def test_journal_files_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    async with await loaded(path, 3):
        for name in ("job.db", "job.db-wal", "job.db-shm", "job.db.lock"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


async def test_create_refuses_an_existing_file_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    path.write_bytes(b"precious")
    with pytest.raises(JournalError, match="already exists"):
        await create(path)
    assert path.read_bytes() == b"precious"


async def test_settings_that_look_like_credentials_are_refused(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="credentials never go to disk"):
        await Journal.create(tmp_path / "j.db", kind=Kind.ASSIGN, name="x", job_file=None,
                             csv_path=None, csv_sha256=None, default_profile_id=None,
                             settings={"api_key": "KEY123"})
    assert not (tmp_path / "j.db").exists()


async def test_open_of_a_missing_journal_says_so(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="does not exist: check the --journal path"):
        await Journal.open(tmp_path / "nope.db")


async def test_a_second_open_in_the_same_process_is_locked_out(journal: Journal) -> None:
    with pytest.raises(JournalLockedError, match=f"pid {os.getpid()}"):
        await Journal.open(journal.path)
    await journal.close()
    async with await Journal.open(journal.path) as again:
        assert (await again.job()).id == 1


HOLDER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from bulkops.journal import ItemUpdate, Journal
    from bulkops.models import ItemState

    async def main() -> None:
        journal = await Journal.open(Path(sys.argv[1]))
        journal.record(ItemUpdate(1, sys.argv[2], ItemState.PENDING, ItemState.IN_FLIGHT))
        await journal.flush()
        print("ready", flush=True)
        sys.stdin.readline()  # hold the journal until killed

    asyncio.run(main())
""")


async def test_lock_of_a_live_process_refuses_and_dies_with_it_on_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    await (await loaded(path, 5)).close()
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), str(path), num(3)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
        with pytest.raises(JournalLockedError, match=f"in use by another bulkops process "
                                                     f"\\(pid {proc.pid}\\); wait"):
            await Journal.open(path)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    async with await Journal.open(path) as j:  # the stale lock does not block
        items = await all_items(j)
    assert items[num(3)].state is IN_FLIGHT  # committed before kill -9, so it survived
    assert items[num(2)].state is PENDING


async def test_read_only_open_works_while_another_holds_the_lock(journal: Journal) -> None:
    async with await Journal.open(journal.path, lock=False) as reader:
        assert (await reader.counts(1)).get(PENDING) == 10
        assert reader.read_only
        with pytest.raises(JournalError, match="read-only"):
            await reader.set_job_state(1, JobState.READY)


# --- refusing files that are not an intact journal of ours ----------------------------------

def _garbage(path: Path) -> None:
    path.write_bytes(b"phone_number,profile\n+13125550001,x\n" * 50)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('app', 'someone-else')")
    db.close()


def _sqlite_without_meta(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()


async def _journal(path: Path, n: int = 3000) -> None:
    await (await loaded(path, n)).close()


def _other_version(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()


def _truncate_mid_page(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])


def _truncate_on_page(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: 4096 * (len(data) // 4096 // 2)])


def _corrupt_a_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = 4096 * (len(data) // 4096 // 2)
    data[start:start + 4096] = bytes(range(256)) * 16
    path.write_bytes(bytes(data))


BAD_FILES: list[tuple[str, Callable[[Path], None], bool, str]] = [
    ("garbage", _garbage, False, "not an SQLite database"),
    ("empty", _empty, False, "is empty"),
    ("foreign sqlite db", _foreign_sqlite, False, "not a bulkops journal"),
    ("sqlite db without meta", _sqlite_without_meta, False, "not a bulkops journal"),
    ("other schema version", _other_version, True, "schema version 99, this bulkops reads "
                                                  "version 2"),
    ("truncated mid page", _truncate_mid_page, True, "is damaged"),
    ("truncated on a page", _truncate_on_page, True, "is damaged"),
    ("corrupt page", _corrupt_a_page, True, "damaged"),
]


@pytest.mark.parametrize(("spoil", "from_journal", "message"),
                         [pytest.param(f, j, m, id=i) for i, f, j, m in BAD_FILES])
async def test_open_refuses_a_bad_file_and_leaves_it_byte_identical(
        tmp_path: Path, spoil: Callable[[Path], None], from_journal: bool, message: str) -> None:
    path = tmp_path / "job.db"
    if from_journal:
        await _journal(path)
    spoil(path)
    before = path.read_bytes()
    with pytest.raises(JournalError, match=message) as caught:
        await Journal.open(path)
    assert type(caught.value) is JournalError
    assert "left untouched" in str(caught.value)
    assert path.read_bytes() == before
    assert not (tmp_path / "job.db-wal").exists()


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
        statements: list[str] = []
        assert j._conn is not None
        await j._conn.set_trace_callback(statements.append)
        await j.flush()
        await j._conn.set_trace_callback(None)  # type: ignore[arg-type]
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
    assert journal._conn is not None
    async with journal._mutex:  # row 2 through the general statement, as before the short one
        await journal._conn.execute(FLUSH_SQL, _general(done[1], "2026-01-01T00:00:00Z"))
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
        assert journal._conn is not None
        plan = [row[3] for row in await journal._conn.execute_fetchall(
            "EXPLAIN QUERY PLAN " + sql, params)]  # type: ignore[arg-type]
    assert plan == ["SEARCH items USING INDEX sqlite_autoindex_items_1 (job_id=? AND phone_number=?)"]


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
    deadline = asyncio.get_running_loop().time() + 30
    while journal.pending_updates and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
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
        4: (None, False, PENDING, None),  # not on the account: prior stays unknown
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
    assert [(u.phone_number, u.from_state, u.to_state) for u in journal._buffer] == [
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

"""The journal's files: create, open and the lock (a real second process holds it), and refusing
files that are not an intact journal of ours, leaving them untouched."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from bulkops.errors import JournalError, JournalLockedError
from bulkops.journal.states import JobState
from bulkops.journal.store import Journal
from bulkops.models import Kind

from tests.journal_kit import IN_FLIGHT, P_A, PENDING, REPO, all_items, create, journal, loaded, num


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
    from bulkops.journal.records import ItemUpdate
    from bulkops.journal.states import ItemState
    from bulkops.journal.store import Journal

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
                                                  "version 3"),
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

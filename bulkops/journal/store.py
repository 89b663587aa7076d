"""The resumable job journal: one SQLite file (WAL) per CSV job, which also holds that job's
rollbacks (further jobs of the file); an item per resource (a phone number or a short code:
``models.Resource``), keyed by (job, that resource's key).

Jobs of a million numbers survive kill -9, an OS crash or a power cut, and resume exactly:
every commit is synced (``synchronous = FULL``), so what a request acts on (a batch's snapshot,
an order in SUBMITTING) is on disk before it leaves. Each method is one transaction;
``record()`` buffers outcomes and ``flush()`` writes them in one batch. An update not flushed
before a crash is lost, which is safe: resume re-checks every non-terminal row with the API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bulkops.errors import JournalError, JournalLockedError
from bulkops.journal.records import (
    CSV_JOB, SERIES_COUNTS, Conflict, Item, ItemUpdate, JobRecord, OrderRecord, RunRecord,
    SeriesPoint, SnapshotEntry, StagingResult,
)
from bulkops.journal.sql import (
    COLLAPSED_LINES, CONFLICTS, DISTINCT_DESIRED, DUPLICATE_COUNTS, KEEP_DUPLICATES, ROLLBACK_ITEMS, SNAPSHOT_SQL, STAGE_TO_ITEMS, flush_statements, pending_among_sql, snapshot_params,
)
from bulkops.journal.sqlite import (
    ITEM_COLUMNS, JOB_COLUMNS, ROWID_AT, SCHEMA_VERSION, access_problem, bug, check_header, connect, dump_extra, dump_settings, initialize, item_from_row, job_from_row, load_extra, lock_file, now, sidecar, translate, upgrade, validate,
)
from bulkops.journal.states import ORDER_TRANSITIONS, TRANSITIONS, ItemState, JobState, OrderState
from bulkops.models import Counts, Extra, Kind, MigrateRow, NumberRow, Problem, Resource, ShortCode

T = TypeVar("T")
_NUMBER = Resource.PHONE_NUMBER  # journaled as resource NULL
# The last order of an item ``leftovers`` (and ``iter_orderable(heal=True)``) re-orders.
_HEALABLE = "(o.state = 'timed_out' AND o.generation < ?) OR (o.state = 'settled' AND o.generation = 0)"
Db = aiosqlite.Connection
log = logging.getLogger("bulkops")


async def _rows(db: Db, sql: str,
                params: Sequence[object] | Mapping[str, object] = ()) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await db.execute_fetchall(sql, params)]


async def _abandon(path: Path, conn: Db | None, lock: int | None, err: BaseException,
                   doing: str, *, delete: bool = False, writing: bool = True) -> BaseException:
    """Undo a half-done create/open; returns the error to raise instead of ``err``."""
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()
    for leftover in (path, sidecar(path, "-wal"), sidecar(path, "-shm")) if delete else ():
        leftover.unlink(missing_ok=True)
    if lock is not None:
        os.close(lock)
    if writing and isinstance(err, (sqlite3.Error, OSError)):
        if (access := access_problem(path)) is not None:
            return access  # the true cause: a folder or file that cannot be written
    return translate(path, err, doing) if isinstance(err, sqlite3.Error) else err


async def _upgrade(path: Path, version: str, *, holding: bool) -> None:
    """An older journal upgraded in place, under the lock (taken here if the caller has none:
    ``status`` and ``report`` upgrade an idle journal too; one a live older bulkops is running
    is refused until it finishes)."""
    fd = None
    if not holding:
        try:
            fd = lock_file(path)
        except JournalLockedError:  # other JournalErrors (no lock file) go through unchanged
            raise JournalLockedError(
                f"{path} is a bulkops journal of schema version {version} in use by another "
                "bulkops process; wait for it to finish, then run the command again (it is then "
                f"upgraded to version {SCHEMA_VERSION})") from None
    conn: Db | None = None
    try:
        conn = await connect(path, read_only=False)
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await upgrade(conn)
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
            raise
        log.info("journal %s upgraded from schema version %s to %d", path, version, SCHEMA_VERSION)
    except sqlite3.Error as err:
        raise translate(path, err, "upgrading its schema") from None
    finally:
        if conn is not None:
            await conn.close()
        if fd is not None:
            os.close(fd)


class Journal:
    """One journal file; one instance per process. All methods but ``record()`` are async."""

    def __init__(self, path: Path, conn: Db, lock: int | None, *, created: bool) -> None:
        self.path = path
        self._conn: Db | None = conn
        self._lock = lock  # the lock file's descriptor; None when opened read-only
        self.read_only = lock is None
        self._created = created
        self._mutex = asyncio.Lock()
        self._buffer: list[ItemUpdate] = []
        self._opened: dict[tuple[int, str], int] = {}  # row -> buffer index of its bare IN_FLIGHT

    @classmethod
    async def create(cls, path: Path, *, kind: Kind, name: str, job_file: str | None,
                     csv_path: str | None, csv_sha256: str | None,
                     default_profile_id: str | None, settings: Mapping[str, object]) -> Journal:
        """A new journal (never over an existing file) holding job 1 in state LOADING."""
        path, settings_json = Path(path), dump_settings(settings)
        lock, made, conn = lock_file(path), False, None
        try:
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            except OSError as err:
                if not isinstance(err, FileExistsError) and (access := access_problem(path)):
                    raise access from None
                raise JournalError(f"the journal {path} already exists: run the same command to "
                                   "resume it, or choose a new --journal path"
                                   if isinstance(err, FileExistsError) else
                                   f"cannot create the journal {path} ({err.strerror}): check "
                                   "that the folder exists and is writable") from None
            made, conn = True, await connect(path, read_only=False)
            journal = cls(path, conn, lock, created=True)
            await journal._run("creating it", lambda db: initialize(db, (
                kind.value, name, job_file, csv_path, csv_sha256, default_profile_id,
                settings_json)))
            return journal
        except BaseException as err:
            raise await _abandon(path, conn, lock, err, "creating it", delete=made) from None

    @classmethod
    async def open(cls, path: Path, *, lock: bool = True) -> Journal:
        """An existing journal, validated read-only first; never repaired or replaced.

        A journal of an older schema version (1 or 2) is upgraded in place first, under the lock
        (taken just for the upgrade when ``lock=False``; one another bulkops process holds is
        refused, JournalLockedError); nothing else is ever changed on open.
        ``lock=False``: then read-only and unlocked, for status and report while a run holds it."""
        path = Path(path)
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise JournalError(f"the journal {path} {what}: check the --journal path")
        fd, conn = (lock_file(path) if lock else None), None
        try:
            check_header(path)
            # Without a WAL beside it, check the file alone: nothing gets created next to it.
            conn = await connect(path, read_only=True, immutable=not sidecar(path, "-wal").exists())
            version = await validate(conn, path)
            await conn.close()
            conn = None
            if version != str(SCHEMA_VERSION):
                await _upgrade(path, version, holding=fd is not None)
            # A folder that cannot be written can hold no run (no WAL, no lock): read the
            # file as it is, or SQLite would fail creating the shared-memory file beside it.
            frozen = not lock and not sidecar(path, "-wal").exists() and \
                not os.access(path.parent, os.W_OK)
            conn = await connect(path, read_only=not lock, immutable=frozen)
            return cls(path, conn, fd, created=False)
        except BaseException as err:
            raise await _abandon(path, conn, fd, err, "opening it", writing=lock) from None

    async def close(self) -> None:
        """Flush buffered updates, close the file and release the lock. Idempotent."""
        try:
            await self.flush()
        finally:
            await self._shutdown()

    async def _shutdown(self, *, delete: bool = False) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                async with self._mutex:  # a shielded operation still running finishes first
                    await conn.close()
        except sqlite3.Error as err:
            raise translate(self.path, err, "closing it") from None
        finally:
            for leftover in (self.path, sidecar(self.path, "-wal"), sidecar(self.path, "-shm"),
                             sidecar(self.path, ".lock")) if delete else ():
                leftover.unlink(missing_ok=True)  # the lock file too, while we still hold it
            if self._lock is not None:
                os.close(self._lock)  # closing the last descriptor releases the flock
                self._lock = None

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def discard(self) -> None:
        """Close and delete the journal: only one this process created and never sent from."""
        sent = self._buffer or (await self._fetch("checking it", "SELECT EXISTS (SELECT 1 FROM "
                                "items WHERE state <> 'pending' OR attempts > 0)"))[0][0]
        if sent or not self._created or self.read_only:
            raise JournalError(f"refusing to delete the journal {self.path}: " + (
                "this run did not create it" if not self._created else "rows of it were already "
                "sent or decided") + "; it is kept for resume, report and rollback")
        await self._shutdown(delete=True)

    async def _run(self, doing: str, op: Callable[[Db], Awaitable[T]], *, write: bool = True) -> T:
        if self._conn is None or (write and self.read_only):
            state = "closed" if self._conn is None else "opened read-only"
            raise bug(f"the journal {self.path} is {state} (while {doing})")
        # Shielded: a cancelled caller (Ctrl-C, the flusher being stopped) never leaves half a
        # transaction on the shared connection; the operation completes, then the mutex frees.
        task = asyncio.ensure_future(self._transaction(self._conn, doing, op, write))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved
            raise

    async def _transaction(self, db: Db, doing: str, op: Callable[[Db], Awaitable[T]],
                           write: bool) -> T:
        async with self._mutex:
            try:
                await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = await op(db)
                    await db.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error, ValueError):
                        await db.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.Error as err:
                raise translate(self.path, err, doing) from None

    async def _fetch(self, doing: str, sql: str,
                     params: Sequence[object] | Mapping[str, object] = ()) -> list[tuple[Any, ...]]:
        return await self._run(doing, lambda db: _rows(db, sql, params), write=False)

    async def _change(self, doing: str, sql: str, params: Sequence[Any] = (), *,
                      many: bool = False) -> int:
        async def op(db: Db) -> int:
            return (await (db.executemany if many else db.execute)(sql, params)).rowcount
        return await self._run(doing, op)

    async def job(self, job_id: int = CSV_JOB) -> JobRecord:
        if found := [job for job in await self.jobs() if job.id == job_id]:
            return found[0]
        raise JournalError(f"the journal {self.path} has no job {job_id}; `bulkops status` "
                           "lists its jobs")

    async def jobs(self) -> list[JobRecord]:
        sql = f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"  # a handful: job 1 and rollbacks
        return [job_from_row(r) for r in await self._fetch("reading jobs", sql)]

    async def set_job_state(self, job_id: int, state: JobState) -> None:
        await self.flush()  # outcomes land before the job says FINISHED
        if not await self._change("saving the job state", "UPDATE jobs SET state = ?, "
                                  "updated_at = ? WHERE id = ?", (state.value, now(), job_id)):
            await self.job(job_id)  # raises: no such job

    async def create_rollback_job(self, parent_id: int, *, name: str,
                                  settings: Mapping[str, object]) -> int:
        """A READY job putting back what the parent changed; an unfinished one is resumed."""
        settings_json = dump_settings(settings)
        await self.job(parent_id)  # raises: no such job
        await self.flush()

        async def op(db: Db) -> int:
            # A cancelled (declined) rollback is never resumed: asking again builds a new one.
            if unfinished := await _rows(db, "SELECT id FROM jobs WHERE parent_id = ? AND kind = "
                                         "'rollback' AND state NOT IN ('finished', 'cancelled') "
                                         "ORDER BY id DESC",
                                         (parent_id,)):
                return int(unfinished[0][0])
            stamp = now()
            cur = await db.execute(
                "INSERT INTO jobs (kind, name, state, created_at, updated_at, parent_id, settings) "
                "VALUES ('rollback', ?, 'ready', ?, ?, ?, ?)",
                (name, stamp, stamp, parent_id, settings_json))
            await db.execute(ROLLBACK_ITEMS, (cur.lastrowid, stamp, parent_id))
            return int(cur.lastrowid or 0)
        return await self._run("creating the rollback job", op)

    async def latest_ran(self) -> JobRecord:
        """The latest job that started writing (job 1 if none did): what `report` and
        `retry-failed` mean by default. A declined or never confirmed job is never it."""
        jobs = await self.jobs()
        return next((job for job in reversed(jobs) if job.state.ran), jobs[0])

    async def rollbacks_of(self, job_id: int) -> list[JobRecord]:
        """The rollback jobs of ``job_id`` that started writing, oldest first."""
        return [job for job in await self.jobs()
                if job.parent_id == job_id and job.kind is Kind.ROLLBACK and job.state.ran]

    async def migration_counts(self, job_id: int) -> list[tuple[int, str, int | None]]:
        """(line, source profile, numbers listed) of each migrate row, in line order."""
        return [(r[0], r[1], r[2]) for r in await self._fetch(
            "reading migrate rows", "SELECT line, from_profile_id, listed_count FROM migrations "
            "WHERE job_id = ? ORDER BY line", (job_id,))]

    async def migration_short_codes(self, job_id: int) -> list[tuple[int, str, int | None]]:
        """(line, source profile, short codes listed; None: left behind) of each migrate row."""
        return [(r[0], r[1], r[2]) for r in await self._fetch(
            "reading migrate rows", "SELECT line, from_profile_id, short_codes FROM migrations "
            "WHERE job_id = ? ORDER BY line", (job_id,))]


    async def stage_rows(self, job_id: int, rows: Sequence[NumberRow]) -> None:
        """Append one batch (5-10k) of CSV rows; duplicates are resolved by finish_staging."""
        await self._change("staging CSV rows", "INSERT INTO staged (job_id, line, phone_number, "
                           "desired, extra, resource, ref) VALUES (?, ?, ?, ?, ?, ?, ?)", [
                               (job_id, r.line, r.phone_number, r.profile_id, dump_extra(r.extra),
                                None if r.resource is _NUMBER else r.resource.value, r.ref)
                               for r in rows], many=True)

    async def add_rejected(self, job_id: int, problems: Sequence[Problem]) -> None:
        """Rows left out by --skip-invalid: kept so the report lists them."""
        await self._change("saving rejected rows", 'INSERT INTO rejected (job_id, line, "column", '
                           "field, message, path, cells) VALUES (?, ?, ?, ?, ?, ?, ?)", [
                               (job_id, p.line, p.column, p.field, p.message, p.path,
                                dump_extra(p.cells)) for p in problems], many=True)

    async def conflicting_numbers(self, job_id: int) -> list[str]:
        """Every staged number that two lines send to two different targets."""
        rows = await self._fetch("finding conflicting lines", "SELECT phone_number FROM staged "
                                 "WHERE job_id = ? GROUP BY phone_number HAVING COUNT(DISTINCT "
                                 "desired) > 1 ORDER BY MIN(line)", (job_id,))
        return [str(r[0]) for r in rows]

    async def take_staged(self, job_id: int, *, profiles: Sequence[str] = (),
                          numbers: Sequence[str] = ()) -> list[tuple[int, str, str, Extra]]:
        """Remove the staged rows sending to one of ``profiles`` or naming one of ``numbers``
        (--skip-invalid rejects them instead); (line, number, target, cells) in line order."""
        taken: list[tuple[int, str, str, Extra]] = []
        for column, values in (("desired", list(profiles)), ("phone_number", list(numbers))):
            for start in range(0, len(values), 500):
                chunk = values[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                where = f"job_id = ? AND {column} IN ({marks})"
                rows = await self._fetch("reading staged rows", "SELECT line, phone_number, "
                                         f"desired, extra FROM staged WHERE {where}",
                                         (job_id, *chunk))
                taken += [(int(r[0]), str(r[1]), str(r[2]), load_extra(r[3])) for r in rows]
                await self._change("removing staged rows", f"DELETE FROM staged WHERE {where}",
                                   (job_id, *chunk))
        return sorted(taken)

    async def finish_staging(self, job_id: int) -> StagingResult:
        """Staged rows become PENDING items, unless two lines send a number to two profiles."""
        async def op(db: Db) -> StagingResult:
            staged = (await _rows(db, "SELECT COUNT(*) FROM staged WHERE job_id = ?", (job_id,)))
            await db.execute("SAVEPOINT staging")
            inserted = (await db.execute(STAGE_TO_ITEMS, (now(), job_id))).rowcount
            counts, lines, conflicts = (0, 0), tuple[int, ...](), tuple[Conflict, ...]()
            if inserted < staged[0][0]:  # duplicates: rare, so only then the join
                counts = (await _rows(db, DUPLICATE_COUNTS, (job_id,)))[0]
                lines = tuple(r[0] for r in await _rows(db, COLLAPSED_LINES, (job_id,)))
                conflicts = tuple(Conflict(*r) for r in await _rows(db, CONFLICTS, (job_id,)))
            if counts[1]:
                await db.execute("ROLLBACK TO staging")  # no items; staged rows stay for a look
            else:
                if counts[0]:  # the collapsed lines keep a report line of their own
                    await db.execute(KEEP_DUPLICATES, (job_id,))
                await db.execute("DELETE FROM staged WHERE job_id = ?", (job_id,))
            await db.execute("RELEASE staging")
            return StagingResult(staged[0][0], counts[0], lines, conflicts, counts[1])
        return await self._run("building the job's items", op)

    async def clear_items(self, job_id: int) -> None:
        """Forget what was loaded for a LOADING job that died mid-load, to load it again."""
        if (job := await self.job(job_id)).state is not JobState.LOADING:
            raise JournalError(f"refusing to clear job {job_id} of {self.path}: it is "
                               f"{job.state.value}, and only a job still loading may be reloaded")

        async def op(db: Db) -> None:
            for table in ("items", "staged", "rejected", "migrations", "duplicates"):
                await db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
        await self._run("clearing a half-loaded job", op)

    async def distinct_desired(self, job_id: int) -> dict[str, list[int]]:
        """Each target profile ("" excluded) with the first 5 lines naming it, for validation."""
        uses: dict[str, list[int]] = {}
        for desired, line in await self._fetch("listing profiles", DISTINCT_DESIRED, (job_id,)):
            uses.setdefault(desired, []).append(line)
        return uses

    async def add_migrations(self, job_id: int, rows: Sequence[MigrateRow]) -> None:
        await self._change("saving migrate rows", "INSERT INTO migrations (job_id, "
                           "from_profile_id, to_profile_id, line, extra) VALUES (?, ?, ?, ?, ?)",
                           [(job_id, r.from_profile_id, r.to_profile_id, r.line,
                             dump_extra(r.extra)) for r in rows], many=True)

    async def unlisted_migrations(self, job_id: int) -> list[MigrateRow]:
        rows = await self._fetch("reading migrate rows", "SELECT line, from_profile_id, "
                                 "to_profile_id, extra FROM migrations WHERE job_id = ? AND "
                                 "listed = 0 ORDER BY line", (job_id,))
        return [MigrateRow(r[0], r[1], r[2], load_extra(r[3])) for r in rows]

    async def add_listed_numbers(self, job_id: int, migration: MigrateRow,
                                 numbers: Sequence[str],
                                 short_codes: Sequence[ShortCode] | None = None) -> None:
        """Freeze one source profile's numbers and short codes (None: left behind) into items,
        atomically with "listed"."""
        m, key, stamp = migration, (job_id, migration.from_profile_id), now()

        async def op(db: Db) -> None:
            found = await _rows(db, "SELECT listed FROM migrations WHERE job_id = ? AND "
                                "from_profile_id = ?", key)
            if not found or found[0][0]:
                raise bug(f"the migration of line {m.line} is not in job {job_id} or was listed")
            # A number listed under two sources (it moved between listings) keeps its first item.
            cur = await db.executemany(
                "INSERT INTO items (job_id, phone_number, line, desired, prior, state, attempts, "
                "on_account, extra, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, 1, ?, ?) "
                "ON CONFLICT (job_id, phone_number) DO NOTHING", [
                    (job_id, n, m.line, m.to_profile_id, m.from_profile_id, dump_extra(m.extra),
                     stamp) for n in numbers])
            listed_codes = None
            if short_codes is not None:
                cur_codes = await db.executemany(
                    "INSERT INTO items (job_id, phone_number, line, desired, prior, state, "
                    "attempts, on_account, extra, updated_at, resource, ref) VALUES (?, ?, ?, ?, "
                    "?, 'pending', 0, 1, ?, ?, 'short_code', ?) ON CONFLICT (job_id, phone_number) "
                    "DO NOTHING", [(job_id, c.short_code, m.line, m.to_profile_id,
                                    m.from_profile_id, dump_extra(m.extra), stamp, c.id)
                                   for c in short_codes])
                listed_codes = max(cur_codes.rowcount, 0) if short_codes else 0
            await db.execute("UPDATE migrations SET listed = 1, listed_count = ?, short_codes = ? "
                             "WHERE job_id = ? AND from_profile_id = ?",
                             (max(cur.rowcount, 0), listed_codes, *key))
        await self._run("saving the listed numbers", op)

    async def apply_snapshot(self, job_id: int, entries: Sequence[SnapshotEntry], *,
                             force: bool = False) -> None:
        """Record what the API says now about PENDING items; skip those needing no request."""
        await self._change("saving the snapshot", SNAPSHOT_SQL,
                           snapshot_params(job_id, entries, force, now()), many=True)

    async def iter_items(self, job_id: int, states: Collection[ItemState] | None = None,
                         batch: int = 1000) -> AsyncGenerator[list[Item], None]:
        """Pages of items in rowid order, keyset-paginated: safe while they are updated."""
        select = f"SELECT {ITEM_COLUMNS}, id FROM items"  # id last: ROWID_AT
        wanted = None if states is None else sorted({ItemState(s).value for s in states})
        if wanted is None:  # NOT INDEXED: a rowid range; the planner would sort the whole job
            sql = f"{select} NOT INDEXED WHERE job_id = :job AND id > :after ORDER BY id LIMIT :n"
        elif len(wanted) == 1:  # one index range on (job_id, state, rowid), already in order
            sql = (f"{select} INDEXED BY items_job_state WHERE job_id = :job AND "
                   f"state = '{wanted[0]}' AND id > :after ORDER BY id LIMIT :n")
        else:  # one index range per state, merged: never a full sort
            sql = f"SELECT * FROM ({{}}) ORDER BY {ROWID_AT + 1} LIMIT :n".format(" UNION ALL ".join(
                f"SELECT * FROM ({select} INDEXED BY items_job_state WHERE job_id = :job AND "
                f"state = '{s}' AND id > :after ORDER BY id LIMIT :n)" for s in wanted))
        after, batch = 0, max(batch, 1)
        while wanted != [] and (rows := await self._fetch(
                "reading items", sql, {"job": job_id, "after": after, "n": batch})):
            after = rows[-1][ROWID_AT]
            yield [item_from_row(r) for r in rows]
            if len(rows) < batch:
                return

    async def iter_rows(self, job_id: int, columns: str,
                        batch: int = 5000) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        """Pages of raw ``columns`` (a fixed list, never user text) of every item, in rowid
        order: for exports that would only take an Item apart again."""
        sql = (f"SELECT {columns}, id FROM items NOT INDEXED WHERE job_id = ? AND id > ? "
               "ORDER BY id LIMIT ?")
        after = 0
        while rows := await self._fetch("reading items", sql, (job_id, after, batch)):
            after = rows[-1][-1]
            yield rows
            if len(rows) < batch:
                return

    async def iter_rejected(self, job_id: int,
                            batch: int = 1000) -> AsyncGenerator[list[Problem], None]:
        """Rejected rows' problems in input order (a row may have several), with its cells."""
        after = 0
        while rows := await self._fetch(
                "reading rejected rows", 'SELECT id, path, line, message, "column", field, cells '
                "FROM rejected WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
                (job_id, after, max(batch, 1))):
            after = rows[-1][0]
            yield [Problem(r[1], r[2], r[3], column=r[4], field=r[5], cells=load_extra(r[6]))
                   for r in rows]

    async def iter_duplicates(self, job_id: int, batch: int = 1000
                              ) -> AsyncGenerator[list[tuple[int, str, str, int, Extra]], None]:
        """(line, number, target, the line it repeats, extra cells) of collapsed lines."""
        after = 0
        while rows := await self._fetch(
                "reading duplicate rows", "SELECT line, phone_number, desired, first_line, extra "
                "FROM duplicates WHERE job_id = ? AND line > ? ORDER BY line LIMIT ?",
                (job_id, after, max(batch, 1))):
            after = rows[-1][0]
            yield [(r[0], r[1], r[2], r[3], load_extra(r[4])) for r in rows]

    def record(self, update: ItemUpdate) -> None:
        """Buffer one outcome (no I/O); an illegal transition is a bug and raises.

        A bare "went in flight" whose outcome arrives before the next flush is replaced by
        that outcome (one UPDATE per row per flush, the same final row): on a crash both are
        lost together, and resume sends an unrecorded row again, which PATCH allows."""
        if update.to_state not in TRANSITIONS[update.from_state] or self._conn is None:
            raise bug(f"illegal journal transition {update.from_state.value} -> "
                      f"{update.to_state.value} for {update.phone_number} in job "
                      f"{update.job_id}" + (" (journal closed)" * (self._conn is None)))
        key = (update.job_id, update.phone_number)
        if update.from_state is ItemState.IN_FLIGHT and (at := self._opened.pop(key, None)) is not None:
            self._buffer[at] = ItemUpdate(update.job_id, update.phone_number,
                                          self._buffer[at].from_state, update.to_state,
                                          update.attempts, update.http_status, update.error,
                                          update.note)
            return
        if update.to_state is ItemState.IN_FLIGHT and update.attempts is None and \
                update.http_status is None and update.error is None and update.note is None:
            self._opened[key] = len(self._buffer)
        self._buffer.append(update)

    @property
    def pending_updates(self) -> int:
        return len(self._buffer)

    async def flush(self) -> None:
        """Write every buffered update in one transaction."""
        if not self._buffer:
            return
        updates, self._buffer, self._opened = self._buffer, [], {}
        stamp = now()

        async def op(db: Db) -> int:
            applied = 0
            for sql, params in flush_statements(updates, stamp):
                applied += (await db.executemany(sql, params)).rowcount
            return applied

        try:
            applied = await self._run("saving progress", op)
        except JournalError:
            self._buffer[:0] = updates  # rolled back: kept for the next try (close flushes)
            self._opened = {}  # indices moved; later outcomes are simply written after these
            raise
        if applied != len(updates):
            raise bug(f"{len(updates) - applied} of {len(updates)} item updates did not match the "
                      f"state in {self.path} and were not applied (the others were saved)")

    async def run_flusher(self, interval: float = 0.25) -> None:
        """Flush every ``interval`` seconds until cancelled (close() flushes the rest)."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()

    async def reset_in_flight(self, job_id: int) -> int:
        """On resume: a row that was in flight may or may not have landed; send it again.
        ``on_account`` is cleared (not checked since): the snapshot reads it again."""
        await self.flush()
        return await self._change("resetting rows that were in flight", "UPDATE items SET "
                                  "state = 'pending', on_account = NULL, updated_at = ? WHERE "
                                  "job_id = ? AND state = 'in_flight'", (now(), job_id))

    async def reset_failed(self, job_id: int) -> int:
        """retry-failed: FAILED rows become PENDING, their error cleared (attempts kept)."""
        await self.flush()
        return await self._change("resetting failed rows", "UPDATE items SET state = 'pending', "
                                  "http_status = NULL, error_code = NULL, error_title = NULL, "
                                  "error_detail = NULL, note = NULL, updated_at = ? "
                                  "WHERE job_id = ? AND state = 'failed'", (now(), job_id))

    async def pending_among(self, job_id: int, numbers: Sequence[str]) -> set[str]:
        """Which of ``numbers`` (one snapshot batch, <= 250) are still PENDING."""
        rows = await self._fetch("reading items", pending_among_sql(len(numbers)),
                                 (job_id, *numbers))
        return {r[0] for r in rows}

    async def counts(self, job_id: int) -> Counts:
        await self.flush()
        rows = await self._fetch("counting rows", "SELECT state, COUNT(*) FROM items WHERE "
                                 "job_id = ?1 GROUP BY state UNION ALL SELECT NULL, COUNT(*) "
                                 "FROM rejected WHERE job_id = ?1", (job_id,))
        return Counts({ItemState(s): n for s, n in rows if s}, sum(n for s, n in rows if not s))

    async def count_notes(self, job_id: int, state: ItemState, prefix: str) -> int:
        """Rows of ``job_id`` in ``state`` whose note starts with ``prefix`` (a fixed text)."""
        rows = await self._fetch("counting rows", "SELECT COUNT(*) FROM items INDEXED BY "
                                 "items_job_state WHERE job_id = ? AND state = ? AND "
                                 "substr(note, 1, ?) = ?",
                                 (job_id, state.value, len(prefix), prefix))
        return int(rows[0][0])

    async def set_profile_names(self, names: Mapping[str, str]) -> None:
        """Profile id -> name, as listed when the job's input named profiles (for the report)."""
        value = json.dumps(dict(names), ensure_ascii=False, sort_keys=True)
        await self._change("saving profile names", "INSERT OR REPLACE INTO meta (key, value) "
                           "VALUES ('profile_names', ?)", (value,))

    async def profile_names(self) -> dict[str, str]:
        rows = await self._fetch("reading profile names",
                                 "SELECT value FROM meta WHERE key = 'profile_names'")
        return {str(k): str(v) for k, v in json.loads(rows[0][0]).items()} if rows else {}

    # --- bulk orders ----------------------------------------------------------------------------

    async def open_order(self, job_id: int, profile_id: str, numbers: Sequence[str],
                         generation: int) -> OrderRecord:
        """Journal an order (SUBMITTING) holding ``numbers`` (PENDING -> ORDERED), before its POST."""
        await self.flush()
        stamp = now()

        async def op(db: Db) -> OrderRecord:
            cur = await db.execute(
                "INSERT INTO orders (job_id, profile_id, state, generation, numbers, created_at, "
                "updated_at) VALUES (?, ?, 'submitting', ?, ?, ?, ?)",
                (job_id, profile_id, generation, len(numbers), stamp, stamp))
            ref = int(cur.lastrowid or 0)
            cur = await db.executemany(
                "UPDATE items SET state = 'ordered', order_ref = ?, updated_at = ? WHERE "
                "job_id = ? AND phone_number = ? AND state = 'pending'",
                [(ref, stamp, job_id, n) for n in numbers])
            if cur.rowcount != len(numbers):
                raise bug(f"{len(numbers) - cur.rowcount} number(s) of a new order were not "
                          "pending")
            return OrderRecord(ref, job_id, profile_id, None, OrderState.SUBMITTING, generation,
                               len(numbers), None)
        return await self._run("journaling an order", op)

    async def _order_state(self, db: Db, ref: int, to: OrderState) -> None:
        rows = await _rows(db, "SELECT state FROM orders WHERE id = ?", (ref,))
        if not rows or to not in ORDER_TRANSITIONS[OrderState(rows[0][0])]:
            raise bug(f"illegal order transition {rows[0][0] if rows else 'missing'} -> "
                      f"{to.value} for order {ref}")
        await db.execute("UPDATE orders SET state = ?, updated_at = ? WHERE id = ?",
                         (to.value, now(), ref))

    async def order_posted(self, ref: int, order_id: str, posted_at: float) -> None:
        """The server answered: SUBMITTING -> OPEN with its order_id."""
        async def op(db: Db) -> None:
            await self._order_state(db, ref, OrderState.OPEN)
            await db.execute("UPDATE orders SET order_id = ?, posted_at = ? WHERE id = ?",
                             (order_id, posted_at, ref))
        await self._run("saving an order id", op)

    async def close_order(self, job_id: int, ref: int, to: OrderState, applied: Collection[str],
                          via: str | None) -> int:
        """End an order: its ORDERED numbers in ``applied`` become DONE (read back), the
        others PENDING again (order_ref kept: it says which order they came from)."""
        await self.flush()
        stamp = now()
        note = "applied by bulk order (read back)"

        async def op(db: Db) -> int:
            await self._order_state(db, ref, to)
            done = (await db.executemany(
                "UPDATE items SET state = 'done', via = ?, note = ?, http_status = NULL, "
                "error_code = NULL, error_title = NULL, error_detail = NULL, updated_at = ? "
                "WHERE job_id = ? AND phone_number = ? AND state = 'ordered' AND +order_ref = ?",
                [(via, note, stamp, job_id, n, ref) for n in applied])).rowcount
            await db.execute("UPDATE items SET state = 'pending', updated_at = ? WHERE "
                             "order_ref = ? AND state = 'ordered'", (stamp, ref))
            return int(done)
        return await self._run("closing an order", op)

    async def orders(self, job_id: int, states: Collection[OrderState]) -> list[OrderRecord]:
        wanted = sorted(OrderState(s).value for s in states)
        rows = await self._fetch("reading orders", "SELECT id, job_id, profile_id, order_id, "
                                 "state, generation, numbers, posted_at FROM orders WHERE "
                                 f"job_id = ? AND state IN ({','.join('?' * len(wanted))}) "
                                 "ORDER BY id", (job_id, *wanted))
        return [OrderRecord(r[0], r[1], r[2], r[3], OrderState(r[4]), r[5], r[6], r[7])
                for r in rows]

    async def not_on_account_count(self, job_id: int) -> int:
        """Items the snapshot found the API does not know (failed without a request)."""
        await self.flush()
        rows = await self._fetch("counting items", "SELECT COUNT(*) FROM items WHERE job_id = ? "
                                 "AND on_account = 0", (job_id,))
        return int(rows[0][0])

    async def open_order_count(self, job_id: int) -> int:
        rows = await self._fetch("counting orders", "SELECT COUNT(*) FROM orders WHERE job_id = ? "
                                 "AND state IN ('submitting', 'open')", (job_id,))
        return int(rows[0][0])

    async def iter_order_items(self, job_id: int, ref: int, state: ItemState,
                               ) -> AsyncGenerator[list[Item], None]:
        """The items of one order (its last one) now in ``state``, in one page (<= --bulk-size)."""
        rows = await self._fetch("reading an order", f"SELECT {ITEM_COLUMNS}, id FROM items "
                                 "WHERE order_ref = ? AND job_id = ? AND state = ? ORDER BY id",
                                 (ref, job_id, state.value))
        if rows:
            yield [item_from_row(r) for r in rows]

    async def order_numbers(self, ref: int) -> list[str]:
        """The numbers an order still holds (ORDERED)."""
        rows = await self._fetch("reading an order", "SELECT phone_number FROM items WHERE "
                                 "order_ref = ? AND state = 'ordered' ORDER BY id", (ref,))
        return [r[0] for r in rows]

    async def order_history(self, job_id: int) -> tuple[int, int, int, int]:
        """(orders closed, of them timed out, numbers they held, of them read back applied)
        over the job's settled and timed-out orders: what healing learns from."""
        rows = await self._fetch("reading orders", "SELECT COUNT(*), COALESCE(SUM(o.state = "
                                 "'timed_out'), 0), COALESCE(SUM(o.numbers), 0), COALESCE(SUM("
                                 "(SELECT COUNT(*) FROM items i WHERE i.order_ref = o.id AND "
                                 "i.state = 'done' AND i.via = o.order_id)), 0) FROM orders o "
                                 "WHERE o.job_id = ? AND o.state IN ('settled', 'timed_out')",
                                 (job_id,))
        return rows[0][0], rows[0][1], rows[0][2], rows[0][3]

    async def leftovers(self, job_id: int, max_generation: int) -> list[tuple[str, int, int]]:
        """(target, generation of the order they would go into, count) of the PENDING items
        orders did not move that one more order may take: still pending when their order
        timed out (up to ``max_generation``), or listed failed by a first order."""
        rows = await self._fetch(
            "reading items", "SELECT i.desired, o.generation + 1, COUNT(*) FROM items i INDEXED "
            "BY items_job_state JOIN orders o ON o.id = i.order_ref WHERE i.job_id = ? AND "
            f"i.state = 'pending' AND ({_HEALABLE}) GROUP BY 1, 2 ORDER BY 1, 2",
            (job_id, max_generation))
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def iter_orderable(self, job_id: int, *, heal: bool = False,
                             max_generation: int = 0, batch: int = 5000,
                             ) -> AsyncGenerator[list[tuple[str, str, int]], None]:
        """Pages of (number, desired, generation) of PENDING items an order may take: never in
        an order, or last in one that was refused or lost; with ``heal``, also those an order
        did not move (``leftovers``), in a re-order one generation later. Numbers a re-order
        listed failed go to PATCH instead."""
        sql = ("SELECT i.id, i.phone_number, i.desired, o.state, o.generation, i.resource FROM items i "
               "INDEXED BY items_job_state LEFT JOIN orders o ON o.id = i.order_ref WHERE "
               "i.job_id = ? AND i.state = 'pending' AND i.id > ? ORDER BY i.id LIMIT ?")
        # Orders take phone numbers only (the bulk endpoint has no short codes): other kinds
        # are left to the PATCH pass that follows the orders.
        after = 0
        while rows := await self._fetch("reading items", sql, (job_id, after, batch)):
            after = rows[-1][0]
            page = []
            for _, number, desired, state, generation, resource in rows:
                if resource is not None:  # NULL: a phone number
                    continue
                if state is None or state in ("refused", "lost"):
                    page.append((number, desired, generation or 0))
                elif heal and ((state == "timed_out" and generation < max_generation)
                               or (state == "settled" and generation == 0)):
                    page.append((number, desired, generation + 1))
            yield page
            if len(rows) < batch:
                return

    # --- the run's story: time series and runs (schema 3) ---------------------------------------

    async def add_point(self, job_id: int, point: SeriesPoint) -> None:
        """Add ``point``'s counts to its bucket (made if new); its gauges replace the bucket's."""
        names = ", ".join(SERIES_COUNTS)
        sums = ", ".join(f"{c} = {c} + excluded.{c}" for c in SERIES_COUNTS)
        await self._change("saving the run's series", (
            f"INSERT INTO series (job_id, t, width, {names}, orders_open, rate_limit) VALUES "
            f"(?, ?, ?, {', '.join('?' * len(SERIES_COUNTS))}, ?, ?) ON CONFLICT (job_id, t) DO "
            f"UPDATE SET {sums}, orders_open = excluded.orders_open, "
            "rate_limit = excluded.rate_limit"),
            (job_id, point.t, point.width, *(getattr(point, c) for c in SERIES_COUNTS),
             point.orders_open, point.rate_limit))

    async def series(self, job_id: int) -> list[SeriesPoint]:
        """The job's series, oldest bucket first."""
        rows = await self._fetch("reading the run's series", f"SELECT t, width, "
                                 f"{', '.join(SERIES_COUNTS)}, orders_open, rate_limit FROM series "
                                 "WHERE job_id = ? ORDER BY t", (job_id,))
        return [SeriesPoint(*r) for r in rows]

    async def replace_series(self, job_id: int, points: Sequence[SeriesPoint]) -> None:
        """The job's whole series, as ``points`` (a coarser one): one transaction."""
        names = ", ".join(("t", "width", *SERIES_COUNTS, "orders_open", "rate_limit"))

        async def op(db: Db) -> None:
            await db.execute("DELETE FROM series WHERE job_id = ?", (job_id,))
            await db.executemany(
                f"INSERT INTO series (job_id, {names}) VALUES (?{', ?' * (len(SERIES_COUNTS) + 4)})",
                [(job_id, p.t, p.width, *(getattr(p, c) for c in SERIES_COUNTS), p.orders_open,
                  p.rate_limit) for p in points])
        await self._run("coarsening the run's series", op)

    async def start_run(self, job_id: int) -> int:
        """A run of ``job_id`` begins (this process); returns its id for ``end_run``."""
        async def op(db: Db) -> int:
            cur = await db.execute("INSERT INTO runs (job_id, started_at, pid) VALUES (?, ?, ?)",
                                   (job_id, now(), os.getpid()))
            return int(cur.lastrowid or 0)
        return await self._run("recording the run's start", op)

    async def end_run(self, run_id: int, state: JobState, exit_code: int) -> None:
        await self.flush()
        await self._change("recording the run's end", "UPDATE runs SET ended_at = ?, state = ?, "
                           "exit_code = ? WHERE id = ?", (now(), state.value, exit_code, run_id))

    async def runs(self, job_id: int | None = None) -> list[RunRecord]:
        """Runs of ``job_id`` (every job's when None), oldest first."""
        where, params = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
        rows = await self._fetch("reading runs", "SELECT id, job_id, started_at, ended_at, state, "
                                 f"exit_code, pid FROM runs {where} ORDER BY id", params)
        return [RunRecord(*r) for r in rows]

    async def failure_groups(self, job_id: int, examples: int = 5
                             ) -> list[tuple[str | None, str | None, int, list[tuple[Any, ...]]]]:
        """FAILED rows by (Telnyx code, title), most first: (code, title, rows, the first
        ``examples`` rows as (line, number, http status, detail))."""
        groups = await self._fetch("grouping failures", "SELECT error_code, error_title, COUNT(*) "
                                   "FROM items WHERE job_id = ? AND state = 'failed' GROUP BY "
                                   "error_code, error_title ORDER BY COUNT(*) DESC, MIN(line)",
                                   (job_id,))
        shown = await self._fetch("reading failure examples", (
            "SELECT error_code, error_title, line, phone_number, http_status, error_detail FROM ("
            "SELECT *, ROW_NUMBER() OVER (PARTITION BY error_code, error_title ORDER BY line) AS "
            "rn FROM items WHERE job_id = ? AND state = 'failed') WHERE rn <= ? ORDER BY line"),
            (job_id, examples))
        by: dict[tuple[str | None, str | None], list[tuple[Any, ...]]] = {}
        for code, title, *example in shown:
            by.setdefault((code, title), []).append(tuple(example))
        return [(code, title, n, by.get((code, title), [])) for code, title, n in groups]

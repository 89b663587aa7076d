"""The journal's SQLite file: schema (DDL, version), connections, row codecs, file checks, lock."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import aiosqlite

from bulkops.errors import JournalAccessError, JournalError, JournalLockedError
from bulkops.journal.records import CSV_JOB, Item, JobRecord
from bulkops.journal.states import ItemState, JobState
from bulkops.models import Extra, Kind, Resource

# 2: bulk orders (table orders, items.order_ref and items.via). 3: the change model: an item
# is one attribute of one resource kind (items.resource, items.ref; migrations.short_codes),
# and the run's story (tables series and runs).
SCHEMA_VERSION = 3
UPGRADABLE = frozenset({"1", "2"})  # older versions upgraded in place by any command that opens them
APP = "bulkops"


# Bulk orders (schema 2): an order is a row here before it is posted; items.order_ref names
# the order holding an ORDERED item (or the last one that did), items.via the order that
# applied it. The partial index stays empty for jobs that never use orders.
ORDERS_DDL = (
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs (id), "
    "profile_id TEXT NOT NULL, order_id TEXT, state TEXT NOT NULL, generation INTEGER NOT NULL "
    "DEFAULT 0, numbers INTEGER NOT NULL, posted_at REAL, created_at TEXT NOT NULL, "
    "updated_at TEXT NOT NULL)",
    "CREATE INDEX orders_job_state ON orders (job_id, state)",
    "CREATE INDEX items_order ON items (order_ref) WHERE order_ref IS NOT NULL",
)

# The run's story (schema 3): ``series`` holds one row per time bucket of a job (``t`` the
# bucket's start in epoch seconds, a multiple of ``width``; counts are what happened in the
# bucket, orders_open and rate_limit what was true at its end), coarsened by merging pairs
# of buckets so a job keeps at most a few thousand (bulkops/story.py). ``runs`` holds one row
# per run of a job (run, a resume, retry-failed): when it started and ended, how, exit code.
STORY_DDL = (
    "CREATE TABLE series (job_id INTEGER NOT NULL REFERENCES jobs (id), t INTEGER NOT NULL, "
    "width INTEGER NOT NULL, requests INTEGER NOT NULL DEFAULT 0, answers_2xx INTEGER NOT NULL "
    "DEFAULT 0, answers_4xx INTEGER NOT NULL DEFAULT 0, answers_5xx INTEGER NOT NULL DEFAULT 0, "
    "rate_limited INTEGER NOT NULL DEFAULT 0, holds INTEGER NOT NULL DEFAULT 0, held_seconds "
    "REAL NOT NULL DEFAULT 0, transient INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL "
    "DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, orders_open INTEGER, rate_limit REAL, "
    "PRIMARY KEY (job_id, t)) WITHOUT ROWID",
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs (id), "
    "started_at TEXT NOT NULL, ended_at TEXT, state TEXT, exit_code INTEGER, pid INTEGER)",
    "CREATE INDEX runs_job ON runs (job_id)",
)

# One table per concept. Every item is keyed by (job_id, phone_number): under concurrency
# finished rows are never a contiguous prefix of the CSV, so nothing is keyed by position.
# items.resource is the kind (models.Resource), NULL for the million-row case, a phone
# number (as extra is NULL without extra cells: 1M rows stay small); items.ref is the API id
# it is written through when that is not the key (a short code's UUID).
DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE jobs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
    state TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, job_file TEXT,
    csv_path TEXT, csv_sha256 TEXT, default_profile_id TEXT,
    parent_id INTEGER REFERENCES jobs (id), settings TEXT NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs (id),
    phone_number TEXT NOT NULL, line INTEGER NOT NULL, desired TEXT NOT NULL, prior TEXT,
    expected TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER, error_code TEXT, error_title TEXT, error_detail TEXT, note TEXT,
    on_account INTEGER, extra TEXT, updated_at TEXT NOT NULL, order_ref INTEGER, via TEXT,
    resource TEXT, ref TEXT, UNIQUE (job_id, phone_number));
CREATE INDEX items_job_state ON items (job_id, state);
CREATE TABLE rejected (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, line INTEGER NOT NULL,
    "column" INTEGER, field TEXT, message TEXT NOT NULL, path TEXT NOT NULL, cells TEXT);
CREATE INDEX rejected_job ON rejected (job_id);
-- Later lines repeating a number and target of an earlier one: collapsed into its item.
CREATE TABLE duplicates (job_id INTEGER NOT NULL, line INTEGER NOT NULL,
    phone_number TEXT NOT NULL, desired TEXT NOT NULL, first_line INTEGER NOT NULL, extra TEXT,
    PRIMARY KEY (job_id, line)) WITHOUT ROWID;
-- listed = 1 once every number and short code of the source profile is frozen into items;
-- short_codes: how many short codes were (NULL: none listed, they were left behind).
CREATE TABLE migrations (job_id INTEGER NOT NULL, from_profile_id TEXT NOT NULL,
    to_profile_id TEXT NOT NULL, line INTEGER NOT NULL, extra TEXT,
    listed INTEGER NOT NULL DEFAULT 0, listed_count INTEGER, short_codes INTEGER,
    PRIMARY KEY (job_id, from_profile_id)) WITHOUT ROWID;
""" + "".join(f"{s};\n" for s in ORDERS_DDL + STORY_DDL)
TABLES = frozenset({"meta", "jobs", "items", "rejected", "migrations", "duplicates", "orders",
                    "series", "runs"})
# What an older file may lack, as (table, column or None, statement), each added by
# ``upgrade`` only where it is missing, in order. To version 2: the orders, and the duplicates
# table and rejected.cells that came into version 1 late.
UPGRADE_1_TO_2 = (
    ("duplicates", None, DDL[DDL.index("CREATE TABLE duplicates"):].split(";")[0]),
    ("rejected", "cells", "ALTER TABLE rejected ADD COLUMN cells TEXT"),
    ("items", "order_ref", "ALTER TABLE items ADD COLUMN order_ref INTEGER"),
    ("items", "via", "ALTER TABLE items ADD COLUMN via TEXT"),
    ("orders", None, ORDERS_DDL[0]),
)
# To version 3, the change model: every item of an older file is a phone number's profile
# (resource NULL), written through its key (ref NULL); and the run's story (a job that ran
# before version 3 has no series and no runs). A table that comes with version 3 goes here as
# (name, None, its CREATE TABLE) and into DDL, and its name into TABLES.
UPGRADE_TO_3 = (
    ("items", "resource", "ALTER TABLE items ADD COLUMN resource TEXT"),
    ("items", "ref", "ALTER TABLE items ADD COLUMN ref TEXT"),
    ("migrations", "short_codes", "ALTER TABLE migrations ADD COLUMN short_codes INTEGER"),
    ("series", None, STORY_DDL[0]),
    ("runs", None, STORY_DDL[1]),
)
UPGRADES = UPGRADE_1_TO_2 + UPGRADE_TO_3
# Tables an upgradable file may lack (``upgrade`` creates them).
ADDED_TABLES = frozenset(table for table, column, _ in UPGRADES if column is None)
# TEMP (a file, temp_store=FILE): a LOADING job that dies is reloaded from its CSV anyway, so
# 1M staged rows skip the WAL and leave no free pages. Keyed by line: the first duplicate wins.
STAGED_DDL = """CREATE TEMP TABLE IF NOT EXISTS staged (job_id INTEGER NOT NULL,
    line INTEGER NOT NULL, phone_number TEXT NOT NULL, desired TEXT NOT NULL, extra TEXT,
    resource TEXT, ref TEXT, PRIMARY KEY (job_id, line)) WITHOUT ROWID"""

SESSION = (
    # FULL: with WAL, every commit syncs the log before it returns, so what a request acts
    # on (a batch's snapshot, an order in SUBMITTING, a row's prior state) survives a power
    # cut or an OS crash, not just kill -9 (NORMAL). Commits are batched (outcomes every
    # 0.25 s, a snapshot per 250 numbers, one per order), so this costs a few syncs a second.
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA temp_store = FILE",  # GROUP BY / ORDER BY over 1M rows spill to disk, not RAM
    "PRAGMA cache_size = -32768",  # 32 MiB: bounded, and enough for the unique index at 1M rows
    "PRAGMA foreign_keys = ON",
    "PRAGMA journal_size_limit = 33554432",  # the WAL shrinks back after the 1M-row load
    STAGED_DDL,
)

ITEM_COLUMNS = ("job_id, phone_number, line, desired, prior, expected, state, attempts, "
                "http_status, error_code, error_title, error_detail, note, on_account, extra, "
                "updated_at, via, resource, ref")
# ``SELECT {ITEM_COLUMNS}, id``: where the rowid sits, for keyset pages and ORDER BY.
ROWID_AT = ITEM_COLUMNS.count(",") + 1
JOB_COLUMNS = ("id, kind, name, state, created_at, updated_at, job_file, csv_path, csv_sha256, "
               "default_profile_id, parent_id, settings")


def now() -> str:  # ISO 8601 UTC, e.g. 2024-05-01T12:00:00.123Z
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dump_extra(extra: Extra) -> str | None:  # NULL when there are none: 1M rows stay small
    return json.dumps(extra, ensure_ascii=False, separators=(",", ":")) if extra else None


def load_extra(text: str | None) -> Extra:
    return tuple((str(h), str(v)) for h, v in json.loads(text)) if text else ()


def dump_settings(settings: Mapping[str, object]) -> str:
    """Settings as JSON; refuses anything named like a credential (the key never hits disk)."""
    for key in settings:
        if {"key", "apikey", "token", "secret", "password", "authorization"} & set(
                key.lower().replace("-", "_").split("_")):
            raise bug(f"refusing to store the setting {key!r}: credentials never go to disk")
    try:
        return json.dumps(dict(settings), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise bug(f"the job settings cannot be stored as JSON ({err})") from None


_STATES = {state.value: state for state in ItemState}  # faster than ItemState(value)
_RESOURCES = {None: Resource.PHONE_NUMBER} | {kind.value: kind for kind in Resource}


def item_from_row(r: tuple[Any, ...]) -> Item:
    """A row of ``SELECT {ITEM_COLUMNS}``, positionally: this runs a million times a report."""
    return Item(r[0], r[1], r[2], r[3], r[4], r[5], _STATES[r[6]], r[7], r[8], r[9], r[10], r[11],
                r[12], None if r[13] is None else bool(r[13]), load_extra(r[14]), r[15], r[16],
                _RESOURCES[r[17]], r[18])


def job_from_row(r: tuple[Any, ...]) -> JobRecord:
    return JobRecord(r[0], Kind(r[1]), r[2], JobState(r[3]), r[4], r[5], r[6], r[7], r[8], r[9],
                     r[10], MappingProxyType(json.loads(r[11])))


def sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def bug(what: str) -> JournalError:
    return JournalError(f"{what}: this is a bug in bulkops, please report it. Run the same "
                        "command again to resume from what was saved.")


def damaged(path: Path, detail: str) -> JournalError:
    return JournalError(f"the journal {path} is damaged ({detail}); it was left untouched: "
                        "restore it from a backup, or start a new journal with --journal NEW")


_ENVIRONMENT = ("SQLITE_FULL", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_READONLY", "SQLITE_PERM",
                "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_AUTH")


def translate(path: Path, err: sqlite3.Error, doing: str) -> JournalError:
    """An sqlite error as a JournalError that names the file and what to do."""
    name, detail = getattr(err, "sqlite_errorname", "") or "", str(err) or type(err).__name__
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return damaged(path, detail)
    if name.startswith(_ENVIRONMENT):
        return JournalError(f"the journal {path} failed while {doing} ({detail}): check the free "
                            "disk space, the permissions of the file and its folder, and that no "
                            "other program has it open; then run the same command to resume")
    return bug(f"the journal {path} failed while {doing} ({detail}); nothing of that step was "
               "kept")


def check_header(path: Path) -> None:
    """Refuse, before SQLite opens it, a file that is no SQLite database at all."""
    try:
        with path.open("rb") as handle:
            header = handle.read(16)
    except OSError as err:
        raise JournalError(f"cannot read the journal {path} ({err.strerror}): check its owner and "
                           "permissions, or choose another --journal") from None
    if header != b"SQLite format 3\x00":
        raise JournalError(f"{path} is not a bulkops journal (" + ("it is empty: a run may have "
                           "been stopped while creating it" if not header else "not an SQLite "
                           "database") + "); it was left untouched: check the --journal path, "
                           "delete it, or choose a new one")


async def connect(path: Path, *, read_only: bool, immutable: bool = False) -> aiosqlite.Connection:
    """Autocommit (transactions are explicit). ``immutable``: the file alone, nothing created
    beside it, to check a file without a WAL before anything touches it."""
    uri = f"file:{quote(str(path.absolute()))}?mode=ro" + ("&immutable=1" if immutable else "")
    target = uri if read_only or immutable else str(path)
    conn = await aiosqlite.connect(target, uri=target is uri, isolation_level=None)
    try:
        if target is not uri:
            mode = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
            if not mode or str(mode[0][0]).lower() != "wal":
                raise JournalError(f"the journal {path} cannot use write-ahead logging: put it "
                                   "on a local disk (not a network share)")
        for statement in SESSION:
            await conn.execute(statement)
    except BaseException:
        await conn.close()
        raise
    return conn


async def initialize(db: aiosqlite.Connection, job: tuple[object, ...]) -> None:
    """Schema, meta and job 1 (LOADING) of a new journal: ``job`` is (kind, name, job_file,
    csv_path, csv_sha256, default_profile_id, settings JSON)."""
    for statement in filter(str.strip, DDL.split(";")):
        await db.execute(statement)
    stamp = now()
    await db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
        ("app", APP), ("schema_version", str(SCHEMA_VERSION)), ("created_at", stamp)])
    await db.execute(f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({CSV_JOB}, ?1, ?2, 'loading', ?8, ?8, ?3, "
                     "?4, ?5, ?6, NULL, ?7)", (*job, stamp))


async def present(conn: aiosqlite.Connection, table: str, column: str | None = None) -> bool:
    """Whether ``table`` (and its ``column``) exists: a version-1 file may lack some."""
    if column is None:
        return bool(list(await conn.execute_fetchall(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,))))
    return column in {r[1] for r in await conn.execute_fetchall(f"PRAGMA table_info({table})")}


async def validate(conn: aiosqlite.Connection, path: Path) -> str:
    """Refuse anything but an intact bulkops journal of our schema version, or of one we can
    upgrade (read-only); returns its version."""
    not_ours = JournalError(f"{path} is an SQLite database but not a bulkops journal; it was "
                            "left untouched: check the --journal path, or choose a new one")
    tables = {r[0] for r in await conn.execute_fetchall(
        "SELECT name FROM sqlite_schema WHERE type = 'table'")}
    try:  # a "meta" table of another application may have other columns
        meta = {str(k): str(v) for k, v in await conn.execute_fetchall(
            "SELECT key, value FROM meta" if "meta" in tables else "SELECT 1, 2 WHERE 0")}
    except sqlite3.OperationalError:
        meta = {}
    if meta.get("app") != APP:
        raise not_ours
    if (version := meta.get("schema_version")) != str(SCHEMA_VERSION) and version not in UPGRADABLE:
        raise JournalError(f"{path} is a bulkops journal of schema version {version}, this "
                           f"bulkops reads version {SCHEMA_VERSION}; it was left untouched: use "
                           "the bulkops that wrote it, or start a new journal with --journal NEW")
    if missing := TABLES - tables - (ADDED_TABLES if version in UPGRADABLE else set()):
        raise damaged(path, "missing tables: " + ", ".join(sorted(missing)))
    # Reads every page: catches a truncated file or torn pages (about 0.5 s at 1M rows).
    problems = [str(r[0]) for r in await conn.execute_fetchall("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise damaged(path, "; ".join(problems))
    return str(version)


async def upgrade(db: aiosqlite.Connection) -> None:
    """Version 1 or 2 -> 3 in one transaction (the caller's): what the file lacks is added
    (new columns are NULL, which is what a job that never used orders has, or their default:
    every older item is a phone number's profile; a job that ran before version 3 has no
    series and no runs); nothing else changes."""
    for table, column, statement in UPGRADES:
        if not await present(db, table, column):
            await db.execute(statement)
    for statement in ORDERS_DDL[1:] + STORY_DDL[2:]:  # the indexes
        await db.execute(statement.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS"))
    await db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION),))


def access_problem(path: Path) -> JournalAccessError | None:
    """Why the journal ``path`` cannot be created or written where it is, if that is why an
    open or a create failed: a read-only folder (or file, or file system) is the --journal
    path's problem, not a damaged journal."""
    folder = path.parent
    if folder.is_dir() and not os.access(folder, os.W_OK):
        return JournalAccessError(
            f"the folder {folder} of the journal {path} cannot be written (read-only, or not "
            "yours): bulkops keeps the journal, its lock file and its write-ahead log side by "
            "side there. Make the folder writable, or pass --journal with a path in a folder you "
            "can write; nothing was sent")
    if path.is_file() and not os.access(path, os.W_OK):
        return JournalAccessError(
            f"the journal {path} is read-only: make it writable (chmod u+w {path}) to resume it, "
            "or pass a new --journal to start a new job; `bulkops status` and `bulkops report` "
            "read it as it is; nothing was sent")
    return None


def lock_held(journal: Path) -> bool:
    """Whether a live process holds the journal's lock (a run writing it), without taking it
    for longer than one shared flock: `status` tells a live run from one killed meanwhile (the
    OS dropped its lock; the journal still says RUNNING)."""
    try:
        fd = os.open(sidecar(journal, ".lock"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: no run ever held it here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # no locks on this file system: the run could not have held one either
    finally:
        os.close(fd)  # releases the shared lock at once
    return False


def lock_file(journal: Path) -> int:
    """flock on ``<journal>.lock`` (holding our pid): the OS drops it if we die, never stale."""
    path = sidecar(journal, ".lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise access_problem(journal) or JournalError(
            f"cannot create the lock file {path} ({err.strerror}): check that the folder exists "
            "and is writable") from None
    try:
        for pause in (0.005, 0.02, 0.05, 0):  # `status` holds a shared lock for an instant
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not pause:
                    raise
                time.sleep(pause)
    except OSError as err:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if not isinstance(err, BlockingIOError):
            raise JournalError(f"cannot lock {path} ({err.strerror}): put the journal on a "
                               "local disk that supports file locks") from None
        pid = f" (pid {holder})" if holder.isdigit() else ""
        raise JournalLockedError(f"the journal {journal} is in use by another bulkops process"
                                 f"{pid}; wait for it to finish, or stop it, then run the "
                                 "command again") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd

"""The journal's data statements: per-row updates, staging, duplicates, rollback.

Each per-row statement finds its row through the unique (job_id, phone_number) index
(tests/test_journal_states.py pins the query plans): a job of a million rows never scans itself
once per row or per batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bulkops.journal.records import ItemUpdate, SnapshotEntry
from bulkops.journal.states import ItemState

_P, _D, _F = ItemState.PENDING, ItemState.DONE, ItemState.FAILED


# Guarded by the from-state: an update never lands on an item that moved meanwhile.
# :fresh (DONE, or FAILED -> PENDING) clears the error; :retry also clears status and note.
FLUSH_SQL = """UPDATE items SET state = :to, attempts = COALESCE(:attempts, attempts),
 http_status = CASE WHEN :http IS NOT NULL THEN :http WHEN :retry THEN NULL ELSE http_status END,
 error_code = CASE WHEN :err THEN :code WHEN :fresh THEN NULL ELSE error_code END,
 error_title = CASE WHEN :err THEN :title WHEN :fresh THEN NULL ELSE error_title END,
 error_detail = CASE WHEN :err THEN :detail WHEN :fresh THEN NULL ELSE error_detail END,
 note = CASE WHEN :note IS NOT NULL THEN :note WHEN :retry THEN NULL ELSE note END,
 updated_at = :now WHERE job_id = :job AND phone_number = :number AND state = :from"""


# The common outcome (a write that landed) in a statement with no CASE and positional
# parameters: about a third of FLUSH_SQL's cost per row. Same effect as FLUSH_SQL for it.
DONE_SQL = ("UPDATE items SET state = 'done', attempts = ?, http_status = ?, error_code = NULL, "
            "error_title = NULL, error_detail = NULL, updated_at = ? "
            "WHERE job_id = ? AND phone_number = ? AND state = ?")


def _general(u: ItemUpdate, stamp: str) -> dict[str, object]:
    err, retry = u.error, u.from_state is _F and u.to_state is _P
    return {"to": u.to_state.value, "from": u.from_state.value, "job": u.job_id, "now": stamp,
            "number": u.phone_number, "attempts": u.attempts, "note": u.note, "retry": retry,
            "http": u.http_status if u.http_status is not None or err is None else err.status,
            "err": err is not None, "code": err and err.code, "title": err and err.title,
            "detail": err and err.detail, "fresh": retry or u.to_state is _D}


def flush_statements(updates: Sequence[ItemUpdate],
                     stamp: str) -> list[tuple[str, list[Any]]]:
    """``updates`` as (SQL, parameter rows) for executemany, in order: a row's later update
    may depend on its earlier one (``state = :from``), so only consecutive runs are grouped."""
    runs: list[tuple[str, list[Any]]] = []
    for u in updates:
        plain = (u.to_state is _D and u.error is None and u.note is None
                 and u.attempts is not None and u.http_status is not None)
        sql = DONE_SQL if plain else FLUSH_SQL
        if not runs or runs[-1][0] is not sql:
            runs.append((sql, []))
        runs[-1][1].append((u.attempts, u.http_status, stamp, u.job_id, u.phone_number,
                            u.from_state.value) if plain else _general(u, stamp))
    return runs


# A known prior is never overwritten: it is what rollback restores. It is recorded by the
# first snapshot, before any write, so a later snapshot (a resume) that finds a number on
# its target although its prior was elsewhere sees a write of ours that landed but was
# never recorded: that row is done, confirmed by read-back, and is not sent again.
# Rollback items (expected set) whose number moved since the job are left alone unless :force.
# Parameters by number (?1 job, ?2 number, ?3 current profile, ?4 force, ?5 on the account,
# ?6 now, ?7 why): a tuple per row binds in about half the time of a dict of names.
# A job's number the API does not know (?3 NULL) fails without a request: a write would only
# be refused (404), and a whole job of them (a key of another account) would be a storm.
_CHANGED = "expected IS NOT NULL AND NOT ?4 AND ?3 IS NOT expected"
_LANDED = "prior IS NOT NULL AND prior <> desired"
# A write that landed unrecorded was a PATCH (attempts at least 1: the report's via says
# "patch"), unless the row's last order is one whose id was lost: then that order applied it.
_LOST_ORDER = ("(SELECT COALESCE(o.order_id, 'bulk order (its id was lost)') FROM orders o "
               "WHERE o.id = order_ref AND o.state = 'lost')")
_UNKNOWN = "?3 IS NULL AND expected IS NULL"
NOT_ON_ACCOUNT_TITLE = "not on this account"
NOT_ON_ACCOUNT_NOTE = ("read back before any write: the API does not know this number (or short "
                       "code), so no request was sent; check it, and that the API key is of the "
                       "account (not a sub-account) that holds it")
SNAPSHOT_SQL = f"""UPDATE items SET prior = COALESCE(prior, ?3), on_account = ?5,
 attempts = CASE WHEN ?3 = desired AND {_LANDED} AND order_ref IS NULL THEN MAX(attempts, 1)
  WHEN ?3 = desired AND {_LANDED} THEN (CASE WHEN {_LOST_ORDER} IS NULL THEN MAX(attempts, 1)
  ELSE attempts END) ELSE attempts END,
 via = CASE WHEN ?3 = desired AND {_LANDED} AND order_ref IS NOT NULL
  THEN COALESCE(via, {_LOST_ORDER}) ELSE via END,
 state = CASE WHEN ?3 = desired THEN (CASE WHEN {_LANDED} THEN 'done' ELSE 'skipped' END)
  WHEN {_UNKNOWN} THEN 'failed' WHEN {_CHANGED} THEN 'skipped' ELSE state END,
 note = CASE WHEN ?3 = desired THEN (CASE WHEN {_LANDED} THEN 'confirmed by read-back'
  ELSE 'already in place' END) WHEN {_UNKNOWN} THEN '{NOT_ON_ACCOUNT_NOTE}'
  WHEN {_CHANGED} THEN ?7 ELSE note END,
 error_title = CASE WHEN {_UNKNOWN} THEN '{NOT_ON_ACCOUNT_TITLE}' ELSE error_title END,
 updated_at = ?6 WHERE job_id = ?1 AND phone_number = ?2 AND state = 'pending'"""


CHANGED_SINCE = "changed since the job"  # the note of a rollback row left alone


def snapshot_params(job_id: int, entries: Sequence[SnapshotEntry], force: bool,
                    stamp: str) -> list[tuple[object, ...]]:
    return [(job_id, e.phone_number, e.current, force, e.current is not None, stamp,
             f"{CHANGED_SINCE}: now " + (
                 "not on this account" if e.current is None else e.current or "unassigned"))
            for e in entries]


# Staged rows are scanned in line order, so of duplicate lines the first one becomes the item.
STAGE_TO_ITEMS = """INSERT INTO items (job_id, phone_number, line, desired, state, attempts,
 extra, updated_at, resource, ref) SELECT job_id, phone_number, line, desired, 'pending', 0,
 extra, ?, resource, ref FROM staged WHERE job_id = ? ORDER BY line ON CONFLICT (job_id, phone_number) DO NOTHING"""
_LATER_LINES = """FROM staged s JOIN items i ON i.job_id = s.job_id AND
 i.phone_number = s.phone_number WHERE s.job_id = ? AND s.line <> i.line"""
DUPLICATE_COUNTS = ("SELECT COALESCE(SUM(s.desired = i.desired), 0), "
                    f"COALESCE(SUM(s.desired <> i.desired), 0) {_LATER_LINES}")
COLLAPSED_LINES = f"SELECT s.line {_LATER_LINES} AND s.desired = i.desired ORDER BY s.line LIMIT 20"
KEEP_DUPLICATES = ("INSERT INTO duplicates (job_id, line, phone_number, desired, first_line, extra) "
                   f"SELECT s.job_id, s.line, s.phone_number, s.desired, i.line, s.extra {_LATER_LINES} "
                   "AND s.desired = i.desired")
CONFLICTS = (f"SELECT s.phone_number, i.line, i.desired, s.line, s.desired {_LATER_LINES} "
             "AND s.desired <> i.desired ORDER BY s.line LIMIT 50")

# Every number the job changed is DONE (a write that landed unrecorded is confirmed DONE
# by the next snapshot), so DONE rows with a known, different prior are what to undo.
ROLLBACK_ITEMS = """INSERT INTO items (job_id, phone_number, line, desired, prior, expected,
 state, attempts, extra, updated_at, resource, ref)
 SELECT ?, phone_number, line, prior, desired, desired, 'pending', 0, extra, ?, resource, ref
 FROM items
 WHERE job_id = ? AND prior IS NOT NULL AND prior <> desired AND state = 'done' ORDER BY id"""

DISTINCT_DESIRED = """SELECT desired, line FROM (SELECT desired, line,
 ROW_NUMBER() OVER (PARTITION BY desired ORDER BY line) AS rn FROM (
 SELECT desired, line FROM items WHERE job_id = ?1 AND desired <> '' UNION ALL
 SELECT desired, line FROM staged WHERE job_id = ?1 AND desired <> ''))
 WHERE rn <= 5 ORDER BY desired, line"""


def pending_among_sql(count: int) -> str:
    # "+state": not an index term, so SQLite looks each number up in the unique index; on
    # (job_id, state) it would scan every pending row of the job for each batch (quadratic).
    return ("SELECT phone_number FROM items WHERE job_id = ? AND +state = 'pending' AND "
            f"phone_number IN ({','.join('?' * count)})")

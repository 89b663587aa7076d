"""Schema 3 (the change model): a journal the release before it wrote (version 2) opens,
is upgraded in place under the lock in one transaction, resumes and rolls back exactly."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from bulkops.config import Secret
from bulkops.errors import JournalLockedError
from bulkops.jobs import JobRequest, rollback, run_job
from bulkops.journal.sqlite import SCHEMA_VERSION, lock_file
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops.models import Kind, Resource
from tests.conftest import SandboxFactory
from tests.harness import read_report
from tests.jobhelpers import journal_items, patches, settings_for

DATA = Path(__file__).resolve().parent / "data"
V2_JOURNAL = DATA / "journal-v2-migrate.db"  # written by tests/data/make_journal_v2.py


def v2_copy(tmp_path: Path) -> tuple[Path, Path]:
    journal, csv_path = tmp_path / "v2.db", tmp_path / "v2.csv"
    shutil.copyfile(V2_JOURNAL, journal)
    shutil.copyfile(V2_JOURNAL.with_suffix(".csv"), csv_path)
    return journal, csv_path


def version_of(path: Path) -> str:
    with sqlite3.connect(path) as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    db.close()
    return str(value)


async def test_a_version_2_journal_of_the_last_release_is_upgraded_and_resumes_exactly(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    journal, csv_path = v2_copy(tmp_path)
    assert version_of(journal) == "2"
    # The sandbox it ran on, with the 10 writes the interrupted run made.
    async with sandbox_factory(numbers=60, profiles=3, seed=21) as sandbox:
        source, target, _ = sandbox.profile_ids()
        before = sandbox.dump()
        items = await journal_items(journal)  # a read-only open upgrades it too
        assert version_of(journal) == str(SCHEMA_VERSION)
        assert all(i.resource is Resource.PHONE_NUMBER and i.ref is None for i in items.values())
        done = [n for n, i in items.items() if i.state is ItemState.DONE]
        assert len(done) == 10 and len(items) == 16
        for number in done:
            sandbox.set_profile(number, target)
        request = JobRequest(Kind.MIGRATE, csv_path, journal, "v2-migrate")
        result = await run_job(request, settings_for(sandbox, mode="patch"), Secret(sandbox.api_key))
        assert result.exit_code == 0 and result.job.state.value == "finished"
        assert patches(sandbox) == 6  # only the rows it had not sent
        assert all(sandbox.profile_of(n) == target for n in items)
        assert sandbox.stats.count(route="GET /v2/messaging_profiles/{id}/short_codes") == 0
        report = read_report(tmp_path / "v2.report.csv")
        assert {r["resource"] for r in report} == {"phone_number"}
        undone = await rollback(journal, settings_for(sandbox), Secret(sandbox.api_key))
        assert undone.exit_code == 0
        assert sandbox.dump() == before


async def test_the_upgrade_to_3_adds_the_change_model_columns_and_changes_nothing_else(
        tmp_path: Path) -> None:
    journal, _ = v2_copy(tmp_path)
    with sqlite3.connect(journal) as db:
        rows_before = db.execute("SELECT * FROM items ORDER BY id").fetchall()
    db.close()
    async with await Journal.open(journal):
        pass
    with sqlite3.connect(journal) as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(items)")]
        assert columns[-2:] == ["resource", "ref"]
        rows_after = db.execute("SELECT * FROM items ORDER BY id").fetchall()
        assert [r[:-2] for r in rows_after] == rows_before
        assert {r[-2:] for r in rows_after} == {(None, None)}  # NULL: a phone number
        assert "short_codes" in [r[1] for r in db.execute("PRAGMA table_info(migrations)")]
    db.close()


async def test_a_version_2_journal_an_older_bulkops_holds_is_refused_and_left_as_it_is(
        tmp_path: Path) -> None:
    journal, _ = v2_copy(tmp_path)
    held = lock_file(journal)  # the older bulkops running it
    try:
        with pytest.raises(JournalLockedError, match="schema version 2 in use by another bulkops"):
            await Journal.open(journal, lock=False)
    finally:
        os.close(held)
    assert version_of(journal) == "2"

"""The journal is durable before the server can act: a power cut loses nothing a write used.

Each write's request is looked at from the server's side as it arrives, through a sandbox
hook that reads the journal file from a second connection: what that connection sees is
committed, and every commit of the journal is synced (``synchronous = FULL`` with WAL), so
what it sees would survive an OS crash or a power cut as well as kill -9.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

from bulkops.config import Secret
from bulkops.execute import make_client
from bulkops.journal.records import ItemUpdate
from bulkops.journal.sqlite import connect
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops.models import Kind
from bulkops.runner import StopSignal
from bulkops.sandbox import Sandbox
from bulkops.snapshot import take_snapshot
from tests.conftest import SandboxFactory
from tests.harness import write_assign_csv
from tests.jobhelpers import run, settings_for
from tests.orders_kit import loaded_not_sent

SYNCHRONOUS_FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA


def mixed_rows(sandbox: Sandbox, count: int) -> list[tuple[str, str]]:
    rng = random.Random(3)
    dump = sandbox.dump()
    return [(n, rng.choice([p for p in sandbox.profile_ids() if p != dump[n]]))
            for n in sandbox.numbers()[:count]]


class JournalWitness:
    """Reads the journal from its own connection as each write reaches the sandbox."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.patched: list[tuple[str, str | None, str]] = []  # (number, prior, state)
        self.ordered: list[tuple[str, str | None, str, str | None]] = []  # + the order's state
        self.problems: list[str] = []

    def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        uri = f"file:{self.journal.absolute()}?mode=ro"
        with sqlite3.connect(uri, uri=True) as db:
            rows = db.execute(sql, params).fetchall()
        db.close()
        return rows

    async def __call__(self, request: web.Request) -> None:
        if request.method == "PATCH":
            number = unquote(request.path.split("/")[3])
            rows = self._read("SELECT prior, state FROM items WHERE phone_number = ?", (number,))
            if len(rows) != 1:
                self.problems.append(f"{number} not in the journal when its PATCH arrived")
                return
            self.patched.append((number, rows[0][0], str(rows[0][1])))  # type: ignore[arg-type]
        elif request.method == "POST" and "bulk" in request.path:
            for number in json.loads(await request.read())["numbers"]:
                rows = self._read("SELECT i.prior, i.state, o.state FROM items i LEFT JOIN "
                                  "orders o ON o.id = i.order_ref WHERE i.phone_number = ?",
                                  (number,))
                if len(rows) != 1:
                    self.problems.append(f"{number} not in the journal when its order arrived")
                    continue
                prior, state, order = rows[0]
                self.ordered.append((number, prior, str(state), order))  # type: ignore[arg-type]


async def test_every_journal_connection_syncs_each_commit(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    sqlite3.connect(path).close()
    conn = await connect(path, read_only=False)
    try:
        rows = list(await conn.execute_fetchall("PRAGMA synchronous"))
        mode = list(await conn.execute_fetchall("PRAGMA journal_mode"))
    finally:
        await conn.close()
    assert rows[0][0] == SYNCHRONOUS_FULL and str(mode[0][0]).lower() == "wal"


async def test_a_numbers_prior_state_is_committed_before_its_patch_arrives(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    async with sandbox_factory(numbers=300, profiles=3, seed=4) as sandbox:
        rows = mixed_rows(sandbox, 250)
        before = sandbox.dump()
        journal = tmp_path / "patch.db"
        witness = JournalWitness(journal)
        sandbox.on_write(witness)
        result = await run(sandbox, Kind.ASSIGN, write_assign_csv(tmp_path / "a.csv", rows),
                           journal, mode="patch")
        sandbox.on_write(None)
    assert result.exit_code == 0 and not witness.problems
    assert len(witness.patched) == len(rows)
    # The prior each PATCH could overwrite was already committed, and it is the true one.
    assert all(prior == (before[number] or "") for number, prior, _ in witness.patched)
    assert {state for *_, state in witness.patched} <= {"pending", "in_flight"}


async def test_an_orders_numbers_and_priors_are_committed_submitting_before_its_post_arrives(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    async with sandbox_factory(numbers=500, profiles=3, seed=6, bulk_speed=5000) as sandbox:
        rows = mixed_rows(sandbox, 400)
        before = sandbox.dump()
        journal = tmp_path / "bulk.db"
        witness = JournalWitness(journal)
        sandbox.on_write(witness)
        result = await run(sandbox, Kind.ASSIGN, write_assign_csv(tmp_path / "b.csv", rows),
                           journal, mode="bulk", bulk_size=100)
        sandbox.on_write(None)
    assert result.exit_code == 0 and not witness.problems
    assert {n for n, *_ in witness.ordered} == {n for n, _ in rows}
    assert all(state == "ordered" and order == "submitting" for _, _, state, order in witness.ordered)
    assert all(prior == (before[number] or "") for number, prior, *_ in witness.ordered)


# --- a resume right after a crash reads nothing twice ---------------------------------------

READS = "GET /v2/phone_numbers/messaging"


async def test_a_resume_does_not_read_again_rows_read_a_moment_ago_and_never_sent(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    async with sandbox_factory(numbers=700, profiles=3, seed=8) as sandbox:
        rows = mixed_rows(sandbox, 600)
        request = await loaded_not_sent(sandbox, tmp_path, rows)  # snapshotted, nothing sent
        settings = settings_for(sandbox)
        async with await Journal.open(request.journal_path) as journal:
            client = make_client(settings, Secret(sandbox.api_key))
            async with client:
                before = sandbox.stats.count(route=READS)
                fresh = await take_snapshot(journal, 1, client, stop=StopSignal(),
                                            fresh_after="2000-01-01T00:00:00.000Z")
                skipped = sandbox.stats.count(route=READS) - before
                stale = await take_snapshot(journal, 1, client, stop=StopSignal(),
                                            fresh_after="9999-01-01T00:00:00.000Z")
                reread = sandbox.stats.count(route=READS) - before - skipped
    assert fresh.error is None and stale.error is None
    assert skipped == 0  # every row was read since then and never sent
    assert reread == 3  # read longer ago than that: all 600 again, 250 per request


async def test_a_resume_reads_again_a_row_that_was_in_flight_at_the_crash(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    async with sandbox_factory(numbers=400, profiles=3, seed=8) as sandbox:
        rows = mixed_rows(sandbox, 300)
        request = await loaded_not_sent(sandbox, tmp_path, rows)
        async with await Journal.open(request.journal_path) as journal:
            journal.record(ItemUpdate(1, rows[0][0], ItemState.PENDING, ItemState.IN_FLIGHT))
            await journal.flush()  # its PATCH may have landed when the process died
            assert await journal.reset_in_flight(1) == 1
            client = make_client(settings_for(sandbox), Secret(sandbox.api_key))
            async with client:
                before = sandbox.stats.count(route=READS)
                box = await take_snapshot(journal, 1, client, stop=StopSignal(),
                                          fresh_after="2000-01-01T00:00:00.000Z")
                reads = sandbox.stats.count(route=READS) - before
    assert box.error is None and reads == 1  # that row alone, the others were read already

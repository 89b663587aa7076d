"""kill -9 at seeded random moments, resume with the same command, end exactly right.

`bulkops run` runs in a child process against a sandbox served by this test's event loop,
with 20-40 ms of latency per request so that kills land while PATCHes are on the wire. The
kill moments alternate between two aims:

- "offset": a seeded random offset (0-500 ms) after the child's first request reaches the
  sandbox, so kills also land in the profile check and the snapshot, not only in writes;
- "flush": once the child is writing, watch the journal's ``-wal`` file and kill the moment
  its size or mtime changes for the 1st-3rd time (seeded). The flusher commits a batch every
  250 ms and a commit is what changes the WAL, so these kills land inside or right after a
  journal flush, where a lost or torn batch would show.

Whatever the moment, the job must end with every number on its target, every row DONE or
SKIPPED, and no number written more than once per kill that may have caught it in flight.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bulkops.journal.states import ItemState
from bulkops.sandbox import FaultConfig, Sandbox
from tests.conftest import SandboxFactory
from tests.harness import cli_command, cli_env, file_signature, journal_snapshot, write_assign_csv
from tests.poll_kit import wait_until

ROWS = 500
CONCURRENCY = 2  # slow enough that a dozen kills fit in one job, fast enough to stay ~20 s
MIN_KILLS = 10
MAX_KILLS = 12
SEED = 20_240_501
POLL = 0.002  # seconds between looks at the sandbox counters and the WAL


@dataclass(frozen=True)
class Kill:
    """One planned kill: how it is aimed, and its seeded parameter."""

    aim: str  # "offset" or "flush"
    offset: float = 0.0  # seconds after the first request ("offset")
    flushes: int = 1  # WAL changes to let pass during writes ("flush")


def kill_plan(rng: random.Random) -> list[Kill]:
    return [
        Kill("offset", offset=rng.uniform(0.0, 0.5)) if i % 2 == 0 else Kill("flush", flushes=rng.randint(1, 3))
        for i in range(MAX_KILLS)
    ]


async def _aim(kill: Kill, sandbox: Sandbox, wal: Path, requests_before: int, writes_before: int,
               process: asyncio.subprocess.Process) -> bool:
    """Wait (polling, with a deadline) for the moment ``kill`` aims at; False if the child exited first."""
    def alive() -> bool:
        return process.returncode is None

    if kill.aim == "offset":
        await wait_until(lambda: not alive() or sandbox.stats.total_requests > requests_before, within=30,
                         what="the child's first request", every=POLL)
        # The randomized offset is the thing under test (where in the job the kill lands), not a wait.
        await asyncio.sleep(kill.offset)
        return alive()
    await wait_until(lambda: not alive() or sandbox.stats.writes_applied > writes_before, within=30,
                     what="the child's first applied write", every=POLL)
    seen = file_signature(wal)
    changes = 0

    def flushed() -> bool:  # counts each change of the WAL seen since the last look
        nonlocal seen, changes
        now = file_signature(wal)
        if now != seen:
            changes, seen = changes + 1, now
        return changes >= kill.flushes

    await wait_until(lambda: not alive() or flushed(), within=30,
                     what=f"{kill.flushes} changes of the journal's WAL after the first write", every=POLL)
    return alive()


async def test_kill_9_at_random_moments_then_resume_ends_exact_with_bounded_rewrites(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    faults = FaultConfig(latency_ms=30, jitter_ms=10, seed=3)
    async with sandbox_factory(numbers=1_200, profiles=3, seed=11, faults=faults) as sandbox:
        target = sandbox.profile_ids()[0]
        before = sandbox.dump()
        numbers = [n for n, profile in before.items() if profile != target][:ROWS]
        assert len(numbers) == ROWS
        csv_path = write_assign_csv(tmp_path / "numbers.csv", ((n, target) for n in numbers))
        journal = tmp_path / "numbers.journal.db"
        wal = journal.with_name(journal.name + "-wal")
        args = cli_command(
            "run", "--kind", "assign", "--csv", csv_path, "--journal", journal,
            "--base-url", sandbox.base_url, "--yes", "--json", "--concurrency", str(CONCURRENCY),
            "--timeout", "10", "--max-attempts", "10",
            "--mode", "patch",  # the PATCH path; tests/test_bulk_orders.py kills bulk runs
        )
        env = cli_env(sandbox.api_key)

        kills: list[Kill] = []
        final_code: int | None = None
        logs: list[Path] = []
        for attempt, kill in enumerate([*kill_plan(random.Random(SEED)), None]):
            out, err = tmp_path / f"run{attempt}.stdout", tmp_path / f"run{attempt}.stderr"
            logs.append(err)
            requests_before, writes_before = sandbox.stats.total_requests, sandbox.stats.writes_applied
            with open(out, "wb") as stdout, open(err, "wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    *args, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=stderr
                )
            try:
                if kill is not None and await _aim(kill, sandbox, wal, requests_before, writes_before, process):
                    process.kill()  # SIGKILL: no handler, no flush, no cleanup
                    await process.wait()
                    kills.append(kill)
                    continue
                code = await asyncio.wait_for(process.wait(), 60)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            final_code = code
            break

        # The last run finished the job by itself, and the job was long enough for the kills.
        assert final_code == 0, err.read_text() + out.read_text()
        assert len(kills) >= MIN_KILLS, f"the job finished after only {len(kills)} kills: {kills}"
        summary = json.loads(out.read_text())
        assert summary["state"] == "finished"
        for log in logs:
            assert "Traceback" not in log.read_text(), log.read_text()

        # Every number is on its target; numbers outside the CSV were never touched.
        after = sandbox.dump()
        assert {n: after[n] for n in numbers} == dict.fromkeys(numbers, target)
        assert {n: p for n, p in after.items() if n not in numbers} == {
            n: p for n, p in before.items() if n not in numbers
        }

        # The journal agrees: every row DONE or SKIPPED, none pending, in flight or failed.
        counts, items = await journal_snapshot(journal)
        assert set(items) == set(numbers)
        states = Counter(item.state for item in items.values())
        assert set(states) <= {ItemState.DONE, ItemState.SKIPPED}, states
        assert counts.get(ItemState.DONE) + counts.get(ItemState.SKIPPED) == ROWS
        # The kills did catch writes that landed unrecorded: resume confirmed them by read-back.
        assert any(item.note == "confirmed by read-back" for item in items.values()), (
            "no kill caught a write in flight; the kill moments no longer exercise resume"
        )
        assert all(item.prior == (before[n] or "") for n, item in items.items()), (
            "a journaled prior profile is not the number's original one: rollback would restore the wrong one"
        )

        # Writes: a number is re-sent only when a kill caught it in flight, and a kill catches
        # at most CONCURRENCY rows in flight.
        writes = sandbox.stats.writes_by_number
        assert set(writes) == set(numbers)
        assert max(writes.values()) <= 1 + len(kills), writes.most_common(5)
        assert sum(writes.values()) - len(writes) <= len(kills) * CONCURRENCY, writes.most_common(5)

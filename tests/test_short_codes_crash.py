"""kill -9 during a migrate that moves short codes, then resume: exact, nothing lost, no
short code written again unless a kill caught it in flight; rollback after it is exact too."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bulkops.config import Secret
from bulkops.jobs import rollback
from bulkops.journal.states import ItemState
from bulkops.models import Resource
from bulkops.sandbox import FaultConfig
from tests.conftest import SandboxFactory
from tests.harness import Deadline, cli_command, cli_env, journal_snapshot
from tests.jobhelpers import settings_for, write_csv

KILLS = 4
CONCURRENCY = 2
POLL = 0.002


async def test_kill_9_mid_migrate_then_resume_moves_every_short_code_exactly_once_more_at_most(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    faults = FaultConfig(latency_ms=30, jitter_ms=10, seed=5)
    async with sandbox_factory(numbers=20, profiles=2, short_codes=60, seed=9,
                               faults=faults) as sandbox:
        source, target = sandbox.profile_ids()
        before_numbers, before_codes = sandbox.dump(), sandbox.short_codes()
        moving = sorted(c for c, p in before_codes.items() if p == source)
        numbers = sorted(n for n, p in before_numbers.items() if p == source)
        assert len(moving) >= 20
        csv_path = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"],
                             [[source, target]])
        journal = tmp_path / "m.db"
        args = cli_command("run", "--kind", "migrate", "--csv", csv_path, "--journal", journal,
                           "--base-url", sandbox.base_url, "--yes", "--json", "--concurrency",
                           str(CONCURRENCY), "--timeout", "10", "--mode", "patch")
        kills, code, out = 0, None, tmp_path / "out"
        for attempt in range(KILLS + 1):
            writes_before = sandbox.stats.writes_applied
            with open(out, "wb") as stdout, open(tmp_path / f"err{attempt}", "wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    *args, env=cli_env(sandbox.api_key), stdin=asyncio.subprocess.DEVNULL,
                    stdout=stdout, stderr=stderr)
            try:
                if attempt < KILLS:  # kill once a few more writes have landed
                    deadline = Deadline(30.0)
                    while process.returncode is None and \
                            sandbox.stats.writes_applied < writes_before + 3 + 2 * attempt:
                        assert not deadline.passed, "the child applied no write within 30 s"
                        await asyncio.sleep(POLL)
                    if process.returncode is None:
                        process.kill()  # SIGKILL: no handler, no flush
                        await process.wait()
                        kills += 1
                        continue
                code = await asyncio.wait_for(process.wait(), 60)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            break
        assert code == 0, (tmp_path / f"err{attempt}").read_text()
        assert kills >= 2
        assert json.loads(out.read_text())["state"] == "finished"
        assert all("Traceback" not in p.read_text() for p in tmp_path.glob("err*"))
        after = sandbox.short_codes()
        assert {c: after[c] for c in moving} == dict.fromkeys(moving, target)
        assert {c: p for c, p in after.items() if c not in moving} == \
            {c: p for c, p in before_codes.items() if c not in moving}
        assert all(sandbox.profile_of(n) == target for n in numbers)
        counts, items = await journal_snapshot(journal)
        codes = {k: i for k, i in items.items() if i.resource is Resource.SHORT_CODE}
        assert set(codes) == set(moving)
        assert {i.state for i in items.values()} <= {ItemState.DONE, ItemState.SKIPPED}
        assert all(i.prior == source for i in codes.values())  # what rollback restores
        writes = sandbox.stats.writes_by_number
        assert max(writes[c] for c in moving) <= 1 + kills
        assert sum(writes[c] for c in moving) - len(moving) <= kills * CONCURRENCY
        undone = await rollback(journal, settings_for(sandbox), Secret(sandbox.api_key))
        assert undone.exit_code == 0
        assert sandbox.short_codes() == before_codes and sandbox.dump() == before_numbers

"""Writes tests/data/journal-v2-migrate.db with the release before schema 3 (commit b24d251).

Run from a checkout of that release (``git archive b24d251 bulkops | tar -x -C DIR``), with
PYTHONPATH=DIR. A migrate of the first profile to the second, on the sandbox of
``SandboxConfig(numbers=60, profiles=3, seed=21)``: listed, snapshotted, its first
``WRITTEN`` numbers done (the sandbox they ran on has them moved), then interrupted, as a run
stopped by Ctrl-C leaves it. tests/test_journal_v3.py opens it with this bulkops.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bulkops.config import RunSettings, Secret
from bulkops.execute import make_client, snapshot_pending
from bulkops.input.loading import freeze_migrations
from bulkops.jobs import JobRequest, _load, _open_or_create
from bulkops.journal.records import ItemUpdate
from bulkops.journal.states import ItemState, JobState
from bulkops.models import Kind
from bulkops.runner import StopSignal
from bulkops.sandbox import SandboxConfig, running_sandbox

WRITTEN = 10


async def main(out: Path) -> None:
    async with running_sandbox(SandboxConfig(numbers=60, profiles=3, seed=21)) as sandbox:
        source, target, _ = sandbox.profile_ids()
        csv_path = out.with_suffix(".csv")
        csv_path.write_text(f"from_profile_id,to_profile_id\n{source},{target}\n")
        settings = RunSettings(base_url=sandbox.base_url, assume_yes=True)
        request = JobRequest(Kind.MIGRATE, csv_path, out, "v2-migrate")
        journal, created = await _open_or_create(request, settings)
        async with make_client(settings, Secret(sandbox.api_key)) as client:
            await _load(journal, request, settings, client, created)
            await freeze_migrations(journal, 1, client)
            await snapshot_pending(journal, 1, client, settings, StopSignal())
            await journal.set_job_state(1, JobState.RUNNING)
            async for page in journal.iter_items(1, {ItemState.PENDING}, batch=WRITTEN):
                for item in page:
                    journal.record(ItemUpdate(1, item.phone_number, ItemState.PENDING,
                                              ItemState.IN_FLIGHT))
                    journal.record(ItemUpdate(1, item.phone_number, ItemState.IN_FLIGHT,
                                              ItemState.DONE, attempts=1, http_status=200))
                break
            await journal.set_job_state(1, JobState.INTERRUPTED)
        await journal.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))

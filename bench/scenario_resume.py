"""Scenario 4, resume: a big half-done journal starts sending fast, and kill -9 costs no re-sends.

The journal holds N rows (a million in the full run), the first half DONE (and already in
place on the sandbox, as a finished half would be). ``bulkops run`` is started as a child
process against a child sandbox; the time from its start to the first request the sandbox
receives is what an operator waits before a resume does anything. Once a share of the
outstanding rows was written it is killed with SIGKILL (no handler runs, nothing is
flushed), then run again to the end. The sandbox's ``writes_by_number`` tells how many
numbers were written more than once, which a journal is there to prevent; a plain script
without one would send every row again.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import drive
from .harness import (Account, BenchError, BenchSandbox, SandboxSpec, poll, sandbox, say,
                      write_csv, wrong_final_state)
from .results import Check, ScenarioResult, Table, count, seconds
from .sizes import Sizes


@dataclass(frozen=True, slots=True)
class Attempt:
    """One ``bulkops run`` child: how long until the sandbox saw it, and how it ended."""

    first_request: float  # seconds from spawn to the sandbox's first request
    exit_code: int | None  # None: killed
    summary: dict[str, Any] | None = None


def run(sizes: Sizes, workdir: Path) -> ScenarioResult:
    started = time.perf_counter()
    n = sizes.resume_rows
    half = n // 2
    csv_path, journal = workdir / "resume.csv", workdir / "resume.journal.db"
    with sandbox(SandboxSpec(numbers=n), workdir / "sandboxes") as box:
        account = Account.from_dump(box.dump())
        done_rows = account.in_place(half)
        done = {m.number for m in done_rows}
        todo = account.moves_for([number for number in account.current if number not in done])
        moves = done_rows + todo
        write_csv(csv_path, moves)
        built = time.perf_counter()
        asyncio.run(_half_done_journal(csv_path, journal, box.base_url, half))
        build_time = time.perf_counter() - built
        say(f"half-done journal of {count(n)} rows built in {seconds(build_time)}")

        box.reset_stats()
        kill_at = max(1, int(len(todo) * sizes.kill_share))
        first = _start(csv_path, journal, box, sizes, workdir, "resume-1", kill_at=kill_at)
        say(f"run 1: first request after {seconds(first.first_request)}, killed at {count(kill_at)}+ writes")
        at_kill = poll(lambda: _settled(box), timeout=60, what="the sandbox to finish "
                       "the requests in flight at the kill")
        journaled = _journaled_done(journal)
        box.reset_stats()  # small answers while run 2 is timed; run 1's counts are in at_kill
        second = _start(csv_path, journal, box, sizes, workdir, "resume-2", kill_at=None)
        say(f"run 2: first request after {seconds(second.first_request)}, exit code {second.exit_code}")
        final = box.stats()
        dump = box.dump()

    by_number = Counter(at_kill["writes_by_number"]) + Counter(final["writes_by_number"])
    twice = sum(1 for writes in by_number.values() if writes > 1)
    to_done_half = sum(by_number.get(number, 0) for number in done)
    writes_at_kill = int(at_kill["writes_applied"])
    writes_total = writes_at_kill + int(final["writes_applied"])
    summary = second.summary or {}
    counts = summary.get("counts", {})
    wrong = wrong_final_state(dump, moves)

    timing = Table(f"{count(n)}-row journal, {count(half)} rows DONE", ("run", "time to first request",
                   "ended"), (
        ("1: resume of the half-done journal", seconds(first.first_request),
         f"killed with SIGKILL after {count(writes_at_kill)} writes"),
        ("2: resume after the kill", seconds(second.first_request),
         f"exit code {second.exit_code}; done {count(int(counts.get('done', 0)))}, skipped "
         f"{count(int(counts.get('skipped', 0)))}, failed {count(int(counts.get('failed', 0)))}"),
    ))
    outcome = Table("What the sandbox saw over both runs", ("contender", "rows to write",
                    "writes applied", "numbers written twice", "writes to the DONE half",
                    "wrong final state"), (
        ("bulkops", count(len(todo)), count(writes_total), count(twice),
         count(to_done_half), count(wrong)),
        ("plain script rerun (derived, not run)", count(len(todo)),
         count(n + writes_at_kill), count(writes_at_kill), count(half), "-"),
    ))
    unjournaled = max(writes_at_kill - (journaled - half), 0)
    notes = (
        f"At the kill the sandbox had applied {count(writes_at_kill)} writes of run 1 and the "
        f"journal held {count(journaled - half)} new DONE rows: {count(unjournaled)} writes had "
        "landed without being journaled, the rows a resume must not send again.",
        "The plain-script row is arithmetic, not a run: without a journal a rerun sends every "
        "row of the CSV again, the DONE half and the rows written before the kill included.",
    )
    checks = (Check("numbers written twice across the kill", "0", count(twice), twice == 0),
              Check("numbers in the wrong final state", "0", count(wrong), wrong == 0))
    setup = (f"Sandbox child process with {count(n)} numbers, no rate limit, no latency. The "
             f"journal was built in {seconds(build_time)} by `load_rows` into a real journal, "
             f"then the first {count(half)} rows (already in place on the sandbox) were marked "
             "DONE with one SQL UPDATE. `bulkops run --yes --json` runs as a child process; "
             f"run 1 is killed with SIGKILL once {sizes.kill_share:.0%} of the "
             f"{count(len(todo))} outstanding rows were written, run 2 finishes the job. Time to "
             "first request is from spawning the child to the sandbox counting a request "
             "(interpreter start included).")
    return ScenarioResult("4", "Resume", setup, (timing, outcome), checks, notes,
                          seconds=time.perf_counter() - started)


async def _half_done_journal(csv_path: Path, journal_path: Path, base_url: str, half: int) -> None:
    """What ``bulkops run`` leaves after writing the first half, built without sending."""
    from bulkops.config import RunSettings
    from bulkops.input.rows import file_sha256
    from bulkops.journal.states import JobState
    from bulkops.journal.store import Journal
    from bulkops.input.loading import load_rows
    from bulkops.models import Kind

    journal = await Journal.create(
        journal_path, kind=Kind.ASSIGN, name=csv_path.stem, job_file=None,
        csv_path=str(csv_path.resolve()), csv_sha256=file_sha256(csv_path), default_profile_id=None,
        settings=RunSettings(base_url=base_url, assume_yes=True).journal_view(),
    )
    try:
        await load_rows(journal, 1, Kind.ASSIGN, csv_path, default_profile_id=None,
                        default_region="US", skip_invalid=False)
        await journal.set_job_state(1, JobState.INTERRUPTED)
    finally:
        await journal.close()
    with closing(sqlite3.connect(journal_path)) as db, db:  # closed: no bulkops lock is held
        # Rows are lines 2.. of the CSV (line 1 is the header); the first half is in place.
        changed = db.execute(
            "UPDATE items SET state = 'done', prior = desired, on_account = 1, attempts = 1, "
            "http_status = 200 WHERE job_id = 1 AND line <= ?", (half + 1,)).rowcount
    if changed != half:
        raise BenchError(f"marked {changed} rows DONE instead of {half}; was the CSV deduplicated?")


def _start(csv_path: Path, journal: Path, box: BenchSandbox, sizes: Sizes, workdir: Path,
           label: str, *, kill_at: int | None) -> Attempt:
    """Spawn ``bulkops run``; time its first request; kill it at ``kill_at`` writes or wait."""
    before = int(box.stats()["total_requests"])
    child = drive.CliRun(drive.cli_command(csv_path, journal, box.base_url,
                                           concurrency=sizes.concurrency), workdir, label)
    try:
        def seen() -> float | None:
            stats = box.stats()  # in_flight counts a request on arrival, the totals on answer
            if int(stats["in_flight"]) > 0 or int(stats["total_requests"]) > before:
                return time.perf_counter() - child.started
            if child.process.poll() is not None:
                raise BenchError(f"bulkops run exited ({child.process.returncode}) before its first "
                                 f"request: {drive.tail(child.stderr_path)}")
            return None

        first = poll(seen, timeout=600, what="the first request of bulkops run", interval=0.005)
        if kill_at is None:
            code = child.wait(timeout=sizes.resume_rows / 100 + 600)
            return Attempt(first, code, child.summary())

        def written() -> bool | None:
            if int(box.stats()["writes_applied"]) >= kill_at:
                return True
            if child.process.poll() is not None:
                raise BenchError(f"bulkops run exited ({child.process.returncode}) before {kill_at} "
                                 f"writes, so there was nothing to kill: {drive.tail(child.stderr_path)}")
            return None

        # The stats answer grows with every number written: the more, the gentler the polling.
        poll(written, timeout=sizes.resume_rows / 100 + 600, what=f"{kill_at} writes",
             interval=min(1.0, max(0.25, kill_at / 100_000)))
        child.kill()
        return Attempt(first, None)
    finally:
        child.kill()


def _settled(box: BenchSandbox) -> dict[str, Any] | None:
    stats = box.stats()
    return stats if int(stats["in_flight"]) == 0 else None


def _journaled_done(journal: Path) -> int:
    """DONE rows in the journal the killed run left (read-only; no bulkops process holds it)."""
    with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM items WHERE state = 'done'").fetchone()[0])

"""Scenario 1, rate-limit efficiency: how close to N/R does each contender finish, at what 429 cost?

The sandbox allows R requests per fixed 1 s window and answers after ~80 ms. A client
that ignores the limit burns requests on 429s and loses time to backoff; one that is
too careful leaves windows unused. bulkops should finish within 1.05 x N/R with at most
1 % of its requests refused. Each contender gets a fresh sandbox (same seed, so the same
account and an unused window).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import drive, reference
from .harness import (Account, SandboxSpec, describe, run_async, sandbox, say, write_csv,
                      wrong_final_state)
from .results import Check, ScenarioResult, Table, count, percent, ratio, seconds
from .sizes import API_KEY, Sizes

TIME_TARGET = 1.05
REFUSED_TARGET = 0.01


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    rows: int  # rows this contender really sent
    elapsed: float
    requests: int
    refused: int  # 429s
    failed: int  # rows it gave up on
    wrong: int  # of the rows it sent, numbers not on their target afterwards

    def extrapolated(self, rows: int) -> float:
        return self.elapsed * rows / max(self.rows, 1)


Runner = Callable[[str, Path], Coroutine[Any, Any, tuple[int, int]]]  # -> (rows sent, rows failed)


def run(sizes: Sizes, workdir: Path) -> ScenarioResult:
    started = time.perf_counter()
    n, r = sizes.rate_rows, sizes.rate
    ideal = n / r
    spec = SandboxSpec(numbers=max(n, 1_000), rate=r, latency_ms=sizes.latency_ms,
                       jitter_ms=sizes.jitter_ms)
    csv_path = workdir / "rate.csv"

    async def bulkops(base_url: str, path: Path) -> tuple[int, int]:
        result = await drive.run_in_process(path, workdir / "rate.journal.db", base_url,
                                            concurrency=sizes.concurrency)
        return n, result.count("failed")

    async def tenacity(base_url: str, path: Path) -> tuple[int, int]:
        result = await reference.tenacity_loop(base_url, API_KEY, path, sizes.concurrency)
        return result.rows, result.failed

    async def sequential(base_url: str, path: Path) -> tuple[int, int]:
        result = await reference.sequential_loop(base_url, API_KEY, path, sizes.sequential_rows)
        return result.rows, result.failed

    contenders: list[tuple[str, Runner, float]] = [
        ("bulkops", bulkops, 10 * ideal + 120),
        (f"aiohttp + Semaphore({sizes.concurrency}) + tenacity", tenacity, 10 * ideal + 120),
        ("sequential loop (Telnyx guide)", sequential,
         sizes.sequential_rows * (sizes.latency_ms + sizes.jitter_ms) / 1000 * 2 + 120),
    ]
    outcomes: list[Outcome | tuple[str, str]] = []
    for name, runner, timeout in contenders:
        try:
            outcomes.append(_measure(name, runner, timeout, spec, csv_path, n, workdir))
        except Exception as exc:  # one broken contender must not hide the others' figures
            outcomes.append((name, describe(exc)))
        say(f"{name}: " + (outcomes[-1][1] if isinstance(outcomes[-1], tuple)
                           else seconds(outcomes[-1].elapsed)))

    rows = []
    for outcome in outcomes:
        if isinstance(outcome, tuple):
            rows.append((outcome[0], "ERROR: " + outcome[1], *("-",) * 7))
            continue
        wall = outcome.extrapolated(n)
        shown = seconds(wall) if outcome.rows == n else (
            f"{seconds(wall)} (extrapolated from {count(outcome.rows)} rows in "
            f"{seconds(outcome.elapsed)})")
        rows.append((outcome.name, count(outcome.rows), shown, ratio(wall / ideal),
                     count(outcome.requests), count(outcome.refused),
                     percent(outcome.refused / max(outcome.requests, 1)), count(outcome.failed),
                     count(outcome.wrong)))
    table = Table(f"{count(n)} rows at R = {r} req/s: ideal N/R = {seconds(ideal)}",
                  ("contender", "rows sent", "wall time", "vs N/R", "requests", "429s",
                   "429 share", "rows failed", "wrong final state"), tuple(rows))
    checks: list[Check] = []
    mine = outcomes[0]
    if isinstance(mine, Outcome):
        complete = mine.failed == 0 and mine.wrong == 0  # a fast run that did not finish is no pass
        checks = [
            Check("bulkops wall time", f"<= {TIME_TARGET} x N/R", ratio(mine.elapsed / ideal),
                  complete and mine.elapsed / ideal <= TIME_TARGET),
            Check("bulkops 429 share", f"<= {percent(REFUSED_TARGET)}",
                  percent(mine.refused / max(mine.requests, 1)),
                  complete and mine.refused / max(mine.requests, 1) <= REFUSED_TARGET),
        ]
    setup = (f"Sandbox child process: fixed 1 s window of {r} requests per key, latency "
             f"{sizes.latency_ms:g} ms +- {sizes.jitter_ms:g} ms, a fresh account per contender. "
             f"{count(n)} assign rows, each a real change. bulkops' wall time covers the whole "
             "job (validation, profile checks, snapshot reads, writes, report); its requests "
             "include those reads. The loops' wall time covers reading the CSV and the writes.")
    return ScenarioResult("1", "Rate-limit efficiency", setup, (table,), tuple(checks),
                          seconds=time.perf_counter() - started)


def _measure(name: str, runner: Runner, timeout: float, spec: SandboxSpec, csv_path: Path,
             n: int, workdir: Path) -> Outcome:
    with sandbox(spec, workdir / "sandboxes") as box:
        account = Account.from_dump(box.dump())
        moves = account.moves(n)
        if not csv_path.exists():
            write_csv(csv_path, moves)
        box.reset_stats()
        started = time.perf_counter()
        sent, failed = run_async(runner(box.base_url, csv_path), timeout)
        elapsed = time.perf_counter() - started
        stats = box.stats()
        dump = box.dump()
    requests = int(stats["total_requests"])
    return Outcome(name, sent, elapsed, requests, int(stats["rate_limited"]), failed,
                   wrong_final_state(dump, moves[:sent]))

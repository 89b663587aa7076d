"""Scenario 5, faults: exact final state through 5xx, dropped connections and applied-then-5xx.

The sandbox answers 5 % of requests with a 5xx (not applied), drops 2 % of connections
(a write applied for half of them) and answers 2 % of writes with a 5xx after applying
them: the cases where a client cannot know what happened. Every number must still end on
its target (read from the sandbox's dump), and the faults should cost time, not
correctness. Each contender runs the same job without and with faults, on fresh
sandboxes with the same seed.
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
from .results import Check, ScenarioResult, Table, count, ratio, seconds
from .sizes import API_KEY, Sizes

Runner = Callable[[str, Path, Path], Coroutine[Any, Any, int]]  # (base_url, csv, journal) -> failed


@dataclass(frozen=True, slots=True)
class Run:
    contender: str
    faulty: bool
    elapsed: float = 0.0
    requests: int = 0
    faults: int = 0  # faults the sandbox injected
    failed: int = 0  # rows the contender reported failed
    wrong: int = 0  # numbers not on their target afterwards
    error: str | None = None


def run(sizes: Sizes, workdir: Path) -> ScenarioResult:
    started = time.perf_counter()
    n = sizes.fault_rows
    clean = SandboxSpec(numbers=n, latency_ms=sizes.fault_latency_ms, jitter_ms=sizes.fault_jitter_ms)
    faulty = SandboxSpec(numbers=n, latency_ms=sizes.fault_latency_ms, jitter_ms=sizes.fault_jitter_ms,
                         error_rate=sizes.error_rate, drop_rate=sizes.drop_rate,
                         error_after_write_rate=sizes.error_after_write_rate)
    csv_path = workdir / "faults.csv"

    async def bulkops(base_url: str, path: Path, journal: Path) -> int:
        result = await drive.run_in_process(path, journal, base_url, concurrency=sizes.concurrency)
        return result.count("failed")

    async def tenacity(base_url: str, path: Path, journal: Path) -> int:
        return (await reference.tenacity_loop(base_url, API_KEY, path, sizes.concurrency)).failed

    contenders: list[tuple[str, Runner]] = [
        ("bulkops", bulkops), (f"aiohttp + Semaphore({sizes.concurrency}) + tenacity", tenacity)]
    runs = [_measure(name, runner, spec is faulty, spec, csv_path, workdir / f"run-{i}-{j}")
            for i, (name, runner) in enumerate(contenders) for j, spec in enumerate((clean, faulty))]

    rows = []
    for r in runs:
        label = "faults" if r.faulty else "fault-free"
        if r.error is not None:
            rows.append((r.contender, label, "ERROR: " + r.error, *("-",) * 5))
            continue
        base = next((b for b in runs if b.contender == r.contender and not b.faulty and b.error is None), None)
        slowdown = "-" if base is None or not r.faulty else ratio(r.elapsed / base.elapsed)
        rows.append((r.contender, label, seconds(r.elapsed), slowdown, count(r.requests),
                     count(r.faults), count(r.failed), count(r.wrong)))
    table = Table(f"{count(n)} rows, latency {sizes.fault_latency_ms:g} +- {sizes.fault_jitter_ms:g} ms, "
                  "no rate limit", ("contender", "sandbox", "wall time", "vs fault-free", "requests",
                                    "faults injected", "rows failed", "wrong final state"),
                  tuple(rows))
    checks: list[Check] = []
    mine = runs[1]
    if mine.error is None:
        checks.append(Check("bulkops numbers in the wrong final state", "0", count(mine.wrong),
                            mine.wrong == 0))
    setup = (f"Sandbox child process, fault seed fixed: {sizes.error_rate:.0%} of requests answered "
             f"5xx and not applied, {sizes.drop_rate:.0%} of connections dropped (a write applied "
             f"for half of them), {sizes.error_after_write_rate:.0%} of writes applied then "
             "answered 5xx. bulkops runs the whole job (its snapshot reads meet faults too); "
             "the wrong final state compares the sandbox's dump with every row's target.")
    return ScenarioResult("5", "Faults", setup, (table,), tuple(checks),
                          seconds=time.perf_counter() - started)


def _measure(name: str, runner: Runner, faulty: bool, spec: SandboxSpec, csv_path: Path,
             workdir: Path) -> Run:
    try:
        with sandbox(spec, workdir) as box:
            moves = Account.from_dump(box.dump()).moves(spec.numbers)
            if not csv_path.exists():
                write_csv(csv_path, moves)
            box.reset_stats()
            journal = workdir / "faults.journal.db"
            started = time.perf_counter()
            failed = run_async(runner(box.base_url, csv_path, journal), spec.numbers / 20 + 300)
            elapsed = time.perf_counter() - started
            stats = box.stats()
            wrong = wrong_final_state(box.dump(), moves)
        faults = sum(int(v) for v in stats["faults_injected"].values())
        say(f"{name}, {'faults' if faulty else 'fault-free'}: {seconds(elapsed)}")
        return Run(name, faulty, elapsed, int(stats["total_requests"]), faults, failed, wrong)
    except Exception as exc:  # reported in its row; the other runs still count
        say(f"{name}, {'faults' if faulty else 'fault-free'}: {describe(exc)}")
        return Run(name, faulty, error=describe(exc))

"""Scenario 6, bulk orders: bulk, PATCH and the plain loop side by side at R = 10 requests/s.

At an account limit of R requests/s one PATCH per number cannot beat N/R. Orders move up to
1,000 numbers per request, so the floor becomes the reads (the snapshot and the read-back of
each order, 250 numbers per request) and the polling. 1 % of the numbers are listed as failed
by their orders (and so PATCHed once). A second run has 30 % of the orders stuck for ever,
``--order-timeout 15`` and two ``kill -9`` of the ``bulkops run`` child: it must still end
exact. PATCH contenders send a sample of the rows and are extrapolated (linear in the rows at
a fixed R).
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import drive, reference
from .harness import (Account, BenchError, SandboxSpec, describe, patch_count, run_async, sandbox,
                      say, write_csv, wrong_final_state)
from .results import Check, ScenarioResult, Table, count, seconds
from .sizes import API_KEY, SEED, Sizes

FAST_TARGET = 60.0  # seconds, 10,000 numbers at R = 10/s with 1 % failed by orders
FAST_AIM = 30.0
REQUEST_TARGET = 1_000
STUCK_TARGET = 150.0  # seconds, 30 % of orders stuck, --order-timeout 15, two kill -9s
LATENCY_MS = 40.0


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    rows: int  # rows sent
    elapsed: float
    requests: int
    failed: int
    wrong: int
    kills: int = 0
    note: str = ""

    def wall(self, rows: int) -> float:
        return self.elapsed * rows / max(self.rows, 1)


def run(sizes: Sizes, workdir: Path) -> ScenarioResult:
    started = time.perf_counter()
    n, r = sizes.bulk_rows, sizes.bulk_rate
    spec = SandboxSpec(numbers=n + 100, rate=r, latency_ms=LATENCY_MS, jitter_ms=10,
                       order_fail_rate=0.01)
    outcomes: list[Outcome | tuple[str, str]] = []

    def attempt(name: str, measure: Callable[[], Outcome]) -> None:
        try:
            outcomes.append(measure())
        except Exception as exc:  # one broken contender must not hide the others' figures
            outcomes.append((name, describe(exc)))
        last = outcomes[-1]
        say(f"{name}: " + (last[1] if isinstance(last, tuple) else seconds(last.elapsed)))

    attempt("bulkops --mode auto (orders)",
            lambda: _in_process("bulkops --mode auto (orders)", "auto", spec, n, workdir / "bulk"))
    patch_rows = sizes.bulk_patch_rows
    attempt("bulkops --mode patch",
            lambda: _in_process("bulkops --mode patch", "patch", spec, patch_rows, workdir / "patch"))
    attempt("plain loop (aiohttp + Semaphore(32) + tenacity)", lambda: _plain_loop(spec, patch_rows, workdir / "loop"))
    stuck = SandboxSpec(numbers=sizes.bulk_stuck_rows + 100, rate=r, latency_ms=LATENCY_MS,
                        jitter_ms=10, order_fail_rate=0.01, order_stuck_rate=0.3)
    attempt("bulkops, 30 % of orders stuck, 2 x kill -9",
            lambda: _killed(stuck, sizes.bulk_stuck_rows, sizes.order_timeout, workdir / "stuck"))
    attempt("the same with --bulk-size 250",
            lambda: _killed(stuck, sizes.bulk_stuck_rows, sizes.order_timeout, workdir / "stuck-250",
                            bulk_size=250))

    rows = []
    for o in outcomes:
        if isinstance(o, tuple):
            rows.append((o[0], "ERROR: " + o[1], *("-",) * 5))
            continue
        total = sizes.bulk_stuck_rows if o.kills else n
        wall = seconds(o.wall(total)) if o.rows == total else (
            f"{seconds(o.wall(total))} (extrapolated from {count(o.rows)} rows in {seconds(o.elapsed)})")
        requests = count(o.requests) if o.rows == total else (
            f"{count(round(o.requests * total / max(o.rows, 1)))} (extrapolated)")
        rows.append((o.name, count(total), wall, requests, count(o.failed), count(o.wrong),
                     o.note or "-"))
    table = Table(f"{count(n)} assignments to mixed profiles at R = {r} req/s (N/R = "
                  f"{seconds(n / r)})",
                  ("contender", "numbers", "wall time", "requests", "rows failed",
                   "wrong final state", "note"), tuple(rows))
    checks: list[Check] = []
    fast = outcomes[0]
    if isinstance(fast, Outcome):
        exact = fast.failed == 0 and fast.wrong == 0
        checks += [
            Check("orders: wall time", f"<= {FAST_TARGET:g} s (aim {FAST_AIM:g} s)",
                  seconds(fast.elapsed), exact and fast.elapsed <= FAST_TARGET * n / 10_000),
            Check("orders: requests", f"< {count(REQUEST_TARGET)}", count(fast.requests),
                  exact and fast.requests < REQUEST_TARGET * n / 10_000),
        ]
    killed = outcomes[-2]
    if isinstance(killed, Outcome) and killed.kills:
        checks.append(Check("stuck orders + 2 kill -9: wall time", f"<= {STUCK_TARGET:g} s, exact",
                            seconds(killed.elapsed),
                            killed.wrong == 0 and killed.failed == 0 and killed.kills == 2
                            and killed.elapsed <= STUCK_TARGET))  # timeouts dominate: not scaled
    setup = (f"Sandbox child process: a fixed 1 s window of {r} requests per key, latency "
             f"{LATENCY_MS:g} ms +- 10 ms, orders processed at 500 numbers/s, 1 % of an order's "
             "numbers listed as failed and not applied. A fresh account per contender. bulkops' "
             "wall time covers the whole job (validation, profile checks, snapshot, orders, "
             "polls, read-backs, PATCHes of failed numbers, report). The PATCH contenders send "
             f"{count(patch_rows)} rows and are extrapolated to {count(n)}. The stuck run: 30 % of "
             f"orders never processed, --order-timeout {sizes.order_timeout:g}, the child killed "
             "with SIGKILL twice at seeded moments and run again each time; its wall time runs "
             "from the first start to the last exit.")
    notes = ("The stuck runs' time is set by how many numbers get stuck twice (first order and "
             "its re-order, 30 % x 30 % = 9 % on average): they go to PATCH, and every 1,000 of "
             "them cost 100 s at R = 10/s, on top of two order timeouts. Which orders get stuck "
             "is drawn by the sandbox per order, seeded, so with 10 orders of 1,000 the share "
             "stuck can be far from 30 % (earlier runs saw 6 of 11): smaller orders come closer "
             "to the average but are not faster, as stuck orders hold 15 s of the 20 open-order "
             "slots and the later orders wait for them. Re-orders are cut at a quarter of "
             "--bulk-size so one stuck again strands fewer numbers.",)
    return ScenarioResult("6", "Bulk orders", setup, (table,), tuple(checks), notes,
                          seconds=time.perf_counter() - started)


def _in_process(name: str, mode: str, spec: SandboxSpec, n: int, workdir: Path) -> Outcome:
    with sandbox(spec, workdir / "sandbox") as box:
        moves = Account.from_dump(box.dump()).moves(n)
        csv_path = write_csv(workdir / "rows.csv", moves)
        box.reset_stats()
        result = run_async(drive.run_in_process(csv_path, workdir / "job.db", box.base_url,
                                                concurrency=32, mode=mode), 600)
        stats, dump = box.stats(), box.dump()
    return Outcome(name, n, result.elapsed, int(stats["total_requests"]), result.count("failed"),
                   wrong_final_state(dump, moves))


def _plain_loop(spec: SandboxSpec, n: int, workdir: Path) -> Outcome:
    with sandbox(spec, workdir / "sandbox") as box:
        moves = Account.from_dump(box.dump()).moves(n)
        csv_path = write_csv(workdir / "rows.csv", moves)
        box.reset_stats()
        result = run_async(reference.tenacity_loop(box.base_url, API_KEY, csv_path, 32), 600)
        stats, dump = box.stats(), box.dump()
    return Outcome("plain loop (aiohttp + Semaphore(32) + tenacity)", result.rows, result.elapsed,
                   int(stats["total_requests"]), result.failed, wrong_final_state(dump, moves))


def _killed(spec: SandboxSpec, n: int, timeout: float, workdir: Path, *,
            bulk_size: int = 1000) -> Outcome:
    rng = random.Random(SEED)
    with sandbox(spec, workdir / "sandbox") as box:
        moves = Account.from_dump(box.dump()).moves(n)
        csv_path = write_csv(workdir / "rows.csv", moves)
        box.reset_stats()
        command = [*drive.cli_command(csv_path, workdir / "job.db", box.base_url, concurrency=32,
                                      mode="bulk"),
                   "--order-timeout", f"{timeout:g}", "--bulk-size", str(bulk_size)]
        started = time.perf_counter()
        kills = 0
        for attempt in range(3):
            child = drive.CliRun(command, workdir, f"run{attempt}")
            if attempt < 2:
                try:
                    child.process.wait(rng.uniform(3.0, 12.0))  # the seeded kill moment
                except subprocess.TimeoutExpired:  # still running: the moment has come
                    child.kill()
                    kills += 1
                    continue
                raise BenchError(f"the job finished before kill {attempt + 1}; see {child.stderr_path}")
            child.wait(600)
        elapsed = time.perf_counter() - started
        summary = child.summary()
        stats, dump = box.stats(), box.dump()
    failed = int(summary["counts"].get("failed", 0))
    name = "bulkops, 30 % of orders stuck, 2 x kill -9" + (
        "" if bulk_size == 1000 else f", --bulk-size {bulk_size}")
    return Outcome(name, n, elapsed,
                   int(stats["total_requests"]), failed, wrong_final_state(dump, moves), kills,
                   note=f"{kills} kills; {count(patch_count(stats))} PATCHes; exit code "
                        f"{summary['exit_code']}")

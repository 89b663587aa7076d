"""Scenario 6, bulk orders: bulk, PATCH and the plain loop side by side at R = 10 requests/s.

At an account limit of R requests/s one PATCH per number cannot beat N/R. Orders move up to
1,000 numbers per request, so the floor becomes the reads (the snapshot and the read-back of
each order, 250 numbers per request) and the polling. 1 % of the numbers are listed as failed
by their orders; they go into re-orders while a round is cheaper than PATCHing them
(bulkops/healing.py), so few are PATCHed. A second run has 30 % of the orders stuck for ever,
``--order-timeout 15`` and two ``kill -9`` of the ``bulkops run`` child, and a third 100,000
numbers with two ``kill -9``: each must still end exact. PATCH contenders send a sample of the
rows and are extrapolated (linear in the rows at a fixed R).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import drive, reference
from .harness import (Account, BenchError, SandboxSpec, describe, patch_count, run_async, sandbox,
                      say, write_csv, wrong_final_state)
from .results import Check, ScenarioResult, Table, count, seconds
from .sizes import API_KEY, SEED, Sizes

FAST_TARGET = 15.0  # seconds, 10,000 numbers at R = 10/s with 1 % failed by orders
FAST_AIM = 12.0
REQUEST_TARGET = 1_000
STUCK_TARGET = 120.0  # seconds, 30 % of orders stuck, --order-timeout 15, two kill -9s
KILLED_TARGET = 120.0  # seconds, 100,000 numbers, 1 % failed by orders, two kill -9s
KILLED_AIM = 100.0
RSS_TARGET = 200 * 2**20  # bytes, the 100,000-number run's peak
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
    peak_rss: int = 0  # bytes, the largest of the children's (killed runs only)

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
            lambda: _killed(stuck, sizes.bulk_stuck_rows, sizes.order_timeout, workdir / "stuck",
                            window=sizes.bulk_stuck_kill_window))
    if sizes.bulk_stuck_250:
        attempt("the same with --bulk-size 250",
                lambda: _killed(stuck, sizes.bulk_stuck_rows, sizes.order_timeout,
                                workdir / "stuck-250", bulk_size=250,
                                window=sizes.bulk_stuck_kill_window))
    big = SandboxSpec(numbers=sizes.bulk_killed_rows + 100, rate=r, latency_ms=LATENCY_MS,
                      jitter_ms=10, order_fail_rate=0.01)
    big_name = f"bulkops, {count(sizes.bulk_killed_rows)} numbers, 2 x kill -9"
    attempt(big_name, lambda: _killed(big, sizes.bulk_killed_rows, None, workdir / "big",
                                      mode="auto", window=sizes.bulk_kill_window, name=big_name))

    rows = []
    for o in outcomes:
        if isinstance(o, tuple):
            rows.append((o[0], "ERROR: " + o[1], *("-",) * 5))
            continue
        total = o.rows if o.kills else n
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
        fast_scale = max(1.0, n / 10_000)  # a smaller (--quick) run still pays the fixed costs
        checks += [
            Check("orders: wall time", f"<= {FAST_TARGET * fast_scale:g} s (aim "
                  f"{FAST_AIM * fast_scale:g} s), exact",
                  seconds(fast.elapsed), exact and fast.elapsed <= FAST_TARGET * fast_scale),
            Check("orders: requests", f"< {count(REQUEST_TARGET)}", count(fast.requests),
                  exact and fast.requests < REQUEST_TARGET * n / 10_000),
        ]
    killed = outcomes[3]
    if isinstance(killed, Outcome) and killed.kills:
        checks.append(Check("stuck orders + 2 kill -9: wall time", f"<= {STUCK_TARGET:g} s, exact",
                            seconds(killed.elapsed),
                            killed.wrong == 0 and killed.failed == 0 and killed.kills == 2
                            and killed.elapsed <= STUCK_TARGET))  # timeouts dominate: not scaled
    large = outcomes[-1]
    if isinstance(large, Outcome) and large.kills:
        scale = max(1.0, large.rows / 100_000)  # as fast_scale
        checks += [
            Check(f"{count(large.rows)} numbers + 2 kill -9: wall time",
                  f"<= {KILLED_TARGET * scale:g} s (aim {KILLED_AIM * scale:g} s), exact",
                  seconds(large.elapsed),
                  large.wrong == 0 and large.failed == 0 and large.kills == 2
                  and large.elapsed <= KILLED_TARGET * scale),
            Check(f"{count(large.rows)} numbers: peak RSS", f"< {RSS_TARGET / 2**20:g} MB",
                  f"{large.peak_rss / 2**20:,.0f} MB", 0 < large.peak_rss < RSS_TARGET),
        ]
    setup = (f"Sandbox child process: a fixed 1 s window of {r} requests per key, latency "
             f"{LATENCY_MS:g} ms +- 10 ms, orders processed at 500 numbers/s, 1 % of an order's "
             "numbers listed as failed and not applied. A fresh account per contender. bulkops' "
             "wall time covers the whole job (validation, profile checks, snapshot, orders, "
             "polls, read-backs, re-orders, PATCHes of what is left, report). The PATCH "
             f"contenders send {count(patch_rows)} rows and are extrapolated to {count(n)}. The "
             f"stuck runs: 30 % of orders never processed, --order-timeout {sizes.order_timeout:g}. "
             f"The last run: {count(sizes.bulk_killed_rows)} numbers, --mode auto. Killed runs: "
             "the `bulkops run` child killed with SIGKILL twice at seeded moments and run again "
             "each time; the wall time runs from the first start to the last exit.")
    notes = ("Numbers an order did not move (listed failed, or still pending at the timeout) "
             "go into re-orders while one more round costs less than PATCHing them at the "
             "learned rate (docs/orders.md); the rest, and what a re-order listed failed, are "
             "PATCHed. In the stuck runs every round of re-orders waits out --order-timeout "
             "when one of its orders is stuck, so their time is about the timeouts plus the "
             "PATCHes of what is left when a round stops paying. Which orders get stuck is "
             "drawn by the sandbox per order, seeded. The killed runs are killed with SIGKILL "
             "at seeded moments and run again each time; the peak RSS is the largest VmHWM of "
             "their children.",)
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


def _killed(spec: SandboxSpec, n: int, timeout: float | None, workdir: Path, *,
            bulk_size: int = 1000, mode: str = "bulk",
            window: tuple[float, float] = (3.0, 12.0), name: str | None = None) -> Outcome:
    rng = random.Random(SEED)
    with sandbox(spec, workdir / "sandbox") as box:
        moves = Account.from_dump(box.dump()).moves(n)
        csv_path = write_csv(workdir / "rows.csv", moves)
        box.reset_stats()
        command = [*drive.cli_command(csv_path, workdir / "job.db", box.base_url, concurrency=32,
                                      mode=mode), "--bulk-size", str(bulk_size)]
        if timeout is not None:
            command += ["--order-timeout", f"{timeout:g}"]
        started = time.perf_counter()
        kills, peak = 0, 0
        for attempt in range(3):
            child = drive.CliRun(command, workdir, f"run{attempt}")
            if attempt < 2:
                if not child.watch(rng.uniform(*window)):  # still running at the kill moment
                    peak = max(peak, child.peak_rss)
                    child.kill()
                    kills += 1
                    continue
                raise BenchError(f"the job finished before kill {attempt + 1}; see {child.stderr_path}")
            if not child.watch(600):
                child.kill()
                raise BenchError(f"bulkops run did not finish within 600 s; see {child.stderr_path}")
            peak = max(peak, child.peak_rss)
        elapsed = time.perf_counter() - started
        summary = child.summary()
        stats, dump = box.stats(), box.dump()
    failed = int(summary["counts"].get("failed", 0))
    name = name or "bulkops, 30 % of orders stuck, 2 x kill -9" + (
        "" if bulk_size == 1000 else f", --bulk-size {bulk_size}")
    return Outcome(name, n, elapsed,
                   int(stats["total_requests"]), failed, wrong_final_state(dump, moves), kills,
                   note=f"{kills} kills; {count(patch_count(stats))} PATCHes; peak RSS "
                        f"{peak / 2**20:,.0f} MB; exit code {summary['exit_code']}",
                   peak_rss=peak)

"""Scenario 1, rate-limit efficiency: how much of R does each contender use, at what 429 cost?

The sandbox allows R requests per 1 s by one of a family of servers: fixed windows opened by a
key's first request (as Telnyx does) or turning on the server's clock (unknown phase), a
sliding 1 s log, a token bucket; latency uniform or exponential (a heavy tail), after the count
or before it (then the server counts out of the order requests were sent). Each row also gives
the best fixed pace with no 429 on that server (``bench/pace.py``, a virtual-clock simulation),
so every share of R is also a ratio to what is possible there. Targets: at least 0.97 of R
while writing on uniform-latency servers, at least the best fixed pace on heavy-tailed ones,
at most 1 % of requests refused; with 30 % junk rate-limit headers within 1.3 x N/R in the
exact final state. Each run gets a fresh sandbox (same seed, so the same account).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import drive, pace, reference
from .harness import (Account, SandboxSpec, describe, run_async, sandbox, say, write_csv,
                      wrong_final_state)
from .results import Check, ScenarioResult, Table, count, percent, ratio, seconds
from .sizes import API_KEY, Sizes

SHARE_TARGET = 0.97  # of R, while writing (uniform latency)
PACE_TARGET = 1.0  # of the best fixed pace with no 429 (heavy-tailed latency)
REFUSED_TARGET = 0.01
ODD_TIME_TARGET = 1.3  # x N/R, with odd headers
PATCH_ROUTE = "PATCH /v2/phone_numbers/{id}/messaging"


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    kind: str  # the sandbox's limiter
    latency_ms: float
    odd_headers: float
    shape: str  # latency: uniform or exponential
    before_count: bool  # the latency passes before the server counts
    best_pace: float  # the best fixed pace with no 429 on this server, share of R
    best_writing: float  # that pace's own share of R while writing (its drain tail included)
    rows: int  # rows this contender really sent
    elapsed: float
    requests: int
    refused: int  # 429s
    failed: int  # rows it gave up on
    wrong: int  # of the rows it sent, numbers not on their target afterwards
    writes: int  # PATCHes answered 200
    write_seconds: float  # from the first to the last of them

    def extrapolated(self, rows: int) -> float:
        return self.elapsed * rows / max(self.rows, 1)

    def share(self, rate: int) -> float:
        """Writes per second while writing, as a share of R."""
        return (self.writes - 1) / (self.write_seconds * rate) if self.write_seconds > 0 else 0.0

    @property
    def refused_share(self) -> float:
        return self.refused / max(self.requests, 1)


Runner = Callable[[str, Path], Coroutine[Any, Any, tuple[int, int]]]  # -> (rows sent, rows failed)


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    runner: Runner
    timeout: float
    kind: str
    latency_ms: float
    odd_headers: float = 0.0
    shape: str = "uniform"
    before_count: bool = False

    @property
    def server(self) -> str:
        return self.kind + ("" if not self.before_count else f", {self.shape} before count")


def run(sizes: Sizes, workdir: Path) -> ScenarioResult:
    started = time.perf_counter()
    n, r = sizes.rate_rows, sizes.rate
    ideal = n / r
    csv_path = workdir / "rate.csv"
    plain = f"aiohttp + Semaphore({sizes.concurrency}) + tenacity"

    async def bulkops(base_url: str, path: Path) -> tuple[int, int]:
        journal = workdir / f"rate-{time.monotonic_ns()}.journal.db"  # a fresh job every run
        result = await drive.run_in_process(path, journal, base_url, concurrency=sizes.concurrency)
        return n, result.count("failed")

    async def tenacity(base_url: str, path: Path) -> tuple[int, int]:
        result = await reference.tenacity_loop(base_url, API_KEY, path, sizes.concurrency)
        return result.rows, result.failed

    async def sequential(base_url: str, path: Path) -> tuple[int, int]:
        result = await reference.sequential_loop(base_url, API_KEY, path, sizes.sequential_rows)
        return result.rows, result.failed

    loop_timeout = 10 * ideal + 120
    contenders: list[Contender] = []
    for kind in sizes.rate_kinds:
        for latency in sizes.rate_latencies_ms:
            contenders.append(Contender("bulkops", bulkops, loop_timeout, kind, latency))
        contenders.append(Contender(plain, tenacity, loop_timeout, kind, sizes.latency_ms))
    for kind, shape in sizes.rate_family:
        contenders.append(Contender("bulkops", bulkops, loop_timeout, kind, sizes.latency_ms,
                                    shape=shape, before_count=True))
        if shape == "exponential" and kind == "sliding":
            contenders.append(Contender(plain, tenacity, loop_timeout, kind, sizes.latency_ms,
                                        shape=shape, before_count=True))
    contenders.append(Contender("bulkops", bulkops, loop_timeout, "fixed", sizes.latency_ms,
                                sizes.odd_header_rate))
    if sizes.sequential_rows:
        contenders.append(Contender(
            "sequential loop (Telnyx guide)", sequential,
            sizes.sequential_rows * (sizes.latency_ms + sizes.jitter_ms) / 1000 * 2 + 120,
            "fixed", sizes.latency_ms))

    outcomes: list[Outcome | tuple[Contender, str]] = []
    for contender in contenders:
        jitter = sizes.jitter_ms * contender.latency_ms / sizes.latency_ms
        spec = SandboxSpec(numbers=max(n, 1_000), rate=r, latency_ms=contender.latency_ms,
                           jitter_ms=jitter, limiter=contender.kind,
                           odd_header_rate=contender.odd_headers, latency_shape=contender.shape,
                           latency_before_count=contender.before_count)
        best_pace = pace.best_fixed_pace(contender.kind, r, requests=n,
                                         latency_ms=contender.latency_ms, jitter_ms=jitter,
                                         shape=contender.shape, before_count=contender.before_count)
        best = (best_pace, pace.writing_share(r, best_pace, requests=n,
                                              latency_ms=contender.latency_ms, jitter_ms=jitter,
                                              shape=contender.shape,
                                              before_count=contender.before_count))
        label = f"{contender.name} vs {contender.server} at {contender.latency_ms:g} ms" + (
            f", {contender.odd_headers:.0%} odd headers" if contender.odd_headers else "")
        try:
            outcome: Outcome | tuple[Contender, str] = _measure(contender, spec, csv_path, n, workdir,
                                                                best)
        except Exception as exc:  # one broken contender must not hide the others' figures
            outcome = (contender, describe(exc))
        outcomes.append(outcome)
        say(f"{label}: " + (outcome[1] if isinstance(outcome, tuple) else
                            f"{seconds(outcome.elapsed)}, {outcome.share(r):.3f} of R while writing "
                            f"({outcome.share(r) / best[1]:.3f} of the best fixed pace "
                            f"{best[0]:.3f}, {best[1]:.3f} while writing), "
                            f"{outcome.refused} 429s"))

    table = Table(
        f"{count(n)} rows at R = {r} req/s per 1 s: ideal N/R = {seconds(ideal)}",
        ("server limiter", "latency", "contender", "rows sent", "wall time", "vs N/R",
         "writing: share of R", "best fixed pace, 0 429s (its share while writing)",
         "vs best pace while writing", "requests", "429s",
         "429 share", "rows failed", "wrong final state"),
        tuple(_row(outcome, n, r, ideal) for outcome in outcomes))
    checks = _checks([o for o in outcomes if isinstance(o, Outcome)], r, ideal)
    setup = (f"Sandbox child process, R = {r} requests per 1 s per key by a fixed window "
             "(opened by the key's first request, like Telnyx), fixed windows on the server's clock "
             "(fixed-clock: a phase the client cannot know), a sliding 1 s log or a token bucket "
             f"of R tokens refilled per second; latency as listed, +- {sizes.jitter_ms:g} ms per "
             f"{sizes.latency_ms:g} ms (uniform) or exponential of that mean, after the count "
             "unless the row says \"before count\"; a fresh account per run. \"Best fixed pace\" "
             "is the fastest pace of a blind client with no 429 on that server, found by "
             "bisection in a virtual-clock simulation of the sandbox's counting with the same "
             "latency draws (bench/pace.py); in brackets, that client's own share of R while "
             "writing, measured as bulkops' is (a heavy tail counts its last write late), and "
             f"bulkops' ratio to it. {count(n)} assign rows, each a real "
             "change. bulkops' wall time covers the whole job (validation, profile checks, "
             "snapshot reads, writes, report); the loops' covers reading the CSV and the writes. "
             "\"Writing: share of R\" is PATCHes answered 200 per second from the first to the "
             "last of them, over R. The odd-headers row replaces the x-ratelimit-* headers of "
             f"{sizes.odd_header_rate:.0%} of answers with junk (zero, negative, missing, "
             "repeated, absurd, epoch-time resets).")
    return ScenarioResult("1", "Rate-limit efficiency", setup, (table,), tuple(checks),
                          seconds=time.perf_counter() - started)


def _row(outcome: Outcome | tuple[Contender, str], n: int, r: int, ideal: float) -> tuple[str, ...]:
    if isinstance(outcome, tuple):
        contender, error = outcome
        return (contender.server, f"{contender.latency_ms:g} ms", contender.name, "ERROR: " + error,
                *("-",) * 10)
    wall = outcome.extrapolated(n)
    shown = seconds(wall) if outcome.rows == n else (
        f"{seconds(wall)} (extrapolated from {count(outcome.rows)} rows in "
        f"{seconds(outcome.elapsed)})")
    name = outcome.name + (f", {outcome.odd_headers:.0%} odd headers" if outcome.odd_headers else "")
    server = outcome.kind + (f", {outcome.shape} before count" if outcome.before_count else "")
    return (server, f"{outcome.latency_ms:g} ms", name, count(outcome.rows), shown,
            ratio(wall / ideal), f"{outcome.share(r):.3f}",
            f"{outcome.best_pace:.3f} ({outcome.best_writing:.3f})",
            f"{outcome.share(r) / outcome.best_writing:.3f}", count(outcome.requests),
            count(outcome.refused), percent(outcome.refused_share), count(outcome.failed),
            count(outcome.wrong))


def _checks(outcomes: list[Outcome], r: int, ideal: float) -> list[Check]:
    checks = []
    for o in outcomes:
        if o.name != "bulkops":
            continue
        complete = o.failed == 0 and o.wrong == 0  # a fast run that did not finish is no pass
        where = f"{o.kind}, {o.latency_ms:g} ms" + (
            f", {o.shape} before count" if o.before_count else "")
        if o.odd_headers:
            checks.append(Check(f"bulkops wall time, {o.odd_headers:.0%} odd headers ({where})",
                                f"<= {ODD_TIME_TARGET} x N/R, exact final state",
                                ratio(o.elapsed / ideal), complete and o.elapsed / ideal <= ODD_TIME_TARGET))
            continue
        if o.shape == "exponential":
            share = o.share(r) / o.best_writing
            checks.append(Check(f"bulkops share of the best fixed pace ({where})",
                                f">= {PACE_TARGET}", f"{share:.3f}",
                                complete and share >= PACE_TARGET))
        else:
            checks.append(Check(f"bulkops share of R while writing ({where})", f">= {SHARE_TARGET}",
                                f"{o.share(r):.3f}", complete and o.share(r) >= SHARE_TARGET))
        checks.append(Check(f"bulkops 429 share ({where})", f"<= {percent(REFUSED_TARGET)}",
                            percent(o.refused_share), complete and o.refused_share <= REFUSED_TARGET))
    return checks


def _measure(contender: Contender, spec: SandboxSpec, csv_path: Path, n: int,
             workdir: Path, best: tuple[float, float]) -> Outcome:
    with sandbox(spec, workdir / "sandboxes") as box:
        account = Account.from_dump(box.dump())
        moves = account.moves(n)
        if not csv_path.exists():
            write_csv(csv_path, moves)
        box.reset_stats()
        started = time.perf_counter()
        sent, failed = run_async(contender.runner(box.base_url, csv_path), contender.timeout)
        elapsed = time.perf_counter() - started
        stats = box.stats()
        dump = box.dump()
    first, last = stats.get("first_write_at"), stats.get("last_write_at")
    writes = int(stats["requests"].get(PATCH_ROUTE, {}).get("200", 0))
    return Outcome(contender.name, contender.kind, contender.latency_ms, contender.odd_headers,
                   contender.shape, contender.before_count, *best, sent, elapsed, int(stats["total_requests"]), int(stats["rate_limited"]), failed,
                   wrong_final_state(dump, moves[:sent]), writes,
                   (last - first) if first is not None and last is not None else 0.0)

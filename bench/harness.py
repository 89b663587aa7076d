"""Shared plumbing: a sandbox in a child process, its account, CSVs from its numbers, polling.

A throughput scenario always serves the sandbox from a child process (2 cores: client and
server must not share one event loop), started fresh for every contender so each starts
from the same seeded account and an unused rate-limit window.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bulkops.sandbox.process import SandboxProcess, spawn_sandbox

from .sizes import API_KEY, SEED

T = TypeVar("T")
CONTROL_TIMEOUT = 120.0  # seconds; a dump of a million numbers takes a few
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


class BenchError(Exception):
    """A scenario could not be measured; the message says what happened and what to check."""


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """One sandbox account and its behaviour, as ``python -m bulkops.sandbox`` flags."""

    numbers: int
    profiles: int = 5
    rate: int = 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    error_after_write_rate: float = 0.0
    limiter: str = "fixed"  # fixed | fixed-clock | sliding | bucket
    latency_shape: str = "uniform"  # or exponential
    latency_before_count: bool = False
    odd_header_rate: float = 0.0
    order_fail_rate: float = 0.0  # bulk orders: numbers listed failed, not applied
    order_stuck_rate: float = 0.0  # bulk orders never processed

    def args(self) -> list[str]:
        flags = {
            "--numbers": self.numbers, "--profiles": self.profiles, "--seed": SEED,
            "--api-key": API_KEY, "--rate": self.rate, "--latency-ms": self.latency_ms,
            "--jitter-ms": self.jitter_ms, "--error-rate": self.error_rate,
            "--drop-rate": self.drop_rate, "--error-after-write-rate": self.error_after_write_rate,
            "--limiter": self.limiter, "--odd-header-rate": self.odd_header_rate,
            "--order-fail-rate": self.order_fail_rate, "--order-stuck-rate": self.order_stuck_rate,
        }
        return [*(part for flag, value in flags.items() for part in (flag, str(value))),
                "--latency-shape", self.latency_shape,
                *(["--latency-before-count"] if self.latency_before_count else []), "--control"]


class BenchSandbox:
    """A child sandbox with ``--control``: its URL and what it saw (read over HTTP)."""

    def __init__(self, process: SandboxProcess) -> None:
        self.process = process
        self.base_url = process.base_url
        self.api_key = API_KEY

    def _control(self, route: str, body: object | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.process.origin}/_control/{route}", data=data,
                                         method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json"})
        with _DIRECT.open(request, timeout=CONTROL_TIMEOUT) as response:
            return json.load(response)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("stats")
        return result

    def reset_stats(self) -> None:
        self._control("reset-stats", {})

    def dump(self) -> dict[str, str | None]:
        result: dict[str, str | None] = self._control("dump")
        return result


@contextmanager
def sandbox(spec: SandboxSpec, workdir: Path) -> Iterator[BenchSandbox]:
    """A fresh child sandbox for the block; always stopped after it."""
    workdir.mkdir(parents=True, exist_ok=True)
    process = spawn_sandbox(spec.args(), ready_timeout=180.0, workdir=workdir)
    try:
        yield BenchSandbox(process)
    finally:
        process.stop()


@dataclass(frozen=True, slots=True)
class Move:
    """One CSV row: ``number`` should end on ``target``."""

    number: str
    target: str


@dataclass(frozen=True)
class Account:
    """The sandbox's numbers (its own order) and profiles, read from ``/_control/dump``."""

    current: Mapping[str, str | None]
    profiles: tuple[str, ...]

    @classmethod
    def from_dump(cls, dump: Mapping[str, str | None]) -> Account:
        profiles = tuple(sorted({p for p in dump.values() if p}))
        if len(profiles) < 2:
            raise BenchError("the sandbox account has fewer than 2 profiles in use; "
                             "start it with more numbers or --profiles")
        return cls(dump, profiles)

    def moves(self, count: int, *, skip: int = 0) -> list[Move]:
        """``count`` rows, each moving a number to a profile it is not on now (a real write)."""
        numbers = list(self.current)[skip:skip + count]
        if len(numbers) < count:
            raise BenchError(f"the sandbox has {len(self.current)} numbers; {skip + count} are needed")
        return self.moves_for(numbers)

    def moves_for(self, numbers: Sequence[str]) -> list[Move]:
        """One row per number, each to a profile the number is not on now."""
        k = len(self.profiles)
        moves = []
        for i, number in enumerate(numbers):
            target = self.profiles[i % k]
            if target == self.current[number]:
                target = self.profiles[(i + 1) % k]
            moves.append(Move(number, target))
        return moves

    def in_place(self, count: int) -> list[Move]:
        """``count`` rows whose number is already on its target (no write needed)."""
        rows = [Move(n, p) for n, p in self.current.items() if p][:count]
        if len(rows) < count:
            raise BenchError(f"the sandbox has fewer than {count} assigned numbers")
        return rows


def write_csv(path: Path, moves: Sequence[Move],
              written: Callable[[str, int], str] | None = None) -> Path:
    """An assign CSV (``phone_number,messaging_profile_id``) of ``moves``, in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(("phone_number", "messaging_profile_id"))
        for i, move in enumerate(moves):
            out.writerow((move.number if written is None else written(move.number, i), move.target))
    return path


def read_moves(path: Path) -> list[Move]:
    """What a plain script does first: read the whole CSV (E.164 numbers expected)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [Move(row["phone_number"].strip(), row["messaging_profile_id"].strip())
                for row in csv.DictReader(handle)]


def wrong_final_state(dump: Mapping[str, str | None], moves: Sequence[Move]) -> int:
    """Rows whose number is not on its target profile now."""
    return sum(1 for m in moves if (dump.get(m.number) or "") != m.target)


def poll(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.01) -> T:
    """Call ``check`` until it returns a value; BenchError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # polling a condition with a deadline


def patch_count(stats: Mapping[str, Any]) -> int:
    """PATCH requests the sandbox answered (any status) or that were dropped."""
    routes: Mapping[str, Mapping[str, int]] = stats["requests"]
    return sum(n for route, by_status in routes.items() if route.startswith("PATCH ")
               for n in by_status.values())


def run_async(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run one contender on a fresh event loop, cancelled if it outlives ``timeout``."""
    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise BenchError(f"did not finish within {timeout:g} s") from None
    return asyncio.run(bounded())


def describe(error: BaseException, chars: int = 400) -> str:
    """One line for a table cell: the innermost cause of an exception group, shortened."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = " ".join(str(error).split()) or "(no message)"
    name = type(error).__name__
    line = text if isinstance(error, BenchError) else f"{name}: {text}"
    return line if len(line) <= chars else line[: chars - 3] + "..."


def say(text: str) -> None:
    """A progress line while a scenario runs (the tables come at its end)."""
    print(f"   {text}", flush=True)

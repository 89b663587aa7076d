"""What a user would otherwise run: the loops bulkops is measured against.

They are written the way such scripts are found in the wild, not tuned: fixing them is
what bulkops is for. Each reads the CSV, sends one
``PATCH /phone_numbers/{number}/messaging`` per row and counts what came back.

- ``sequential_loop``: Telnyx's guide, one PATCH after another; on a 429 it sleeps as
  ``Retry-After`` says (1 s if absent) and sends the row again.
- ``tenacity_loop``: the typical async script: ``asyncio.Semaphore(32)`` over
  ``asyncio.gather``, and tenacity retrying 429, 5xx and connection errors with
  ``wait_exponential(multiplier=1, min=1, max=10)``, ``stop_after_attempt(8)``.
- ``bare_loop``: the floor for overhead: 32 workers, no retry, no journal, no validation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from .harness import Move, read_moves

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True, slots=True)
class LoopResult:
    rows: int
    ok: int  # rows answered 200 in the end
    failed: int  # rows the loop gave up on
    attempts: int  # PATCHes sent
    elapsed: float  # seconds, from reading the CSV to the last answer


def _url(base_url: str, number: str) -> str:
    return f"{base_url}/phone_numbers/{quote(number, safe='')}/messaging"


def _session(api_key: str, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {api_key}", **JSON_HEADERS},
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=30),
    )


def _retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds to wait; the guide's 1 s when the header is absent or not a number."""
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


async def sequential_loop(base_url: str, api_key: str, csv_path: Path,
                          limit: int | None = None) -> LoopResult:
    """Telnyx's guide: for each row, PATCH and wait for the answer; 429 -> sleep, send again."""
    started = time.perf_counter()
    moves = read_moves(csv_path)[:limit]
    ok = failed = attempts = 0
    async with _session(api_key, 1) as session:
        for move in moves:
            while True:
                attempts += 1
                try:
                    async with session.patch(_url(base_url, move.number),
                                             json={"messaging_profile_id": move.target}) as resp:
                        await resp.read()
                        if resp.status == 429:  # the guide's wait, then the same row again
                            await asyncio.sleep(_retry_after(resp.headers.get("Retry-After")))
                            continue
                        ok += resp.status == 200
                        failed += resp.status != 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    failed += 1
                break
    return LoopResult(len(moves), ok, failed, attempts, time.perf_counter() - started)


class _Retryable(Exception):
    """429 or 5xx: the script's signal to tenacity."""


async def tenacity_loop(base_url: str, api_key: str, csv_path: Path,
                        concurrency: int = 32) -> LoopResult:
    """Semaphore(concurrency) + gather + tenacity exponential backoff on 429/5xx/errors."""
    started = time.perf_counter()
    moves = read_moves(csv_path)
    attempts = 0
    semaphore = asyncio.Semaphore(concurrency)

    async def send(session: aiohttp.ClientSession, move: Move) -> bool:
        nonlocal attempts
        async with semaphore:
            try:
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception_type(
                        (_Retryable, aiohttp.ClientError, asyncio.TimeoutError)),
                    wait=wait_exponential(multiplier=1, min=1, max=10),
                    stop=stop_after_attempt(8),
                    reraise=True,
                ):
                    with attempt:
                        attempts += 1
                        async with session.patch(_url(base_url, move.number),
                                                 json={"messaging_profile_id": move.target}) as resp:
                            await resp.read()
                            if resp.status == 429 or resp.status >= 500:
                                raise _Retryable(f"HTTP {resp.status}")
                            return resp.status == 200
            except (_Retryable, aiohttp.ClientError, asyncio.TimeoutError):
                return False
            return False  # pragma: no cover - AsyncRetrying either returns or raises

    async with _session(api_key, concurrency + 8) as session:
        outcomes = await asyncio.gather(*(send(session, move) for move in moves))
    ok = sum(outcomes)
    return LoopResult(len(moves), ok, len(moves) - ok, attempts, time.perf_counter() - started)


async def bare_loop(base_url: str, api_key: str, csv_path: Path, concurrency: int = 32) -> LoopResult:
    """The fastest honest loop: ``concurrency`` workers sharing one iterator, nothing else."""
    started = time.perf_counter()
    moves = read_moves(csv_path)
    rows: Iterator[Move] = iter(moves)
    ok = attempts = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok, attempts
        for move in rows:  # a shared iterator: each row goes to exactly one worker
            attempts += 1
            async with session.patch(_url(base_url, move.number),
                                     json={"messaging_profile_id": move.target}) as resp:
                await resp.read()
                ok += resp.status == 200

    async with _session(api_key, concurrency + 8) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return LoopResult(len(moves), ok, len(moves) - ok, attempts, time.perf_counter() - started)

"""A scriptable Telnyx stand-in for TelnyxClient tests: an aiohttp.web server on loopback that
answers each request with the next scripted response and records what it saw, plus a clock that
records and skips the client's sleeps."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from bulkops.telnyx.client import PAGE_SIZE, TelnyxClient
from bulkops.telnyx.ratelimit import RateLimiter
from bulkops.telnyx.retry import RetryPolicy

KEY = "KEY0123456789secretSECRETsecret"
PROFILE = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
NUMBER = "+13125550001"
FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02)

Respond = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SkippingClock:
    """Real time, except that the client's sleeps (backoff, holds) are recorded and skipped."""

    def __init__(self) -> None:
        self.skipped = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return time.monotonic() + self.skipped

    def wall(self) -> float:
        return time.time() + self.skipped

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.skipped += seconds
        await asyncio.sleep(0)


@dataclass
class Seen:
    method: str
    raw_path: str
    raw_query: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival


@dataclass
class FakeTelnyx:
    """Answers each request with the next scripted response, else a plausible success."""

    base_url: str = ""
    seen: list[Seen] = field(default_factory=list)
    script: deque[Respond] = field(default_factory=deque)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def then(self, *responses: Respond) -> None:
        self.script.extend(responses)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.rel_url.raw_path,
                request.rel_url.raw_query_string,
                dict(request.query),
                dict(request.headers),
                body,
                time.monotonic(),
            )
        )
        if self.script:
            return await self.script.popleft()(request)
        if request.method == "PATCH":
            wanted = json.loads(body)["messaging_profile_id"]
            return web.json_response({"data": number(NUMBER, wanted or None)})
        return web.json_response({"data": [], "meta": meta(1, 1)})


def number(phone: str, profile: str | None, number_id: str = "1293384261075731499") -> dict[str, Any]:
    return {
        "record_type": "messaging_settings",
        "id": number_id,
        "phone_number": phone,
        "messaging_profile_id": profile,
    }


def meta(page: int, pages: int) -> dict[str, int]:
    return {"page_number": page, "page_size": PAGE_SIZE, "total_pages": pages, "total_results": pages * 2}


def reply(status: int, payload: Any = None, headers: dict[str, str] | None = None) -> Respond:
    async def respond(request: web.Request) -> web.StreamResponse:
        return web.json_response(payload, status=status, headers=headers)

    return respond


def telnyx_error(
    status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None
) -> Respond:
    error = {"code": code, "title": title, "detail": detail, "source": {"pointer": "/messaging_profile_id"}}
    return reply(status, {"errors": [error]}, headers)


def text(status: int, body: str, content_type: str = "text/html") -> Respond:
    async def respond(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type=content_type)

    return respond


async def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without a word: the client sees a disconnect, not a response."""
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=204)


def hang(server: FakeTelnyx) -> Respond:
    async def respond(request: web.Request) -> web.StreamResponse:
        await server.release.wait()  # until the test ends: longer than any client timeout
        return web.Response(status=204)

    return respond


def echo_key(status: int) -> Respond:
    """A hostile server that repeats the Authorization header back in its error."""

    async def respond(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        return await telnyx_error(status, "10009", f"Bad {auth}", f"You sent {auth}")(request)

    return respond


@pytest.fixture
async def server() -> AsyncIterator[FakeTelnyx]:
    fake = FakeTelnyx()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}/v2"
    try:
        yield fake
    finally:
        fake.release.set()
        await runner.cleanup()


def make_client(
    base_url: str, *, policy: RetryPolicy = FAST, timeout: float = 5.0, clock: Any = None
) -> tuple[TelnyxClient, RateLimiter, Any]:
    clock = clock or SkippingClock()
    limiter = RateLimiter(clock=clock)
    client = TelnyxClient(base_url, KEY, limiter=limiter, policy=policy, timeout=timeout, clock=clock)
    return client, limiter, clock

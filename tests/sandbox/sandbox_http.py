"""A thin HTTP client for the sandbox's own tests: raw paths, parsed replies.

Paths are sent exactly as written (``encoded=True``), so a test controls whether
a "+" goes out raw or as ``%2B``.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from bulkops.sandbox import Sandbox
from tests.poll_kit import poll

_UNSET: Any = object()


def enc(number: str) -> str:
    """An E.164 number percent-encoded for a path, as API-NOTES asks."""
    return number.replace("+", "%2B")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any  # parsed JSON, or None when the body is not JSON
    text: str

    @property
    def error(self) -> dict[str, Any]:
        """The first Telnyx error object."""
        errors = self.body["errors"]
        assert isinstance(errors, list) and errors, self.text
        first: dict[str, Any] = errors[0]
        return first

    @property
    def data(self) -> Any:
        return self.body["data"]


class Api:
    def __init__(self, session: aiohttp.ClientSession, sandbox: Sandbox) -> None:
        self.session = session
        self.sandbox = sandbox

    @classmethod
    @asynccontextmanager
    async def open(cls, sandbox: Sandbox, *, force_close: bool = False) -> AsyncIterator[Api]:
        """``force_close``: a new connection per request (aiohttp retries once on a reused one)."""
        connector = aiohttp.TCPConnector(force_close=force_close)
        async with aiohttp.ClientSession(connector=connector) as session:
            yield cls(session, sandbox)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = _UNSET,
        data: bytes | str | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        auth: bool = True,
        timeout: float = 30.0,
        origin: bool = False,
    ) -> Reply:
        """``path`` is appended to the base URL (or to the origin when ``origin``), unencoded."""
        base = self.sandbox.origin if origin else self.sandbox.base_url
        sent: dict[str, str] = dict(headers or {})
        if auth:
            sent["Authorization"] = f"Bearer {key if key is not None else self.sandbox.api_key}"
        if json is not _UNSET:
            data = jsonlib.dumps(json)
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method,
            URL(base + path, encoded=True),
            data=data,
            headers=sent,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            try:
                body = jsonlib.loads(text) if text else None
            except ValueError:
                body = None
            return Reply(response.status, response.headers, body, text)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("PATCH", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("POST", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("DELETE", path, **kwargs)


async def wait_for_order(api: Api, order_id: str, within: float = 30.0) -> dict[str, list[str]]:
    """The order's three lists once nothing is pending."""
    async def status() -> Any:
        return (await api.get(f"/messaging_numbers_bulk_updates/{order_id}")).data

    data = await poll(status, until=lambda d: not d["pending"], within=within, what=f"order {order_id} to settle",
                      explain=lambda d: f"still pending: {len(d['pending'])}")
    return {key: data[key] for key in ("success", "pending", "failed")}

"""Fixtures of the sandbox's own tests: an HTTP client bound to the ``sandbox`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from bulkops.sandbox import Sandbox
from tests.sandbox.sandbox_http import Api


@pytest_asyncio.fixture
async def api(sandbox: Sandbox) -> AsyncIterator[Api]:
    async with Api.open(sandbox) as client:
        yield client

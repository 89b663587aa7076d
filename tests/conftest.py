"""Generic fixtures for the whole suite: a sandbox server per test, or several.

    async def test_something(sandbox):            # numbers=300, profiles=4, seed=7
        ...

    async def test_other(sandbox_factory):
        async with sandbox_factory(rate=5, window=60) as limited, sandbox_factory(seed=1) as other:
            ...

Each sandbox listens on a free loopback port; ``sandbox.base_url`` ends in
``/v2`` and ``sandbox.api_key`` is the bearer key it accepts.
"""

from __future__ import annotations

import os

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings

from bulkops.sandbox import FaultConfig, Sandbox, SandboxConfig, running_sandbox

# CI runs the property tests on a fixed seed: a run that passed passes again (the examples
# still cover what the strategies draw; explore new ones locally, where the seed is random).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

SMALL_SANDBOX = SandboxConfig(numbers=300, profiles=4, seed=7)

SandboxFactory = Callable[..., AbstractAsyncContextManager[Sandbox]]


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A small sandbox (300 numbers, 4 profiles, seed 7), fresh for each test."""
    async with running_sandbox(SMALL_SANDBOX) as running:
        yield running


@pytest.fixture
def sandbox_factory() -> SandboxFactory:
    """``sandbox_factory(**SandboxConfig kwargs)`` -> async context manager of a ``Sandbox``.

    ``faults`` may be a ``FaultConfig`` or a dict of its fields. Several may be open at once.
    """

    def factory(**kwargs: Any) -> AbstractAsyncContextManager[Sandbox]:
        faults = kwargs.get("faults")
        if isinstance(faults, Mapping):
            kwargs["faults"] = FaultConfig(**faults)
        return running_sandbox(SandboxConfig(**kwargs))

    return factory

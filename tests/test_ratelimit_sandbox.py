"""The limiter against the real sandbox's three limiters, with odd headers: whole jobs end in
the exact final state with (almost) no 429s. Speed is measured by ``python -m bench``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.journal.states import ItemState
from bulkops.models import Kind
from bulkops.sandbox import LimiterKind
from tests.conftest import SandboxFactory
from tests.jobhelpers import other_profile, run, write_csv


@pytest.mark.parametrize("kind", list(LimiterKind))
async def test_a_job_against_each_limiter_with_30_percent_odd_headers_ends_exact(
        sandbox_factory: SandboxFactory, tmp_path: Path, kind: LimiterKind) -> None:
    async with sandbox_factory(numbers=300, profiles=4, seed=7, rate=100, limiter=kind,
                               faults={"odd_header_rate": 0.3, "latency_ms": 20}) as sandbox:
        numbers = sandbox.numbers()[:150]
        targets = {n: other_profile(sandbox, sandbox.profile_of(n)) for n in numbers}
        csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                             targets.items())

        result = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db", concurrency=16)

        assert {n: sandbox.profile_of(n) for n in numbers} == targets
        assert result.counts.get(ItemState.DONE) == 150 and result.counts.get(ItemState.FAILED) == 0
        assert sandbox.stats.rate_limited <= 0.01 * sandbox.stats.total_requests + 1

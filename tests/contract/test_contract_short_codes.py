"""Short codes against docs/telnyx/short-codes-10dlc.openapi.yml: the sandbox's answers, the
requests bulkops sends, and Telnyx's own Python SDK driving the sandbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
import telnyx

from bulkops.config import Secret
from bulkops.jobs import rollback
from bulkops.models import Kind
from bulkops.sandbox import FaultConfig, Sandbox, SandboxConfig, running_sandbox
from tests.contract.spec import validate_exchange
from tests.jobhelpers import run, settings_for, write_csv
from tests.sandbox.sandbox_http import Api

ZERO_UUID = "00000000-0000-4000-8000-000000000000"


@pytest_asyncio.fixture
async def recording() -> AsyncIterator[Sandbox]:
    config = SandboxConfig(numbers=60, profiles=3, short_codes=9, seed=11, record=True)
    async with running_sandbox(config) as sandbox:
        yield sandbox


def short_code_exchanges(sandbox: Sandbox) -> list[str]:
    """Validate every recorded exchange; the short-code ones, as "METHOD path" lines."""
    for exchange in sandbox.recorded:
        validate_exchange(exchange)
    return [f"{e.method} {e.path}" for e in sandbox.recorded if "short_codes" in e.path]


async def test_every_short_code_answer_of_the_sandbox_is_in_the_spec(recording: Sandbox) -> None:
    profile = recording.profile_ids()[0]
    code = next(c for c, p in recording.short_codes().items() if p == profile)
    code_id = recording.short_code_id(code)
    async with Api.open(recording) as api:
        for path in ("/short_codes", "/short_codes?filter[messaging_profile_id]=null",
                     f"/short_codes?filter[messaging_profile_id]={profile}",
                     f"/short_codes?page[number]=2&page[size]=2",
                     f"/messaging_profiles/{profile}/short_codes", f"/short_codes/{code_id}"):
            await api.request("GET", path)
        await api.request("PATCH", f"/short_codes/{code_id}", json={"messaging_profile_id": ""})
        await api.request("PATCH", f"/short_codes/{code_id}",
                          json={"messaging_profile_id": profile, "tags": ["vip"]})
        # refusals: each in Telnyx's error shape
        await api.request("GET", f"/short_codes/{ZERO_UUID}")
        await api.request("PATCH", f"/short_codes/{code_id}", json={"messaging_profile_id": ZERO_UUID})
        await api.request("GET", f"/messaging_profiles/{ZERO_UUID}/short_codes")
    statuses = [e.status for e in recording.recorded]
    assert statuses == [200] * 8 + [404, 422, 404]
    assert len(short_code_exchanges(recording)) == 11
    null_listing = json.loads(recording.recorded[1].response_body)["data"]
    assert null_listing and all(c["messaging_profile_id"] is None for c in null_listing)


async def test_a_migrate_and_its_rollback_send_only_requests_the_spec_allows(
        recording: Sandbox, tmp_path: Path) -> None:
    source, target, _ = recording.profile_ids()
    csv_path = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"], [[source, target]])
    assert (await run(recording, Kind.MIGRATE, csv_path, tmp_path / "m.db")).exit_code == 0
    unassign = write_csv(tmp_path / "u.csv", ["phone_number", "type"],
                         [[next(c for c, p in recording.short_codes().items() if p == target),
                           "short_code"]])
    assert (await run(recording, Kind.UNASSIGN, unassign, tmp_path / "u.db")).exit_code == 0
    undone = await rollback(tmp_path / "m.db", settings_for(recording), Secret(recording.api_key))
    assert undone.exit_code == 0
    sent = short_code_exchanges(recording)
    assert f"GET /v2/messaging_profiles/{source}/short_codes" in sent
    bodies = [json.loads(e.request_body) for e in recording.recorded
              if e.method == "PATCH" and "short_codes" in e.path]
    assert {"messaging_profile_id": ""} in bodies  # unassign sends "", never null
    assert all(isinstance(b["messaging_profile_id"], str) for b in bodies)


async def test_short_code_writes_ride_out_injected_faults_under_the_rate_limit(
        tmp_path: Path) -> None:
    faults = FaultConfig(error_rate=0.2, error_after_write_rate=0.2, drop_rate=0.1, seed=3)
    config = SandboxConfig(numbers=10, profiles=2, short_codes=30, seed=8, rate=10, window=0.2,
                           faults=faults)
    async with running_sandbox(config) as sandbox:
        source, target = sandbox.profile_ids()
        moving = sorted(c for c, p in sandbox.short_codes().items() if p == source)
        csv_path = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"],
                             [[source, target]])
        result = await run(sandbox, Kind.MIGRATE, csv_path, tmp_path / "m.db")
        assert result.exit_code == 0
        assert all(sandbox.short_codes()[c] == target for c in moving)
        injected = sandbox.stats.faults_injected
        assert injected["error"] and injected["error_after_write"] and injected["drop"]


async def test_telnyxs_python_sdk_lists_reads_and_rebinds_the_sandboxs_short_codes(
        recording: Sandbox) -> None:
    profile, other, _ = recording.profile_ids()
    client = telnyx.AsyncTelnyx(api_key=recording.api_key, base_url=recording.base_url,
                                max_retries=0, _strict_response_validation=True)
    async with client:
        listed = [code async for code in client.short_codes.list(page_size=4)]  # pages on
        assert sorted(c.short_code for c in listed if c.short_code) == sorted(recording.short_codes())
        unbound = [c async for c in client.short_codes.list(
            filter={"messaging_profile_id": "null"})]
        assert {c.short_code for c in unbound} == {
            c for c, p in recording.short_codes().items() if p is None}
        on_profile = [c async for c in client.messaging_profiles.list_short_codes(profile)]
        assert {c.short_code for c in on_profile} == {
            c for c, p in recording.short_codes().items() if p == profile}
        chosen = on_profile[0]
        assert chosen.id is not None and chosen.short_code is not None
        read = await client.short_codes.retrieve(chosen.id)
        assert read.data is not None and read.data.messaging_profile_id == profile
        moved = await client.short_codes.update(chosen.id, messaging_profile_id=other)
        assert moved.data is not None and moved.data.messaging_profile_id == other
        unbound_now = await client.short_codes.update(chosen.id, messaging_profile_id="")
        assert unbound_now.data is not None and unbound_now.data.messaging_profile_id is None
    assert recording.short_codes()[chosen.short_code] is None
    short_code_exchanges(recording)  # and what the SDK sent and got is in the spec

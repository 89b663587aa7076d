"""Every kind of answer the sandbox gives, success and error, validates against the spec."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bulkops.sandbox import FaultConfig, RecordedExchange, Sandbox, SandboxConfig, running_sandbox
from tests.contract.spec import ContractError, validate_error_body, validate_exchange
from tests.poll_kit import poll
from tests.sandbox.sandbox_http import Api, enc

ZERO_UUID = "00000000-0000-4000-8000-000000000000"


@pytest_asyncio.fixture
async def recording() -> AsyncIterator[Sandbox]:
    async with running_sandbox(SandboxConfig(numbers=120, profiles=4, seed=7, record=True)) as sandbox:
        yield sandbox


@pytest_asyncio.fixture
async def client(recording: Sandbox) -> AsyncIterator[Api]:
    async with Api.open(recording) as api:
        yield api


async def call(
    sandbox: Sandbox, api: Api, method: str, path: str, *, check_request: bool = True, **kwargs: Any
) -> RecordedExchange:
    """Send one request and validate what was recorded for it."""
    before = len(sandbox.recorded)
    await api.request(method, path, **kwargs)
    (exchange,) = sandbox.recorded[before:]
    validate_exchange(exchange, check_request=check_request)
    return exchange


def unassigned(sandbox: Sandbox) -> str:
    return next(n for n, p in sandbox.dump().items() if p is None)


async def test_number_reads_and_writes_are_in_the_spec(recording: Sandbox, client: Api) -> None:
    number = unassigned(recording)
    profile = recording.profile_ids()[0]
    path = f"/phone_numbers/{enc(number)}/messaging"
    assert (await call(recording, client, "GET", path)).status == 200
    assert (await call(recording, client, "GET", f"/phone_numbers/{number}/messaging")).status == 200
    assigned = await call(recording, client, "PATCH", path, json={"messaging_profile_id": profile})
    assert assigned.status == 200
    number_id = json.loads(assigned.response_body)["data"]["id"]
    assert (await call(recording, client, "GET", f"/phone_numbers/{number_id}/messaging")).status == 200
    assert (await call(recording, client, "PATCH", path, json={"messaging_profile_id": ""})).status == 200
    assert (await call(recording, client, "PATCH", path, json={"messaging_product": "P2P", "tags": ["a"]})).status == 200
    # null keeps the value: the spec types the field as a string, so only the answer is checked
    kept = await call(recording, client, "PATCH", path, json={"messaging_profile_id": None}, check_request=False)
    assert kept.status == 200


async def test_listings_are_in_the_spec(recording: Sandbox, client: Api) -> None:
    profile = recording.profile_ids()[1]
    numbers = ",".join(enc(n) for n in recording.numbers()[:3])
    for path in (
        "/phone_numbers/messaging",
        f"/phone_numbers/messaging?filter[phone_number]={numbers}&page[size]=250",
        f"/phone_numbers/messaging?filter[messaging_profile_id]={profile}&page[number]=2&page[size]=10",
        "/phone_numbers/messaging?filter[type]=tollfree&sort[phone_number]=desc",
        "/phone_numbers/messaging?filter[phone_number][contains]=555&page[number]=99",
        "/messaging_profiles?page[size]=2",
        "/messaging_profiles?filter[name][contains]=a",
        f"/messaging_profiles/{profile}/phone_numbers?page[size]=250",
    ):
        assert (await call(recording, client, "GET", path)).status == 200, path


async def test_profile_lifecycle_is_in_the_spec(recording: Sandbox, client: Api) -> None:
    created = await call(
        recording,
        client,
        "POST",
        "/messaging_profiles",
        json={
            "name": "Contract",
            "whitelisted_destinations": ["US", "CA"],
            "number_pool_settings": {"toll_free_weight": 10, "long_code_weight": 1, "skip_unhealthy": True},
            "url_shortener_settings": {"domain": "acct.fyi"},
            "daily_spend_limit": "100.00",
        },
    )
    assert created.status == 200
    profile_id = json.loads(created.response_body)["data"]["id"]
    path = f"/messaging_profiles/{profile_id}"
    assert (await call(recording, client, "GET", path)).status == 200
    assert (await call(recording, client, "PATCH", path, json={"name": "Renamed", "enabled": False})).status == 200
    assert (await call(recording, client, "DELETE", path)).status == 200


async def test_bulk_orders_are_in_the_spec(recording: Sandbox, client: Api) -> None:
    created = await call(
        recording,
        client,
        "POST",
        "/messaging_numbers_bulk_updates",
        json={"messaging_profile_id": recording.profile_ids()[0], "numbers": recording.numbers()[:5]},
    )
    order_id = json.loads(created.response_body)["data"]["order_id"]

    async def status() -> RecordedExchange:  # each poll's exchange is validated too
        return await call(recording, client, "GET", f"/messaging_numbers_bulk_updates/{order_id}")

    settled = await poll(status, until=lambda s: not json.loads(s.response_body)["data"]["pending"],
                         within=30, what=f"order {order_id} to settle")
    assert settled.status == 200


async def test_error_answers_are_in_the_spec(recording: Sandbox, client: Api) -> None:
    number_path = f"/phone_numbers/{enc(recording.numbers()[0])}/messaging"
    expected = {
        404: [
            await call(recording, client, "GET", f"/phone_numbers/{enc('+19999999999')}/messaging"),
            await call(recording, client, "GET", f"/messaging_profiles/{ZERO_UUID}"),
            await call(recording, client, "GET", f"/messaging_numbers_bulk_updates/{ZERO_UUID}"),
        ],
        422: [
            await call(recording, client, "PATCH", number_path, json={"messaging_profile_id": ZERO_UUID}),
            await call(recording, client, "PATCH", number_path, json={"messaging_profile_id": "nope"}),
            await call(recording, client, "POST", "/messaging_profiles", json={"name": "x"}, check_request=False),
            await call(recording, client, "PATCH", number_path, json={"messaging_profile_id": 7}, check_request=False),
        ],
        400: [
            await call(recording, client, "PATCH", number_path, data=b"{", check_request=False,
                       headers={"Content-Type": "application/json"}),
            await call(recording, client, "GET", "/phone_numbers/messaging?page[size]=251", check_request=False),
        ],
        401: [
            await call(recording, client, "GET", number_path, auth=False, check_request=False),
            await call(recording, client, "GET", number_path, key="wrong", check_request=False),
        ],
    }  # fmt: skip
    for status, exchanges in expected.items():
        assert [e.status for e in exchanges] == [status] * len(exchanges)


async def test_rate_limited_and_injected_5xx_answers_are_telnyx_shaped(recording: Sandbox, client: Api) -> None:
    recording.set_faults(FaultConfig(error_rate=1.0))
    failed = await call(recording, client, "GET", "/messaging_profiles")
    assert failed.status in (500, 502, 503)
    recording.set_faults(FaultConfig())
    recording.set_rate(1, 60)
    await call(recording, client, "GET", "/messaging_profiles")
    limited = await call(recording, client, "GET", "/messaging_profiles")
    assert limited.status == 429


async def test_unknown_route_answers_in_the_error_shape(recording: Sandbox, client: Api) -> None:
    reply = await client.get("/not/a/route")
    assert reply.status == 404
    validate_error_body(reply.body)


async def test_validate_exchange_rejects_what_the_spec_does_not_allow(recording: Sandbox, client: Api) -> None:
    good = await call(recording, client, "GET", f"/phone_numbers/{enc(recording.numbers()[0])}/messaging")
    body = json.loads(good.response_body)
    body["data"]["id"] = 12345  # the spec says string
    with pytest.raises(ContractError, match="response outside the spec"):
        validate_exchange(dataclasses.replace(good, response_body=json.dumps(body).encode()))
    unauthenticated = dataclasses.replace(good, request_headers=())
    with pytest.raises(ContractError, match="request outside the spec"):
        validate_exchange(unauthenticated)
    with pytest.raises(ContractError, match="error body"):
        validate_error_body({"errors": [{"code": 10015, "title": "x"}]})  # code must be a string

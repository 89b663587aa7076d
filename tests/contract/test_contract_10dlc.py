"""Every kind of answer the 10DLC routes give, success and error, validates against the spec
(docs/telnyx/short-codes-10dlc.openapi.yml); so do the requests the tests send."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bulkops.sandbox import FaultConfig, RecordedExchange, Sandbox, SandboxConfig, running_sandbox
from tests.contract.spec import ContractError
from tests.contract.spec_10dlc import validate_error_body, validate_exchange
from tests.sandbox.sandbox_http import Api, enc
from tests.tendlc_kit import (
    active, campaign, eventually, linked_number, toll_free_on_profile, unassigned_long_code,
    unlinked_long_codes,
)

LINKS = "/10dlc/phone_number_campaigns"
BY_PROFILE = "/10dlc/phoneNumberAssignmentByProfile"


@pytest_asyncio.fixture
async def recording() -> AsyncIterator[Sandbox]:
    config = SandboxConfig(numbers=200, profiles=3, seed=11, record=True, assign_delay=0.0,
                           assign_fail_rate=0.5)
    async with running_sandbox(config) as sandbox:
        yield sandbox


@pytest_asyncio.fixture
async def client(recording: Sandbox) -> AsyncIterator[Api]:
    async with Api.open(recording) as api:
        yield api


async def call(sandbox: Sandbox, api: Api, method: str, path: str, *, check_request: bool = True,
               **kwargs: Any) -> RecordedExchange:
    """Send one request and validate what was recorded for it."""
    before = len(sandbox.recorded)
    await api.request(method, path, **kwargs)
    (exchange,) = sandbox.recorded[before:]
    validate_exchange(exchange, check_request=check_request)
    return exchange


def body(exchange: RecordedExchange) -> Any:
    return json.loads(exchange.response_body)


async def test_link_lifecycle_answers_are_in_the_spec_in_both_path_encodings(
        recording: Sandbox, client: Api) -> None:
    number = unlinked_long_codes(recording)[0]
    first, second = active(recording, 0), active(recording, 1)
    created = await call(recording, client, "POST", LINKS, json={"phoneNumber": number, "campaignId": first})
    assert body(created)["assignmentStatus"] == "PENDING_ASSIGNMENT"
    for path in (f"{LINKS}/{number}", f"{LINKS}/{enc(number)}"):
        assert (await call(recording, client, "GET", path)).status == 200
    moved = await call(recording, client, "PUT", f"{LINKS}/{enc(number)}",
                       json={"phoneNumber": number, "campaignId": second})
    assert moved.status == 200

    async def settled() -> RecordedExchange | None:
        read = await call(recording, client, "GET", f"{LINKS}/{number}")
        return None if body(read)["assignmentStatus"].startswith("PENDING") else read

    final = await eventually(settled)
    assert body(final)["assignmentStatus"] in ("ASSIGNED", "FAILED_ASSIGNMENT")
    removed = await call(recording, client, "DELETE", f"{LINKS}/{number}")
    assert body(removed)["assignmentStatus"] == "PENDING_UNASSIGNMENT"


async def test_a_failed_link_with_its_reasons_is_in_the_spec(recording: Sandbox, client: Api) -> None:
    numbers = unlinked_long_codes(recording, 12)
    for number in numbers:  # half of them fail, seeded
        await call(recording, client, "POST", LINKS, json={"phoneNumber": number, "campaignId": active(recording)})
    recording.tendlc.settle()
    failed = next(n for n in numbers if recording.tendlc.links()[n].status.value == "FAILED_ASSIGNMENT")
    read = await call(recording, client, "GET", f"{LINKS}/{enc(failed)}")
    assert body(read)["failureReasons"]


async def test_link_and_campaign_listings_are_in_the_spec(recording: Sandbox, client: Api) -> None:
    some = campaign(recording, "Account notifications")
    for path in (
        LINKS,
        f"{LINKS}?page=2&recordsPerPage=5",
        f"{LINKS}?page=999&recordsPerPage=500",
        f"{LINKS}?filter[telnyx_campaign_id]={some.campaign_id}&sort=phoneNumber",
        f"{LINKS}?filter[telnyx_brand_id]={some.brand_id}&sort=-assignmentStatus",
        f"{LINKS}?filter[tcr_campaign_id]={some.tcr_campaign_id}&filter[tcr_brand_id]={some.tcr_brand_id}",
        f"/10dlc/campaign?brandId={some.brand_id}",
        f"/10dlc/campaign?brandId={some.brand_id}&page=2&recordsPerPage=3&sort=-assignedPhoneNumbersCount",
        f"/10dlc/campaign/{some.campaign_id}",
        f"/10dlc/campaign/{campaign(recording, 'Loan offers').campaign_id}",
    ):
        assert (await call(recording, client, "GET", path)).status == 200, path


async def test_bulk_by_profile_task_answers_are_in_the_spec(recording: Sandbox, client: Api) -> None:
    profile = recording.profile_ids()[0]
    accepted = await call(recording, client, "POST", BY_PROFILE,
                          json={"messagingProfileId": profile, "campaignId": active(recording, 2)})
    assert accepted.status == 202
    task = body(accepted)["taskId"]
    assert (await call(recording, client, "GET", f"{BY_PROFILE}/{task}")).status == 200
    for query in ("", "?page=1&recordsPerPage=7", "?page=500"):
        assert (await call(recording, client, "GET", f"{BY_PROFILE}/{task}/phoneNumbers{query}")).status == 200


async def test_every_refusal_is_a_10dlc_error_in_the_spec(recording: Sandbox, client: Api) -> None:
    linked = linked_number(recording)
    expired = campaign(recording, "Spring promotion 2024").campaign_id
    unlinked = unlinked_long_codes(recording)[0]
    cases: list[tuple[str, str, Any, int]] = [
        ("GET", f"{LINKS}/{enc(unlinked)}", None, 404),
        ("GET", f"{LINKS}/+19995550000", None, 404),
        ("GET", "/10dlc/campaign/no-such-campaign", None, 404),
        ("POST", LINKS, {"phoneNumber": linked, "campaignId": active(recording)}, 422),
        ("POST", LINKS, {"phoneNumber": unlinked, "campaignId": expired}, 422),
        ("POST", LINKS, {"phoneNumber": toll_free_on_profile(recording), "campaignId": active(recording)}, 422),
        ("POST", LINKS, {"phoneNumber": unassigned_long_code(recording), "campaignId": active(recording)}, 422),
        ("PUT", f"{LINKS}/{enc(unlinked)}", {"phoneNumber": unlinked, "campaignId": active(recording)}, 404),
        ("DELETE", f"{LINKS}/{enc(unlinked)}", None, 404),
        ("POST", BY_PROFILE, {"messagingProfileId": recording.profile_ids()[0], "campaignId": expired}, 422),
        ("GET", f"{BY_PROFILE}/no-such-task", None, 404),
    ]
    for method, path, payload, status in cases:
        kwargs = {} if payload is None else {"json": payload}
        exchange = await call(recording, client, method, path, **kwargs)
        assert exchange.status == status, (method, path, exchange.response_body)
    # Wrong on purpose: only the answers are checked.
    for method, path, payload in (
        ("POST", LINKS, {"phoneNumber": unlinked}),
        ("POST", BY_PROFILE, {"messagingProfileId": recording.profile_ids()[0]}),
        ("GET", f"{LINKS}?recordsPerPage=0", None),
        ("GET", "/10dlc/campaign", None),
    ):
        kwargs = {} if payload is None else {"json": payload}
        exchange = await call(recording, client, method, path, check_request=False, **kwargs)
        assert exchange.status in (400, 422), (method, path)
    removal = await call(recording, client, "DELETE", f"{LINKS}/{enc(linked)}")
    assert removal.status == 200
    busy = await call(recording, client, "PUT", f"{LINKS}/{enc(linked)}",
                      json={"phoneNumber": linked, "campaignId": active(recording)})
    assert busy.status in (409, 404)  # 409 while the removal is under way; 404 once it finished


async def test_auth_rate_limit_and_injected_faults_answer_in_the_spec(recording: Sandbox, client: Api) -> None:
    refused = await call(recording, client, "GET", LINKS, key="wrong-key", check_request=False)
    assert refused.status == 401
    recording.set_rate(1, 60.0)
    await call(recording, client, "GET", LINKS)
    limited = await call(recording, client, "GET", LINKS)
    assert limited.status == 429
    recording.set_rate(0, 1.0)
    recording.set_faults(FaultConfig(error_rate=1.0))
    failed = await call(recording, client, "GET", f"{LINKS}/{enc(linked_number(recording))}")
    assert failed.status is not None and failed.status >= 500


def test_a_body_without_errors_is_outside_the_10dlc_error_shape() -> None:
    with pytest.raises(ContractError):
        validate_error_body({"errors": []})
    validate_error_body({"errors": [{"code": "10015", "title": "Invalid value", "detail": "d"}]})


async def test_the_validator_refuses_a_link_answer_missing_a_required_field(
        recording: Sandbox, client: Api) -> None:
    exchange = await call(recording, client, "GET", f"{LINKS}/{enc(linked_number(recording))}")
    broken = json.loads(exchange.response_body)
    del broken["createdAt"]
    with pytest.raises(ContractError, match="response outside the spec"):
        validate_exchange(dataclasses.replace(exchange, response_body=json.dumps(broken).encode()))
    unwrapped = dataclasses.replace(exchange, response_body=json.dumps({"data": broken}).encode())
    with pytest.raises(ContractError):
        validate_exchange(unwrapped)

"""The 10DLC calls (bulkops.telnyx.campaigns) against the sandbox over loopback; every request
they send, and every answer, validates against short-codes-10dlc.openapi.yml."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bulkops.sandbox import FaultConfig, Sandbox, SandboxConfig, running_sandbox
from bulkops.telnyx.campaigns import (
    Campaign, CampaignLink, CampaignLinks, LinkStatus, Settled, SnapshotMethod, campaign_refusal, settlement,
)
from bulkops.telnyx.client import TelnyxClient
from bulkops.telnyx.ratelimit import RateLimiter
from bulkops.telnyx.retry import GaveUp, RetryPolicy
from tests.contract.spec_10dlc import validate_exchange
from tests.tendlc_kit import active, campaign, eventually, linked_number, unlinked_long_codes

FAST = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.02)
LIST_ROUTE = "GET /v2/10dlc/phone_number_campaigns"


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    config = SandboxConfig(numbers=300, profiles=3, seed=21, assign_delay=0.05, record=True)
    async with running_sandbox(config) as running:
        yield running


@pytest_asyncio.fixture
async def links(sandbox: Sandbox) -> AsyncIterator[CampaignLinks]:
    async with TelnyxClient(sandbox.base_url, sandbox.api_key, limiter=RateLimiter(), policy=FAST) as client:
        yield CampaignLinks(client)
    for exchange in sandbox.recorded:  # what the client sent and got, in the spec
        validate_exchange(exchange)


async def settled(links: CampaignLinks, number: str, desired: str) -> CampaignLink | None:
    async def probe() -> tuple[CampaignLink | None] | None:
        link = await links.get_link(number)
        return None if settlement(desired, link).state is Settled.PENDING else (link,)

    return (await eventually(probe))[0]


async def test_an_active_campaign_can_take_numbers(sandbox: Sandbox, links: CampaignLinks) -> None:
    check = await links.check_campaign(active(sandbox))
    assert check.usable and check.campaign is not None
    assert check.describe() == f"campaign {active(sandbox)} (Account notifications) can take numbers"


@pytest.mark.parametrize("description, reason", [
    ("Spring promotion 2024", "its status is EXPIRED"),
    ("Sweepstakes", "its campaignStatus is TCR_SUSPENDED"),
    ("Loan offers", "its campaignStatus is MNO_REJECTED (Use case not permitted for the brand's vertical.)"),
    ("Appointment reminders", "it is suspended with T-Mobile (isTMobileSuspended)"),
])
async def test_a_campaign_that_cannot_take_numbers_is_refused_with_the_reason(
        sandbox: Sandbox, links: CampaignLinks, description: str, reason: str) -> None:
    refused = campaign(sandbox, description).campaign_id
    check = await links.check_campaign(refused)
    assert not check.usable and check.reason == reason
    assert check.describe() == f"campaign {refused} ({description}) cannot take numbers: {reason}"


async def test_an_unknown_campaign_is_refused_as_missing(links: CampaignLinks) -> None:
    check = await links.check_campaign("4b300178-131c-d902-d54e-72d90ba1620j")
    assert not check.usable and check.campaign is None
    assert "no such campaign" in check.describe()


async def test_the_client_refuses_exactly_the_campaigns_the_sandbox_refuses(
        sandbox: Sandbox, links: CampaignLinks) -> None:
    for seeded in sandbox.tendlc.campaigns.values():
        check = await links.check_campaign(seeded.campaign_id)
        assert check.usable == (seeded.refusal() is None), seeded.description


async def test_one_numbers_link_is_read_and_a_number_without_one_reads_none(
        sandbox: Sandbox, links: CampaignLinks) -> None:
    number = linked_number(sandbox)
    link = await links.get_link(number)
    assert link is not None and link.phone_number == number and link.status == "ASSIGNED"
    assert link.campaign_id == sandbox.tendlc.links()[number].campaign_id
    assert await links.get_link(unlinked_long_codes(sandbox)[0]) is None
    sent = [e for e in sandbox.recorded if e.route.startswith("GET /v2/10dlc/phone_number_campaigns/")]
    assert all(e.path.startswith("/v2/10dlc/phone_number_campaigns/%2B") for e in sent)


async def test_the_listing_reads_every_link_in_ceil_total_over_size_requests(
        sandbox: Sandbox, links: CampaignLinks) -> None:
    expected = {n: link.campaign_id for n, link in sandbox.tendlc.links().items()}
    listed = await links.list_links(page_size=7)
    assert {n: link.campaign_id for n, link in listed.items()} == expected
    assert sandbox.stats.count(LIST_ROUTE) == math.ceil(len(expected) / 7)  # no empty page asked


async def test_the_listing_filters_by_campaign(sandbox: Sandbox, links: CampaignLinks) -> None:
    chosen = active(sandbox, 1)
    listed = await links.list_links(campaign_id=chosen)
    assert set(listed) == {n for n, link in sandbox.tendlc.links().items() if link.campaign_id == chosen}
    assert sandbox.stats.count(LIST_ROUTE) == 1


async def test_a_refused_page_size_is_asked_again_with_the_documented_default(
        sandbox: Sandbox, links: CampaignLinks) -> None:
    listed = await links.list_links(page_size=501)  # the sandbox takes at most 500
    assert set(listed) == set(sandbox.tendlc.links())
    assert sandbox.stats.count(LIST_ROUTE, 400) == 1


async def test_a_snapshot_of_a_few_numbers_reads_each_one(sandbox: Sandbox, links: CampaignLinks) -> None:
    few = [linked_number(sandbox), *unlinked_long_codes(sandbox, 2)]
    snap = await links.snapshot(few, page_size=7)  # about 50 links: 7 more pages > 3 GETs
    assert snap.method is SnapshotMethod.GET and snap.requests == 4
    assert list(snap.links) == few
    assert snap.links[few[0]] is not None and snap.links[few[1]] is None and snap.links[few[2]] is None
    assert sandbox.stats.count(LIST_ROUTE) == 1
    assert sandbox.stats.count("GET /v2/10dlc/phone_number_campaigns/{phoneNumber}") == 3


async def test_a_snapshot_of_many_numbers_reads_the_listing(sandbox: Sandbox, links: CampaignLinks) -> None:
    everyone = sandbox.numbers()
    snap = await links.snapshot(everyone, page_size=50)
    expected = sandbox.tendlc.links()
    assert snap.method is SnapshotMethod.LIST
    assert snap.requests == sandbox.stats.count(LIST_ROUTE) == math.ceil(len(expected) / 50)
    assert {n for n, link in snap.links.items() if link is not None} == set(expected)
    assert len(snap.links) == len(everyone)


async def test_a_posted_link_is_pending_then_assigned(sandbox: Sandbox, links: CampaignLinks) -> None:
    number = unlinked_long_codes(sandbox)[0]
    outcome = await links.create_link(number, active(sandbox))
    assert outcome.value.status == LinkStatus.PENDING_ASSIGNMENT.value and outcome.attempts == 1
    final = await settled(links, number, active(sandbox))
    assert final is not None and final.status == "ASSIGNED"


async def test_a_post_that_meets_the_link_it_asks_for_answers_that_link(
        sandbox: Sandbox, links: CampaignLinks) -> None:
    number = unlinked_long_codes(sandbox)[0]
    await links.create_link(number, active(sandbox))
    again = await links.create_link(number, active(sandbox))  # a resumed job sending it again
    assert again.value.campaign_id == active(sandbox)
    assert sandbox.tendlc.writes_by_number[number] == 1


async def test_a_post_retried_after_a_dropped_answer_does_not_fail_the_row(sandbox: Sandbox) -> None:
    number = unlinked_long_codes(sandbox)[0]
    sandbox.set_faults(FaultConfig(drop_rate=0.5, seed=6))  # seed 6: applied, answer dropped, then 422
    async with TelnyxClient(sandbox.base_url, sandbox.api_key, limiter=RateLimiter(),
                            policy=RetryPolicy(max_attempts=30, backoff_base=0.0)) as client:
        outcome = await CampaignLinks(client).create_link(number, active(sandbox))
    assert outcome.value.campaign_id == active(sandbox)
    assert sandbox.stats.faults_injected["drop_after_write"] == 1
    assert sandbox.stats.count("POST /v2/10dlc/phone_number_campaigns", 422) == 1  # the repeat met it
    assert sandbox.tendlc.writes_by_number[number] == 1


async def test_a_post_to_a_number_on_another_campaign_fails_with_telnyx_detail(
        sandbox: Sandbox, links: CampaignLinks) -> None:
    number = linked_number(sandbox)
    other = next(c for c in (active(sandbox, 0), active(sandbox, 1))
                 if c != sandbox.tendlc.links()[number].campaign_id)
    with pytest.raises(GaveUp) as refused:
        await links.create_link(number, other)
    assert refused.value.info.status == 422 and "PUT" in (refused.value.info.detail or "")


async def test_a_moved_link_settles_on_the_new_campaign(sandbox: Sandbox, links: CampaignLinks) -> None:
    number = linked_number(sandbox)
    other = next(c for c in (active(sandbox, 0), active(sandbox, 1))
                 if c != sandbox.tendlc.links()[number].campaign_id)
    moved = await links.move_link(number, other)
    assert moved.value.status == "PENDING_ASSIGNMENT" and moved.value.campaign_id == other
    final = await settled(links, number, other)
    assert final is not None and final.campaign_id == other and final.status == "ASSIGNED"


async def test_a_removed_link_is_gone_and_removing_it_again_answers_none(
        sandbox: Sandbox, links: CampaignLinks) -> None:
    number = linked_number(sandbox)
    removed = await links.remove_link(number)
    assert removed.value is not None and removed.value.status == "PENDING_UNASSIGNMENT"
    assert await settled(links, number, "") is None
    assert (await links.remove_link(number)).value is None


async def test_a_failed_link_carries_telnyx_failure_reasons() -> None:
    config = SandboxConfig(numbers=100, profiles=2, seed=3, assign_delay=0.0, assign_fail_rate=1.0)
    async with running_sandbox(config) as failing, TelnyxClient(
            failing.base_url, failing.api_key, limiter=RateLimiter(), policy=FAST) as client:
        links = CampaignLinks(client)
        number = unlinked_long_codes(failing)[0]
        await links.create_link(number, active(failing))
        final = await settled(links, number, active(failing))
        assert final is not None and final.status == "FAILED_ASSIGNMENT"
        assert settlement(active(failing), final).failure_reasons == failing.tendlc.links()[number].failure_reasons
        assert final.failure_reasons


async def test_a_profile_task_is_started_polled_and_its_numbers_read(
        sandbox: Sandbox, links: CampaignLinks) -> None:
    profile = sandbox.profile_ids()[1]
    task_id = await links.assign_profile(profile, active(sandbox, 2))

    async def finished() -> bool | None:
        return True if (await links.get_task(task_id)).finished else None

    await eventually(finished)
    assert (await links.get_task(task_id)).status == "completed"
    numbers = await links.task_numbers(task_id, page_size=9)
    assert [n.phone_number for n in numbers] == list(sandbox.state.members(profile))
    assert {n.status for n in numbers} <= {"success", "failed"}


async def test_10dlc_calls_wait_out_the_rate_limit_like_every_call() -> None:
    config = SandboxConfig(numbers=100, profiles=2, seed=3, rate=4, window=0.5)
    async with running_sandbox(config) as limited, TelnyxClient(
            limited.base_url, limited.api_key, limiter=RateLimiter(), policy=FAST) as client:
        links = CampaignLinks(client)
        listed = await links.list_links(page_size=2)
        assert set(listed) == set(limited.tendlc.links())
        assert client.stats.responses.get(200, 0) == math.ceil(len(listed) / 2)


def test_the_refusal_rule_names_the_stage_and_its_failure_reasons() -> None:
    assert campaign_refusal(Campaign("c", status="ACTIVE", campaign_status="MNO_PROVISIONED")) is None
    assert campaign_refusal(Campaign("c", status="ACTIVE", campaign_status="MNO_PENDING")) is None
    assert campaign_refusal(Campaign("c", campaign_status="TELNYX_FAILED", failure_reasons="bad sample")) == (
        "its campaignStatus is TELNYX_FAILED (bad sample)")
    assert campaign_refusal(Campaign("c", status="EXPIRED", campaign_status="TCR_EXPIRED")) == "its status is EXPIRED"

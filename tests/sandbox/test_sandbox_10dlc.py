"""The sandbox's 10DLC account: campaigns, asynchronous links, listings, bulk-by-profile tasks."""

from __future__ import annotations

import argparse
import math

import pytest

from bulkops.errors import ConfigError
from bulkops.sandbox import Sandbox, SandboxConfig, running_sandbox
from bulkops.sandbox.cli import add_arguments, config_from_args
from bulkops.sandbox.problems import ApiProblem
from bulkops.sandbox.seed import generate
from bulkops.sandbox.state import SandboxState
from bulkops.sandbox.tendlc import LinkStatus, TenDlcState
from tests.sandbox.sandbox_http import Api, Reply, enc
from tests.tendlc_kit import (
    active, campaign, eventually, linked_number, toll_free_on_profile, unassigned_long_code,
    unlinked_long_codes,
)

LINKS = "/10dlc/phone_number_campaigns"
BY_PROFILE = "/10dlc/phoneNumberAssignmentByProfile"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state_with(clock: ManualClock, **config: float) -> tuple[TenDlcState, SandboxState]:
    settings = SandboxConfig(numbers=200, profiles=3, seed=5, **config)  # type: ignore[arg-type]
    numbers = SandboxState(generate(settings))
    return TenDlcState(settings, numbers, clock=clock, wall=clock), numbers


def free_number(state: TenDlcState, numbers: SandboxState) -> str:
    return next(n for n in numbers.numbers()
                if numbers.profile_of(n) and state.link(n) is None
                and (r := numbers.get(n)) is not None and r.type.value == "longcode")


def status(state: TenDlcState, number: str) -> LinkStatus | None:
    """The link's status now (read fresh: the state changes it in place)."""
    link = state.link(number)
    return None if link is None else link.status


def first_active(state: TenDlcState) -> str:
    return next(c.campaign_id for c in state.campaigns.values() if c.refusal() is None)


# -- the state machine, on a clock the test moves ------------------------------------------------

def test_a_link_is_pending_until_its_delay_has_passed_then_assigned() -> None:
    clock = ManualClock()
    state, numbers = state_with(clock, assign_delay=10.0)
    number = free_number(state, numbers)
    state.create(number, first_active(state))
    assert status(state, number) is LinkStatus.PENDING_ASSIGNMENT
    clock.now += 4.9  # every delay is 0.5 to 1.5 x assign_delay
    state.settle()
    assert status(state, number) is LinkStatus.PENDING_ASSIGNMENT
    clock.now += 10.2
    state.settle()
    assert status(state, number) is LinkStatus.ASSIGNED
    link = state.link(number)
    assert link is not None and link.failure_reasons is None


def test_a_failing_link_ends_failed_with_reasons_and_may_be_posted_again() -> None:
    clock = ManualClock()
    state, numbers = state_with(clock, assign_delay=1.0, assign_fail_rate=1.0)
    number = free_number(state, numbers)
    state.create(number, first_active(state))
    clock.now += 2
    state.settle()
    link = state.link(number)
    assert link is not None and link.status is LinkStatus.FAILED_ASSIGNMENT
    assert link.failure_reasons
    again = state.create(number, first_active(state))
    assert again.status is LinkStatus.PENDING_ASSIGNMENT and again.failure_reasons is None
    assert state.writes_by_number[number] == 2


def test_a_removed_link_is_pending_unassignment_then_gone() -> None:
    clock = ManualClock()
    state, numbers = state_with(clock, assign_delay=1.0)
    number = next(iter(state.links()))
    assert state.remove(number).status is LinkStatus.PENDING_UNASSIGNMENT
    assert state.remove(number).status is LinkStatus.PENDING_UNASSIGNMENT  # repeating changes nothing
    assert state.writes_by_number[number] == 1
    clock.now += 2
    state.settle()
    assert state.link(number) is None


def test_a_move_made_while_pending_is_not_overtaken_by_the_first_write() -> None:
    clock = ManualClock()
    state, numbers = state_with(clock, assign_delay=10.0)
    number = free_number(state, numbers)
    first, second = [c.campaign_id for c in state.campaigns.values() if c.refusal() is None][:2]
    state.create(number, first)
    clock.now += 15  # the first write is due (5 to 15 s), not yet settled
    state.replace(number, second)
    clock.now += 4.9  # the move is due in 5 to 15 s
    state.settle()
    link = state.link(number)
    assert link is not None and link.campaign_id == second
    assert status(state, number) is LinkStatus.PENDING_ASSIGNMENT
    clock.now += 100
    state.settle()
    assert status(state, number) is LinkStatus.ASSIGNED and link.campaign_id == second


def test_settle_all_finishes_pending_links_and_tasks_at_once() -> None:
    clock = ManualClock()
    state, numbers = state_with(clock, assign_delay=3600.0)
    number = free_number(state, numbers)
    state.create(number, first_active(state))
    task = state.start_task(numbers.profile_ids()[0], first_active(state))
    assert state.settle_all() >= 1
    assert task.status == "completed"
    assert all(link.status in (LinkStatus.ASSIGNED, LinkStatus.FAILED_ASSIGNMENT) for link in state.links().values())


def test_campaigns_refused_for_each_reason_are_seeded_and_the_first_three_take_numbers() -> None:
    clock = ManualClock()
    state, _ = state_with(clock)
    reasons = {c.description: c.refusal() for c in state.campaigns.values()}
    assert [d for d, why in reasons.items() if why is None] == [
        "Account notifications", "Marketing promotions", "Customer care"]
    assert reasons["Spring promotion 2024"] == "its status is EXPIRED"
    assert reasons["Sweepstakes"] == "its campaignStatus is TCR_SUSPENDED"
    assert reasons["Loan offers"] == "its campaignStatus is MNO_REJECTED"
    assert reasons["Appointment reminders"] == "it is suspended with T-Mobile (isTMobileSuspended)"


def test_the_same_seed_seeds_the_same_campaigns_and_links() -> None:
    one, _ = state_with(ManualClock())
    two, _ = state_with(ManualClock())
    assert list(one.campaigns) == list(two.campaigns)
    assert {n: link.campaign_id for n, link in one.links().items()} == {
        n: link.campaign_id for n, link in two.links().items()}
    assert one.links()


def test_a_write_to_a_number_being_removed_is_refused_until_it_is_gone() -> None:
    clock = ManualClock()
    state, _ = state_with(clock, assign_delay=1.0)
    number = next(iter(state.links()))
    state.remove(number)
    with pytest.raises(ApiProblem) as refused:
        state.replace(number, first_active(state))
    assert refused.value.status == 409 and "poll" in refused.value.detail


# -- over HTTP ---------------------------------------------------------------------------------

@pytest.fixture
def config() -> SandboxConfig:
    return SandboxConfig(numbers=300, profiles=4, seed=7, assign_delay=0.0)


async def test_both_path_encodings_reach_the_same_link(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        number = linked_number(sandbox)
        raw, encoded = await api.get(f"{LINKS}/{number}"), await api.get(f"{LINKS}/{enc(number)}")
        assert raw.status == encoded.status == 200
        assert raw.body == encoded.body and raw.body["phoneNumber"] == number
        bare = await api.get(f"{LINKS}/{number[1:]}")
        assert bare.status == 404 and "E.164" in bare.error["detail"]


async def test_a_posted_link_answers_pending_and_reads_assigned_once_provisioned(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        number = unlinked_long_codes(sandbox)[0]
        posted = await api.post(LINKS, json={"phoneNumber": number, "campaignId": active(sandbox)})
        assert posted.status == 200
        assert posted.body["assignmentStatus"] == "PENDING_ASSIGNMENT"
        assert posted.body["campaignId"] == posted.body["telnyxCampaignId"] == active(sandbox)
        assert "data" not in posted.body  # 10DLC bodies are unwrapped

        async def assigned() -> Reply | None:
            read = await api.get(f"{LINKS}/{enc(number)}")
            return read if read.body["assignmentStatus"] == "ASSIGNED" else None

        await eventually(assigned)


async def test_posting_a_linked_number_is_refused_and_names_put(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        number = linked_number(sandbox)
        refused = await api.post(LINKS, json={"phoneNumber": number, "campaignId": active(sandbox, 2)})
        assert refused.status == 422
        assert "PUT" in refused.error["detail"] and refused.error["source"]["pointer"] == "/phoneNumber"


async def test_put_to_the_same_campaign_changes_nothing_and_a_move_is_pending(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        number = linked_number(sandbox)
        current = sandbox.tendlc.links()[number].campaign_id
        same = await api.request("PUT", f"{LINKS}/{enc(number)}", json={"phoneNumber": number, "campaignId": current})
        assert same.body["assignmentStatus"] == "ASSIGNED"
        assert sandbox.tendlc.writes_by_number[number] == 0
        other = next(c for c in (active(sandbox, 0), active(sandbox, 1)) if c != current)
        moved = await api.request("PUT", f"{LINKS}/{number}", json={"phoneNumber": number, "campaignId": other})
        assert moved.body["assignmentStatus"] == "PENDING_ASSIGNMENT" and moved.body["campaignId"] == other
        mismatch = await api.request("PUT", f"{LINKS}/{number}",
                                     json={"phoneNumber": "+13125550000", "campaignId": other})
        assert mismatch.status == 422 and mismatch.error["source"]["pointer"] == "/phoneNumber"


async def test_a_deleted_link_answers_pending_unassignment_then_404(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        number = linked_number(sandbox)
        deleted = await api.delete(f"{LINKS}/{enc(number)}")
        assert deleted.status == 200 and deleted.body["assignmentStatus"] == "PENDING_UNASSIGNMENT"

        async def gone() -> Reply | None:
            read = await api.get(f"{LINKS}/{enc(number)}")
            return read if read.status == 404 else None

        assert "no campaign assignment" in (await eventually(gone)).error["detail"]
        assert (await api.delete(f"{LINKS}/{enc(number)}")).status == 404


@pytest.mark.parametrize("description, why", [
    ("Spring promotion 2024", "EXPIRED"),
    ("Sweepstakes", "TCR_SUSPENDED"),
    ("Loan offers", "MNO_REJECTED"),
    ("Appointment reminders", "isTMobileSuspended"),
])
async def test_a_campaign_that_cannot_take_numbers_is_refused_naming_it_and_why(
        config: SandboxConfig, description: str, why: str) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        refused_id = campaign(sandbox, description).campaign_id
        number = unlinked_long_codes(sandbox)[0]
        refused = await api.post(LINKS, json={"phoneNumber": number, "campaignId": refused_id})
        assert refused.status == 422
        assert refused_id in refused.error["detail"] and why in refused.error["detail"]
        assert number not in sandbox.tendlc.links()


async def test_numbers_that_are_not_linkable_are_refused_with_the_reason(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        for number, reason in (
            (toll_free_on_profile(sandbox), "toll-free"),
            (unassigned_long_code(sandbox), "not on a messaging profile"),
            ("+19995550000", "not on this account"),
        ):
            refused = await api.post(LINKS, json={"phoneNumber": number, "campaignId": active(sandbox)})
            assert refused.status == 422 and reason in refused.error["detail"], number
        unknown = await api.post(LINKS, json={"phoneNumber": unlinked_long_codes(sandbox)[0], "campaignId": "nope"})
        assert unknown.status == 422 and "does not exist" in unknown.error["detail"]


async def test_the_listing_pages_every_link_once_and_answers_empty_past_the_end(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        size = 7
        first = await api.get(f"{LINKS}?recordsPerPage={size}")
        total = first.body["totalRecords"]
        assert total == len(sandbox.tendlc.links()) > size
        seen: list[str] = []
        for page in range(1, math.ceil(total / size) + 1):
            reply = await api.get(f"{LINKS}?page={page}&recordsPerPage={size}")
            assert reply.body["page"] == page
            seen += [r["phoneNumber"] for r in reply.body["records"]]
        assert sorted(seen) == sorted(sandbox.tendlc.links())
        past = await api.get(f"{LINKS}?page={math.ceil(total / size) + 1}&recordsPerPage={size}")
        assert past.status == 200 and past.body["records"] == [] and past.body["totalRecords"] == total
        too_big = await api.get(f"{LINKS}?recordsPerPage=501")
        assert too_big.status == 400 and too_big.error["source"]["parameter"] == "recordsPerPage"


async def test_the_listing_filters_by_campaign_and_brand_and_sorts(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        chosen = campaign(sandbox, "Account notifications")
        expected = sorted(n for n, link in sandbox.tendlc.links().items() if link.campaign_id == chosen.campaign_id)
        for filt in (f"filter[telnyx_campaign_id]={chosen.campaign_id}",
                     f"filter[tcr_campaign_id]={chosen.tcr_campaign_id}"):
            reply = await api.get(f"{LINKS}?{filt}&sort=phoneNumber&recordsPerPage=500")
            assert [r["phoneNumber"] for r in reply.body["records"]] == expected
        brand = await api.get(f"{LINKS}?filter[telnyx_brand_id]={chosen.brand_id}&recordsPerPage=1")
        assert brand.body["totalRecords"] == len(sandbox.tendlc.links())
        none = await api.get(f"{LINKS}?filter[telnyx_brand_id]=other-brand")
        assert none.body == {"records": [], "page": 1, "totalRecords": 0}
        descending = await api.get(f"{LINKS}?sort=-phoneNumber&recordsPerPage=3")
        numbers = [r["phoneNumber"] for r in descending.body["records"]]
        assert numbers == sorted(sandbox.tendlc.links(), reverse=True)[:3]


async def test_campaigns_are_read_one_by_one_and_listed_by_brand(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        suspended = campaign(sandbox, "Appointment reminders")
        read = await api.get(f"/10dlc/campaign/{suspended.campaign_id}")
        assert read.body["isTMobileSuspended"] is True and read.body["status"] == "ACTIVE"
        listed = await api.get(f"/10dlc/campaign?brandId={suspended.brand_id}&recordsPerPage=500")
        assert listed.body["totalRecords"] == len(sandbox.tendlc.campaigns) == len(listed.body["records"])
        missing_brand = await api.get("/10dlc/campaign")
        assert missing_brand.status == 400 and missing_brand.error["source"]["parameter"] == "brandId"


async def test_a_profile_task_links_its_long_codes_and_fails_its_toll_free_numbers(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        profile = next(p for p in sandbox.profile_ids()
                       if any(n == toll_free_on_profile(sandbox) for n in sandbox.state.members(p)))
        members = list(sandbox.state.members(profile))
        target = active(sandbox, 2)
        accepted = await api.post(BY_PROFILE, json={"messagingProfileId": profile, "campaignId": target})
        assert accepted.status == 202
        assert accepted.body["messagingProfileId"] == profile and accepted.body["campaignId"] == target
        task = accepted.body["taskId"]

        async def completed() -> Reply | None:
            status = await api.get(f"{BY_PROFILE}/{task}")
            return status if status.body["status"] == "completed" else None

        await eventually(completed)
        statuses: dict[str, str] = {}
        page = 1
        while True:  # no total: page until a short page
            reply = await api.get(f"{BY_PROFILE}/{task}/phoneNumbers?page={page}&recordsPerPage=10")
            statuses.update((r["phoneNumber"], r["status"]) for r in reply.body["records"])
            if len(reply.body["records"]) < 10:
                break
            page += 1
        assert list(statuses) == members
        toll_free = toll_free_on_profile(sandbox)
        assert statuses[toll_free] == "failed"
        sandbox.tendlc.settle()
        links = sandbox.tendlc.links()
        assert all(links[n].campaign_id == target for n, s in statuses.items() if s == "success")


async def test_a_profile_task_takes_exactly_one_kind_of_campaign_id(config: SandboxConfig) -> None:
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        profile = sandbox.profile_ids()[0]
        own = campaign(sandbox, "Customer care")
        both = await api.post(BY_PROFILE, json={"messagingProfileId": profile, "campaignId": own.campaign_id,
                                                "tcrCampaignId": own.tcr_campaign_id})
        assert both.status == 422 and "exactly one" in both.error["detail"]
        tcr = await api.post(BY_PROFILE, json={"messagingProfileId": profile, "tcrCampaignId": own.tcr_campaign_id})
        assert tcr.status == 422 and own.campaign_id in tcr.error["detail"]
        nobody = await api.post(BY_PROFILE, json={"messagingProfileId": "00000000-0000-4000-8000-000000000000",
                                                  "campaignId": own.campaign_id})
        assert nobody.status == 422 and nobody.error["source"]["pointer"] == "/messagingProfileId"


async def test_control_routes_show_links_and_settle_them(config: SandboxConfig) -> None:
    slow = SandboxConfig(numbers=100, profiles=2, seed=3, assign_delay=3600.0, control=True)
    async with running_sandbox(slow) as sandbox, Api.open(sandbox) as api:
        number = unlinked_long_codes(sandbox)[0]
        await api.post(LINKS, json={"phoneNumber": number, "campaignId": active(sandbox)})
        shown = await api.get("/_control/10dlc", origin=True, auth=False)
        assert shown.body["links"][number]["assignmentStatus"] == "PENDING_ASSIGNMENT"
        assert shown.body["writes_by_number"] == {number: 1}
        settled = await api.post("/_control/10dlc/settle", origin=True, auth=False)
        assert settled.body["settled"] == 1
        assert (await api.get(f"{LINKS}/{enc(number)}")).body["assignmentStatus"] == "ASSIGNED"


async def test_a_link_changed_behind_a_jobs_back_is_not_counted_as_a_write() -> None:
    config = SandboxConfig(numbers=100, profiles=2, seed=3, control=True)
    async with running_sandbox(config) as sandbox, Api.open(sandbox) as api:
        number = unlinked_long_codes(sandbox)[0]
        forced = await api.post("/_control/10dlc/link", origin=True, auth=False,
                                json={"phoneNumber": number, "campaignId": active(sandbox, 1)})
        assert forced.body["assignmentStatus"] == "ASSIGNED" and forced.body["campaignId"] == active(sandbox, 1)
        assert (await api.get(f"{LINKS}/{enc(number)}")).body["campaignId"] == active(sandbox, 1)
        removed = await api.post("/_control/10dlc/link", origin=True, auth=False,
                                 json={"phoneNumber": number, "campaignId": None})
        assert removed.status == 200 and removed.body is None
        assert (await api.get(f"{LINKS}/{enc(number)}")).status == 404
        unknown = await api.post("/_control/10dlc/link", origin=True, auth=False,
                                 json={"phoneNumber": number, "campaignId": "nope"})
        assert unknown.status == 404
        assert sandbox.tendlc.writes_by_number[number] == 0


async def test_10dlc_routes_need_the_key_like_every_route(sandbox: Sandbox) -> None:
    async with Api.open(sandbox) as api:
        assert (await api.get(LINKS, auth=False)).status == 401
        assert (await api.post(LINKS, json={}, key="wrong")).status == 401


def test_the_assign_flags_reach_the_config_and_bad_values_are_refused() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--assign-delay", "0.5", "--assign-fail-rate", "0.02"]))
    assert (config.assign_delay, config.assign_fail_rate) == (0.5, 0.02)
    with pytest.raises(ConfigError, match="assign_fail_rate"):
        SandboxConfig(assign_fail_rate=1.5)
    with pytest.raises(ConfigError, match="assign_delay"):
        SandboxConfig(assign_delay=-1)

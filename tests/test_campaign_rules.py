"""The 10DLC semantics as pure functions: which write a number needs, where a polled link
stands, which statuses are final, how polls back off, where a listing stops."""

from __future__ import annotations

import random

import pytest

from bulkops.telnyx.campaigns import (
    FINAL_STATUSES, NO_CAMPAIGN, CampaignLink, LinkAction, LinkStatus, Settled, is_final, last_page,
    SnapshotMethod, link_action, next_poll_delay, settlement, snapshot_method,
)

A, B = "campaign-a", "campaign-b"
NUMBER = "+13125550101"


def link(campaign: str, status: LinkStatus, reasons: str | None = None) -> CampaignLink:
    return CampaignLink(NUMBER, campaign, status.value, reasons)


@pytest.mark.parametrize("current, desired, action", [
    (None, A, LinkAction.POST),
    (None, NO_CAMPAIGN, LinkAction.NONE),
    (link(A, LinkStatus.ASSIGNED), A, LinkAction.NONE),
    (link(A, LinkStatus.PENDING_ASSIGNMENT), A, LinkAction.POLL),
    (link(A, LinkStatus.FAILED_ASSIGNMENT), A, LinkAction.PUT),
    (link(A, LinkStatus.ASSIGNED), B, LinkAction.PUT),
    (link(A, LinkStatus.PENDING_ASSIGNMENT), B, LinkAction.PUT),
    (link(A, LinkStatus.FAILED_UNASSIGNMENT), B, LinkAction.PUT),
    (link(A, LinkStatus.PENDING_UNASSIGNMENT), B, LinkAction.WAIT),
    (link(A, LinkStatus.PENDING_UNASSIGNMENT), A, LinkAction.WAIT),
    (link(A, LinkStatus.ASSIGNED), NO_CAMPAIGN, LinkAction.DELETE),
    (link(A, LinkStatus.FAILED_ASSIGNMENT), NO_CAMPAIGN, LinkAction.DELETE),
    (link(A, LinkStatus.PENDING_UNASSIGNMENT), NO_CAMPAIGN, LinkAction.POLL),
])
def test_the_write_a_number_needs_follows_from_its_link_and_the_target(
        current: CampaignLink | None, desired: str, action: LinkAction) -> None:
    assert link_action(current, desired) is action


def test_rollback_restores_each_prior_state_with_the_same_rule() -> None:
    # Prior: linked to A; the job moved it to B. Rollback's target is A again: a PUT.
    assert link_action(link(B, LinkStatus.ASSIGNED), A) is LinkAction.PUT
    # Prior: no link; the job created one. Rollback removes it.
    assert link_action(link(B, LinkStatus.ASSIGNED), NO_CAMPAIGN) is LinkAction.DELETE
    # Prior: linked to A; the job removed it. Rollback creates it again.
    assert link_action(None, A) is LinkAction.POST


@pytest.mark.parametrize("desired, current, state", [
    (A, link(A, LinkStatus.PENDING_ASSIGNMENT), Settled.PENDING),
    (A, link(A, LinkStatus.ASSIGNED), Settled.DONE),
    (A, link(A, LinkStatus.FAILED_ASSIGNMENT, "T-Mobile rejected"), Settled.FAILED),
    (A, link(B, LinkStatus.ASSIGNED), Settled.DIVERGED),
    (A, link(A, LinkStatus.PENDING_UNASSIGNMENT), Settled.DIVERGED),
    (A, None, Settled.DIVERGED),
    (NO_CAMPAIGN, None, Settled.DONE),
    (NO_CAMPAIGN, link(A, LinkStatus.PENDING_UNASSIGNMENT), Settled.PENDING),
    (NO_CAMPAIGN, link(A, LinkStatus.FAILED_UNASSIGNMENT, "carrier error"), Settled.FAILED),
    (NO_CAMPAIGN, link(A, LinkStatus.ASSIGNED), Settled.DIVERGED),
])
def test_a_polled_link_is_pending_done_failed_or_diverged(
        desired: str, current: CampaignLink | None, state: Settled) -> None:
    assert settlement(desired, current).state is state


def test_a_failure_keeps_telnyx_reasons_verbatim() -> None:
    result = settlement(A, link(A, LinkStatus.FAILED_ASSIGNMENT, "T-Mobile rejected: NNID pool"))
    assert result.failure_reasons == "T-Mobile rejected: NNID pool"
    assert result.status == "FAILED_ASSIGNMENT"


def test_an_unknown_status_is_not_final_and_keeps_polling() -> None:
    odd = CampaignLink(NUMBER, A, "PROVISIONING_ON_HOLD")
    assert not is_final(odd.status) and not odd.final
    assert settlement(A, odd).state is Settled.PENDING


def test_only_assigned_and_the_failed_states_are_final() -> None:
    assert {s.value for s in LinkStatus if is_final(s.value)} == FINAL_STATUSES == {
        "ASSIGNED", "FAILED_ASSIGNMENT", "FAILED_UNASSIGNMENT"}


def test_polls_back_off_doubling_to_the_cap_with_bounded_jitter() -> None:
    assert [next_poll_delay(n) for n in range(7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert next_poll_delay(10_000) == 60.0
    rng = random.Random(1)
    assert all(1.6 <= next_poll_delay(0, rng) <= 2.4 for _ in range(200))
    with pytest.raises(ValueError):
        next_poll_delay(-1)


@pytest.mark.parametrize("total, asked, first, last", [
    (0, 250, 0, 1),  # empty: page 1 only
    (10, 250, 10, 1),
    (500, 250, 250, 2),
    (501, 250, 250, 3),
    (1000, 250, 100, 10),  # the server capped the page at 100: its size counts
    (40, 20, 20, 2),
])
def test_a_listing_stops_at_ceil_total_over_the_size_the_server_used(
        total: int, asked: int, first: int, last: int) -> None:
    assert last_page(total, asked, first) == last


@pytest.mark.parametrize("numbers, total, method", [
    (1, 10_000, SnapshotMethod.GET),  # 39 more pages of 250 against 1 GET
    (39, 10_000, SnapshotMethod.LIST),  # a tie goes to the listing
    (38, 10_000, SnapshotMethod.GET),
    (1, 200, SnapshotMethod.LIST),  # page 1 held them all: nothing more to read
    (3_000, 1_000_000, SnapshotMethod.GET),  # 3,999 more pages
    (5_000, 1_000_000, SnapshotMethod.LIST),
    (1_000_000, 1_000_000, SnapshotMethod.LIST),
])
def test_the_snapshot_reads_whichever_costs_fewer_requests(numbers: int, total: int, method: SnapshotMethod) -> None:
    assert snapshot_method(numbers, total, 250, min(total, 250)) is method

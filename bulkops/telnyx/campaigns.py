"""10DLC calls: campaigns, phone-number campaign links, the bulk-by-profile task.

The contract is ``docs/telnyx/short-codes-10dlc.openapi.yml`` with
``docs/telnyx/SHORT-CODES-10DLC-NOTES.md``. Every call goes through ``TelnyxClient.send``: the
shared limiter, the retry policy and the same error classification as the profile calls.

What the notes make us do:
- 10DLC bodies are camelCase and unwrapped: the object (or ``records``) is the whole body.
- Lists page with ``page``/``recordsPerPage`` and answer ``records``/``totalRecords``; the SDK's
  pager compares the page number with ``totalRecords`` (a record count), so we stop at
  ``ceil(totalRecords / page size)`` or on an empty page, whichever comes first. The page size
  is the one the server used (a server may cap ``recordsPerPage`` silently).
- A link is asynchronous: a 200 from POST or PUT means accepted (``PENDING_ASSIGNMENT``); the
  final state is read by polling (``settlement``, ``next_poll_delay``).
- Paths carry ``+E.164`` percent-encoded (``%2B``), as API-NOTES asks.

The pure functions at the top (``campaign_refusal``, ``settlement``, ``link_action``,
``next_poll_delay``) hold the semantics; ``CampaignLinks`` holds the HTTP calls.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import anyio
import orjson

from bulkops.telnyx.answers import BadShape
from bulkops.telnyx.client import TelnyxClient, _segment
from bulkops.telnyx.retry import GaveUp, Outcome

LINKS_PATH = "/10dlc/phone_number_campaigns"
CAMPAIGN_PATH = "/10dlc/campaign"
BY_PROFILE_PATH = "/10dlc/phoneNumberAssignmentByProfile"
LINK_PAGE = 250  # records per listing page; the limit is unconfirmed for this list (notes)
FALLBACK_PAGE = 20  # the documented default, asked for if a server refuses LINK_PAGE
TASK_PAGE = 100


class LinkStatus(str, Enum):
    """``assignmentStatus`` values of the spec."""

    PENDING_ASSIGNMENT = "PENDING_ASSIGNMENT"
    ASSIGNED = "ASSIGNED"
    FAILED_ASSIGNMENT = "FAILED_ASSIGNMENT"
    PENDING_UNASSIGNMENT = "PENDING_UNASSIGNMENT"
    FAILED_UNASSIGNMENT = "FAILED_UNASSIGNMENT"


FINAL_STATUSES = frozenset({LinkStatus.ASSIGNED.value, LinkStatus.FAILED_ASSIGNMENT.value,
                            LinkStatus.FAILED_UNASSIGNMENT.value})
PENDING_STATUSES = frozenset({LinkStatus.PENDING_ASSIGNMENT.value, LinkStatus.PENDING_UNASSIGNMENT.value})

# campaignStatus stages naming failure, suspension or expiry (the notes, "Preconditions"; which
# stages allow assignment is unconfirmed, so only these are refused).
REFUSED_STAGES = frozenset({
    "TCR_FAILED", "TCR_SUSPENDED", "TCR_EXPIRED", "TELNYX_FAILED", "MNO_REJECTED",
    "MNO_PROVISIONING_FAILED",
})

NO_CAMPAIGN = ""  # the desired campaign of a number whose link is to be removed


@dataclass(frozen=True, slots=True)
class Campaign:
    """What decides whether numbers can be linked to a campaign (``TelnyxCampaignCsp``)."""

    campaign_id: str
    brand_id: str | None = None
    description: str | None = None
    status: str | None = None  # ACTIVE | EXPIRED
    campaign_status: str | None = None  # TCR_* / TELNYX_* / MNO_* stage
    t_mobile_suspended: bool | None = None
    failure_reasons: str | None = None


@dataclass(frozen=True, slots=True)
class CampaignLink:
    """One number's campaign link as Telnyx shows it (``PhoneNumberCampaign``)."""

    phone_number: str
    campaign_id: str
    status: str  # assignmentStatus as answered ("" when absent)
    failure_reasons: str | None = None
    updated_at: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class CampaignCheck:
    """Whether a campaign can take numbers; ``reason`` says why not."""

    campaign_id: str
    campaign: Campaign | None  # None: the account has no such campaign
    reason: str | None

    @property
    def usable(self) -> bool:
        return self.reason is None

    def describe(self) -> str:
        """One line for the operator, naming the campaign and why (when it is refused)."""
        name = self.campaign_id
        if self.campaign is not None and self.campaign.description:
            name += f" ({self.campaign.description})"
        if self.reason is None:
            return f"campaign {name} can take numbers"
        return f"campaign {name} cannot take numbers: {self.reason}"


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """A bulk-by-profile task: ``pending``, ``processing``, ``completed`` or ``failed``."""

    task_id: str
    status: str

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")


@dataclass(frozen=True, slots=True)
class TaskNumber:
    phone_number: str
    status: str  # a free string (the notes); the sandbox answers pending, success or failed


# -- the semantics, pure ---------------------------------------------------------------------------

def campaign_refusal(campaign: Campaign) -> str | None:
    """Why numbers cannot be linked to ``campaign`` (the notes' inferred rule), else None."""
    if campaign.status == "EXPIRED":
        return "its status is EXPIRED"
    if campaign.campaign_status in REFUSED_STAGES:
        reason = f"its campaignStatus is {campaign.campaign_status}"
        if campaign.failure_reasons:
            reason += f" ({campaign.failure_reasons})"
        return reason
    if campaign.t_mobile_suspended:
        return "it is suspended with T-Mobile (isTMobileSuspended)"
    return None


def check_campaign(campaign_id: str, campaign: Campaign | None) -> CampaignCheck:
    """The check of a campaign as read (None: GET answered 404)."""
    if campaign is None:
        return CampaignCheck(campaign_id, None, "the account has no such campaign; check the id")
    return CampaignCheck(campaign_id, campaign, campaign_refusal(campaign))


def is_final(status: str) -> bool:
    """Whether polling a link in ``status`` can stop: ASSIGNED or one of the FAILED_* states."""
    return status in FINAL_STATUSES


class Settled(str, Enum):
    """Where a number's link stands against the campaign a job wants it on."""

    PENDING = "pending"  # still provisioning towards what was asked: poll again
    DONE = "done"  # as asked: ASSIGNED to the campaign, or no link when removal was asked
    FAILED = "failed"  # Telnyx says it failed (failureReasons)
    DIVERGED = "diverged"  # the link is on something else than was asked: changed behind our back


@dataclass(frozen=True, slots=True)
class Settlement:
    state: Settled
    status: str  # the assignmentStatus read ("" when there is no link)
    failure_reasons: str | None = None


def settlement(desired: str, link: CampaignLink | None) -> Settlement:
    """Where ``link`` (None: GET answered 404) stands against ``desired`` (NO_CAMPAIGN: removed).

    After a DELETE, a 404 is taken as done; what Telnyx answers then is unconfirmed (notes).
    """
    if desired == NO_CAMPAIGN:
        if link is None:
            return Settlement(Settled.DONE, "")
        if link.status == LinkStatus.PENDING_UNASSIGNMENT.value:
            return Settlement(Settled.PENDING, link.status)
        if link.status == LinkStatus.FAILED_UNASSIGNMENT.value:
            return Settlement(Settled.FAILED, link.status, link.failure_reasons)
        return Settlement(Settled.DIVERGED, link.status)
    if link is None or link.campaign_id != desired:
        return Settlement(Settled.DIVERGED, "" if link is None else link.status)
    if link.status == LinkStatus.ASSIGNED.value:
        return Settlement(Settled.DONE, link.status)
    if link.status == LinkStatus.FAILED_ASSIGNMENT.value:
        return Settlement(Settled.FAILED, link.status, link.failure_reasons)
    if link.status in (LinkStatus.PENDING_UNASSIGNMENT.value, LinkStatus.FAILED_UNASSIGNMENT.value):
        return Settlement(Settled.DIVERGED, link.status)  # someone is removing it
    # PENDING_ASSIGNMENT, or a status the spec does not know: not final, poll until the timeout.
    return Settlement(Settled.PENDING, link.status)


class LinkAction(str, Enum):
    """The write that takes a number from its current link to the desired one."""

    POST = "post"  # no link: create it
    PUT = "put"  # a link to another campaign, or a failed one: replace it
    DELETE = "delete"  # a link, and none is wanted
    POLL = "poll"  # already on its way to what is wanted: no write, poll it
    WAIT = "wait"  # its removal is under way: poll until it is gone, then POST
    NONE = "none"  # already as wanted


def link_action(current: CampaignLink | None, desired: str) -> LinkAction:
    """What to send for a number, from its link before the write (the snapshot) and the target.

    The same function gives rollback's write: ``desired`` is then the prior campaign.
    """
    if desired == NO_CAMPAIGN:
        if current is None:
            return LinkAction.NONE
        if current.status == LinkStatus.PENDING_UNASSIGNMENT.value:
            return LinkAction.POLL
        return LinkAction.DELETE
    if current is None:
        return LinkAction.POST
    if current.status == LinkStatus.PENDING_UNASSIGNMENT.value:
        return LinkAction.WAIT
    if current.campaign_id == desired:
        if current.status == LinkStatus.ASSIGNED.value:
            return LinkAction.NONE
        if current.status == LinkStatus.PENDING_ASSIGNMENT.value:
            return LinkAction.POLL
    return LinkAction.PUT


POLL_FIRST = 2.0  # seconds before the first poll of a link
POLL_MAX = 60.0  # the longest wait between two polls of one link


def next_poll_delay(polls: int, rng: random.Random | None = None, *, first: float = POLL_FIRST,
                    cap: float = POLL_MAX) -> float:
    """Seconds before poll number ``polls + 1`` of one link: doubling from ``first`` up to ``cap``,
    with +-20 % jitter (given ``rng``) so a thousand links accepted together do not poll together."""
    if polls < 0:
        raise ValueError("polls must be >= 0")
    delay = min(cap, first * 2.0 ** min(polls, 32))
    return delay if rng is None else delay * rng.uniform(0.8, 1.2)


class SnapshotMethod(str, Enum):
    LIST = "list"  # the account's listing, every page
    GET = "get"  # one GET per number


@dataclass(frozen=True, slots=True)
class Snapshot:
    links: dict[str, CampaignLink | None]  # every number asked, in order; None: no link
    method: SnapshotMethod
    requests: int  # reads it took (page 1 of the listing included)


def snapshot_method(numbers: int, total_links: int, page_size: int, first_page: int) -> SnapshotMethod:
    """The cheaper way to read ``numbers`` links once page 1 of the listing is read: the rest of
    the listing (``last_page - 1`` requests) or one GET per number. Ties go to the listing: it
    also serves ``export`` and is one consistent read."""
    rest = last_page(total_links, page_size, first_page) - 1
    return SnapshotMethod.LIST if rest <= numbers else SnapshotMethod.GET


def last_page(total: int, asked: int, first_page: int) -> int:
    """The last page of a listing of ``total`` records: ``ceil(total / size)`` with the size the
    server used on page 1 (``first_page`` records, fewer than ``asked`` when it caps silently)."""
    if total <= 0:
        return 1
    size = first_page if 0 < first_page < asked and first_page < total else asked
    return max(1, math.ceil(total / size))


# -- answers ---------------------------------------------------------------------------------------

def _object(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BadShape(f"the {what} is not a JSON object")
    return payload


def _opt_text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value if isinstance(value, str) else None


def _required_text(item: dict[str, Any], name: str, what: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise BadShape(f"the {what} has no `{name}`")
    return value


def campaign_answer(payload: Any) -> Campaign | None:
    if payload is None:
        return None  # 404
    item = _object(payload, "campaign")
    suspended = item.get("isTMobileSuspended")
    return Campaign(
        campaign_id=_required_text(item, "campaignId", "campaign"),
        brand_id=_opt_text(item, "brandId"),
        description=_opt_text(item, "description"),
        status=_opt_text(item, "status"),
        campaign_status=_opt_text(item, "campaignStatus"),
        t_mobile_suspended=suspended if isinstance(suspended, bool) else None,
        failure_reasons=_opt_text(item, "failureReasons"),
    )


def _link(item: Any) -> CampaignLink:
    data = _object(item, "phone number campaign")
    return CampaignLink(
        phone_number=_required_text(data, "phoneNumber", "phone number campaign"),
        campaign_id=_required_text(data, "campaignId", "phone number campaign"),
        status=_opt_text(data, "assignmentStatus") or "",
        failure_reasons=_opt_text(data, "failureReasons"),
        updated_at=_opt_text(data, "updatedAt"),
    )


def link_answer(payload: Any) -> CampaignLink:
    return _link(payload)


def maybe_link_answer(payload: Any) -> CampaignLink | None:
    return None if payload is None else _link(payload)


def _records(payload: Any) -> list[Any]:
    records = _object(payload, "listing").get("records")
    if not isinstance(records, list):
        raise BadShape("the listing has no `records` list")
    return records


def links_page(payload: Any) -> tuple[list[CampaignLink], int]:
    """One page of links and ``totalRecords`` (the spec requires it)."""
    records = _records(payload)
    total = payload.get("totalRecords")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise BadShape("`totalRecords` is not a whole number")
    return [_link(item) for item in records], total


def task_accepted(payload: Any) -> str:
    return _required_text(_object(payload, "task"), "taskId", "task")


def task_status(payload: Any) -> TaskStatus:
    item = _object(payload, "task status")
    return TaskStatus(_required_text(item, "taskId", "task status"), _required_text(item, "status", "task status"))


def task_numbers_page(payload: Any) -> list[TaskNumber]:
    out = []
    for item in _records(payload):
        data = _object(item, "task's phone number")
        out.append(TaskNumber(_required_text(data, "phoneNumber", "task's phone number"),
                              _opt_text(data, "status") or ""))
    return out


# -- the calls -------------------------------------------------------------------------------------

def _link_body(number: str, campaign_id: str) -> bytes:
    return orjson.dumps({"phoneNumber": number, "campaignId": campaign_id})


def _link_path(number: str) -> str:
    return f"{LINKS_PATH}/{_segment(number)}"


class CampaignLinks:
    """The 10DLC operations over one ``TelnyxClient`` (open it first: ``async with``)."""

    def __init__(self, client: TelnyxClient) -> None:
        self._client = client

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        """The campaign, or None when the account has no such campaign (404)."""
        outcome = await self._client.send("GET", f"{CAMPAIGN_PATH}/{_segment(campaign_id)}",
                                          campaign_answer, missing_ok=True)
        return outcome.value

    async def check_campaign(self, campaign_id: str) -> CampaignCheck:
        """Whether numbers can be linked to the campaign, and why not (one GET)."""
        return check_campaign(campaign_id, await self.get_campaign(campaign_id))

    async def get_link(self, number: str, *, stop: anyio.Event | None = None) -> CampaignLink | None:
        """The number's link, or None when it has none (404)."""
        outcome = await self._client.send("GET", _link_path(number), maybe_link_answer, missing_ok=True,
                                          stop=stop)
        return outcome.value

    async def _links_page(self, filters: Sequence[tuple[str, str]], page: int,
                          size: int) -> tuple[list[CampaignLink], int]:
        # sort=phoneNumber: the default, newest first, shifts every page when a link is made.
        query = (*filters, ("page", str(page)), ("recordsPerPage", str(size)), ("sort", "phoneNumber"))
        return (await self._client.send("GET", LINKS_PATH, links_page, query=query)).value

    async def _first_page(self, filters: Sequence[tuple[str, str]],
                          size: int) -> tuple[list[CampaignLink], int, int]:
        """Page 1, its totalRecords, and the page size that worked (a refused size is asked
        again with the documented default of 20)."""
        try:
            records, total = await self._links_page(filters, 1, size)
        except GaveUp as refused:
            if size == FALLBACK_PAGE or refused.info.status not in (400, 422):
                raise
            size = FALLBACK_PAGE
            records, total = await self._links_page(filters, 1, size)
        return records, total, size

    async def _rest(self, filters: Sequence[tuple[str, str]], first: list[CampaignLink], total: int,
                    size: int) -> dict[str, CampaignLink]:
        found = {link.phone_number: link for link in first}
        last = last_page(total, size, len(first))
        page = 2
        while first and page <= last:
            records, _ = await self._links_page(filters, page, size)
            if not records or all(link.phone_number in found for link in records):
                break  # past the end, or a server that ignores `page`
            found.update((link.phone_number, link) for link in records)
            page += 1
        return found

    async def list_links(self, *, campaign_id: str | None = None, brand_id: str | None = None,
                         page_size: int = LINK_PAGE) -> dict[str, CampaignLink]:
        """Every link of the account (or of one campaign or brand), all pages read first.

        Stops at ``last_page`` or on an empty page, and on a page that holds only numbers met
        before (a server that ignores ``page``).
        """
        filters: list[tuple[str, str]] = []
        if campaign_id is not None:
            filters.append(("filter[telnyx_campaign_id]", campaign_id))
        if brand_id is not None:
            filters.append(("filter[telnyx_brand_id]", brand_id))
        first, total, size = await self._first_page(filters, page_size)
        return await self._rest(filters, first, total, size)

    async def snapshot(self, numbers: Sequence[str], *, page_size: int = LINK_PAGE,
                       concurrency: int = 8) -> Snapshot:
        """Each number's link before any write (None: no link), by the cheaper read.

        One listing page tells how many links the account has; the rest of the listing costs
        ``last_page - 1`` requests, one GET per number costs ``len(numbers)``: the smaller wins
        (``snapshot_method``). Either way every read is done before this returns.
        """
        wanted = list(dict.fromkeys(numbers))
        first, total, size = await self._first_page((), page_size)
        method = snapshot_method(len(wanted), total, size, len(first))
        if method is SnapshotMethod.LIST:
            listed = await self._rest((), first, total, size)
            requests = 1 + max(0, last_page(total, size, len(first)) - 1)
            return Snapshot({n: listed.get(n) for n in wanted}, method, requests)
        links: dict[str, CampaignLink | None] = {}
        limit = anyio.Semaphore(concurrency)
        failed: list[Exception] = []

        async def read(number: str, group: anyio.CancelScope) -> None:
            async with limit:
                try:
                    links[number] = await self.get_link(number)
                except Exception as exc:  # GaveUp, AuthError: the first ends the snapshot, as it is
                    if not failed:
                        failed.append(exc)
                    group.cancel()

        async with anyio.create_task_group() as tg:  # the shared limiter paces them
            for number in wanted:
                tg.start_soon(read, number, tg.cancel_scope)
        if failed:
            raise failed[0]
        return Snapshot({n: links[n] for n in wanted}, method, 1 + len(wanted))

    async def create_link(self, number: str, campaign_id: str, *,
                          stop: anyio.Event | None = None) -> Outcome[CampaignLink]:
        """POST a link; the answer is usually ``PENDING_ASSIGNMENT``.

        Retried like a PATCH: a number takes one campaign, so a repeated POST cannot make a
        second link. A POST refused with 400/409/422 (how a repeat that met its own first try
        may be answered: unconfirmed) reads the link: when it already names ``campaign_id``
        and is not failed, that is the answer. Raises GaveUp otherwise.
        """
        try:
            return await self._client.send("POST", LINKS_PATH, link_answer, body=_link_body(number, campaign_id),
                                           repeatable=True, stop=stop)
        except GaveUp as refused:
            if refused.retryable or refused.info.status not in (400, 409, 422):
                raise
            link = await self.get_link(number)
            if link is not None and link.campaign_id == campaign_id and link.status in (
                    LinkStatus.PENDING_ASSIGNMENT.value, LinkStatus.ASSIGNED.value):
                return Outcome(link, refused.attempts + 1)
            raise

    async def move_link(self, number: str, campaign_id: str, *,
                        stop: anyio.Event | None = None) -> Outcome[CampaignLink]:
        """PUT the number onto ``campaign_id`` (the body repeats the path's number, as the notes ask)."""
        return await self._client.send("PUT", _link_path(number), link_answer,
                                       body=_link_body(number, campaign_id), stop=stop)

    async def remove_link(self, number: str, *,
                          stop: anyio.Event | None = None) -> Outcome[CampaignLink | None]:
        """DELETE the link: the answer is the record (``PENDING_UNASSIGNMENT``), or None when
        there is no link any more (404: a repeat after the removal finished)."""
        return await self._client.send("DELETE", _link_path(number), maybe_link_answer, missing_ok=True,
                                       stop=stop)

    async def assign_profile(self, profile_id: str, campaign_id: str) -> str:
        """Start the task linking every number of the profile; its ``taskId``. Not repeated once
        it may have landed (a second task), like a bulk order."""
        body = orjson.dumps({"messagingProfileId": profile_id, "campaignId": campaign_id})
        return (await self._client.send("POST", BY_PROFILE_PATH, task_accepted, body=body)).value

    async def get_task(self, task_id: str) -> TaskStatus:
        return (await self._client.send("GET", f"{BY_PROFILE_PATH}/{_segment(task_id)}", task_status)).value

    async def task_numbers(self, task_id: str, page_size: int = TASK_PAGE) -> list[TaskNumber]:
        """Every number of the task with its status; the list has no total, so pages are read
        until a short or empty one (notes: unconfirmed), or one that repeats numbers met before."""
        path = f"{BY_PROFILE_PATH}/{_segment(task_id)}/phoneNumbers"
        found: dict[str, TaskNumber] = {}
        page = 1
        while True:
            query = (("page", str(page)), ("recordsPerPage", str(page_size)))
            numbers = (await self._client.send("GET", path, task_numbers_page, query=query)).value
            fresh = [n for n in numbers if n.phone_number not in found]
            found.update((n.phone_number, n) for n in fresh)
            if len(numbers) < page_size or not fresh:
                return list(found.values())
            page += 1


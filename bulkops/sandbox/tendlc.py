"""The sandbox's 10DLC account: campaigns, phone-number-to-campaign links, bulk-by-profile tasks.

Follows ``docs/telnyx/short-codes-10dlc.openapi.yml`` and ``SHORT-CODES-10DLC-NOTES.md``:

- A link is asynchronous. POST or PUT answers ``PENDING_ASSIGNMENT``; after a seeded delay
  (0.5 to 1.5 x ``assign_delay``) it becomes ``ASSIGNED``, or ``FAILED_ASSIGNMENT`` with
  ``failureReasons`` for the ``assign_fail_rate`` share (decided when the write is accepted).
  DELETE answers ``PENDING_UNASSIGNMENT``; after the same kind of delay the link is gone
  (GET answers 404: what Telnyx does then is unconfirmed).
- Time moves lazily: every request first settles what fell due (``settle``), from a heap of
  due times, so no background task runs per link and a state read is always current.
- Preconditions (the notes' "Preconditions"): the number is on the account, a US long code,
  on a messaging profile, and has no live link (POST; move one with PUT); the campaign exists
  and can take numbers (``campaign_refusal``). A number whose removal is under way takes no
  new write until it is gone.
- A bulk-by-profile task freezes the profile's numbers when it is accepted and works through
  them at ``bulk_speed`` numbers per second, linking each as a POST (or a PUT, for a number on
  another campaign: the notes leave that case unconfirmed) would; a toll-free number, or one
  that left the profile meanwhile, is listed ``failed``. Per-number status: ``pending``,
  ``success`` (the link was accepted: it then provisions like any other) or ``failed``.

Not modelled: shared (TCR-only) campaigns, ``FAILED_UNASSIGNMENT``, ``ignore_writes``.
"""

from __future__ import annotations

import heapq
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TypeVar

from .config import SandboxConfig
from .problems import ApiProblem, invalid, not_found
from .records import NumberType
from .state import SandboxState

Clock = Callable[[], float]
T = TypeVar("T")


class LinkStatus(str, Enum):
    """``assignmentStatus`` of a phone-number campaign link (the spec's enum)."""

    PENDING_ASSIGNMENT = "PENDING_ASSIGNMENT"
    ASSIGNED = "ASSIGNED"
    FAILED_ASSIGNMENT = "FAILED_ASSIGNMENT"
    PENDING_UNASSIGNMENT = "PENDING_UNASSIGNMENT"
    FAILED_UNASSIGNMENT = "FAILED_UNASSIGNMENT"


# campaignStatus stages that name failure, suspension or expiry (the notes, "Preconditions").
REFUSED_STAGES = frozenset({
    "TCR_FAILED", "TCR_SUSPENDED", "TCR_EXPIRED", "TELNYX_FAILED", "MNO_REJECTED",
    "MNO_PROVISIONING_FAILED",
})

FAILURE_REASONS = (
    "T-Mobile rejected the number: it is already registered to another campaign's number pool.",
    "Carrier provisioning failed for this number (NNID registration timed out); retry the assignment.",
    "AT&T rejected the number: the campaign's brand has no vetted score for this use case.",
)


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """A 10DLC campaign as seeded (campaigns never change in the sandbox)."""

    campaign_id: str
    brand_id: str
    tcr_campaign_id: str
    tcr_brand_id: str
    description: str
    usecase: str
    status: str  # ACTIVE | EXPIRED
    campaign_status: str  # a CampaignStatus stage
    t_mobile_suspended: bool = False
    failure_reasons: str | None = None
    created_ts: float = 0.0

    def refusal(self) -> str | None:
        """Why numbers cannot be linked to this campaign, or None when they can."""
        return campaign_refusal(self.status, self.campaign_status, self.t_mobile_suspended)


def campaign_refusal(status: str | None, stage: str | None, t_mobile_suspended: bool | None) -> str | None:
    """The sandbox's rule, the same as the client's (``bulkops.telnyx.campaigns``)."""
    if status == "EXPIRED":
        return "its status is EXPIRED"
    if stage in REFUSED_STAGES:
        return f"its campaignStatus is {stage}"
    if t_mobile_suspended:
        return "it is suspended with T-Mobile (isTMobileSuspended)"
    return None


@dataclass(slots=True)
class LinkRecord:
    """One number's link; mutable, changed only by ``TenDlcState``."""

    phone_number: str
    campaign_id: str
    status: LinkStatus
    created_ts: float  # wall clock
    updated_ts: float
    failure_reasons: str | None = None
    generation: int = 0  # bumped by every write: a due entry of an older write is stale
    fails: bool = False  # the pending assignment will end FAILED_ASSIGNMENT


@dataclass(slots=True)
class ProfileTask:
    """A bulk-by-profile assignment: the profile's numbers, frozen when it was accepted."""

    task_id: str
    profile_id: str
    campaign_id: str
    numbers: tuple[str, ...]
    created_ts: float  # wall clock
    started: float  # monotonic
    updated_ts: float
    statuses: list[str] = field(default_factory=list)  # settled numbers' status, in order
    failed: bool = False  # the profile was deleted before the task finished

    @property
    def status(self) -> str:
        if self.failed:
            return "failed"
        if len(self.statuses) == len(self.numbers):
            return "completed"
        return "processing" if self.statuses else "pending"

    def number_status(self, index: int) -> str:
        return self.statuses[index] if index < len(self.statuses) else "pending"


@dataclass(frozen=True, slots=True)
class LinkQuery:
    """Filters and sort of GET /10dlc/phone_number_campaigns, already parsed."""

    campaign_id: str | None = None  # filter[telnyx_campaign_id]
    brand_id: str | None = None  # filter[telnyx_brand_id]
    tcr_campaign_id: str | None = None
    tcr_brand_id: str | None = None
    sort: str = "-createdAt"


def plain_timestamp(ts: float) -> str:
    """``2021-03-08T17:57:48.801186``: how the docs show a link's createdAt (no zone)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


_USECASES = ("ACCOUNT_NOTIFICATION", "MARKETING", "CUSTOMER_CARE", "MIXED", "2FA", "LOW_VOLUME", "DELIVERY_NOTIFICATION")
# (description, status, campaignStatus, isTMobileSuspended, failureReasons): seed order, ids differ by seed.
_CAMPAIGNS = (
    ("Account notifications", "ACTIVE", "MNO_PROVISIONED", False, None),
    ("Marketing promotions", "ACTIVE", "MNO_PROVISIONED", False, None),
    ("Customer care", "ACTIVE", "MNO_PROVISIONED", False, None),
    ("Spring promotion 2024", "EXPIRED", "TCR_EXPIRED", False, None),
    ("Sweepstakes", "ACTIVE", "TCR_SUSPENDED", False, None),
    ("Loan offers", "ACTIVE", "MNO_REJECTED", False, "Use case not permitted for the brand's vertical."),
    ("Appointment reminders", "ACTIVE", "MNO_PROVISIONED", True, None),
)
SEEDED_LINK_SHARE = 0.25  # of the long codes on a profile, linked ASSIGNED at start
CAMPAIGNS_EPOCH = 1_688_169_600.0  # 2023-07-01T00:00:00Z


def _alnum(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(6))


def campaigns_for(seed: int) -> tuple[CampaignRecord, ...]:
    """The campaigns of a sandbox seeded ``seed`` (known without starting one)."""
    return seed_campaigns(random.Random(f"bulkops-sandbox/10dlc/campaigns/{seed}"))


def seed_campaigns(rng: random.Random) -> tuple[CampaignRecord, ...]:
    """One brand's campaigns: three that take numbers, then one for each way of refusing."""
    brand_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    tcr_brand = _alnum(rng, "B")
    out = []
    for k, (description, status, stage, suspended, reasons) in enumerate(_CAMPAIGNS):
        out.append(CampaignRecord(
            campaign_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            brand_id=brand_id,
            tcr_campaign_id=_alnum(rng, "C"),
            tcr_brand_id=tcr_brand,
            description=description,
            usecase=_USECASES[k % len(_USECASES)],
            status=status,
            campaign_status=stage,
            t_mobile_suspended=suspended,
            failure_reasons=reasons,
            created_ts=CAMPAIGNS_EPOCH + k * 86_400 * 3,
        ))
    return tuple(out)


class TenDlcState:
    """Campaigns, links and tasks of one sandbox; every handler goes through here."""

    def __init__(
        self,
        config: SandboxConfig,
        numbers: SandboxState,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self._numbers = numbers
        self._clock = clock
        self._wall = wall
        self.delay = config.assign_delay
        self.fail_rate = config.assign_fail_rate
        self.speed = config.bulk_speed
        self._outcomes = random.Random(f"bulkops-sandbox/10dlc/outcomes/{config.seed}")  # per write
        self._ids = random.Random(f"bulkops-sandbox/10dlc/ids/{config.seed}")
        self.campaigns: dict[str, CampaignRecord] = {c.campaign_id: c for c in campaigns_for(config.seed)}
        self._links: dict[str, LinkRecord] = {}
        self._due: list[tuple[float, int, str, int]] = []  # (due, seq, number, generation)
        self._seq = 0
        self._tasks: dict[str, ProfileTask] = {}
        self._active_tasks: list[ProfileTask] = []
        self.writes_by_number: Counter[str] = Counter()  # link writes applied (POST, PUT, DELETE, tasks)
        self.version = 0  # bumped by every change: listings cache their sorted order on it
        self._sorted: tuple[int, LinkQuery, list[LinkRecord]] | None = None
        self._seed_links(random.Random(f"bulkops-sandbox/10dlc/links/{config.seed}"))

    def _seed_links(self, rng: random.Random) -> None:
        """A quarter of the long codes on a profile start ASSIGNED to one of the first two campaigns."""
        usable = [c.campaign_id for c in self.campaigns.values() if c.refusal() is None][:2]
        if not usable:
            return
        state = self._numbers
        for profile_id in state.profile_ids():
            for e164 in state.members(profile_id):
                if rng.random() >= SEEDED_LINK_SHARE:
                    continue
                record = state.get(e164)
                if record is None or record.type is not NumberType.LONGCODE:
                    continue
                ts = float(record.created_ts) + 3_600
                campaign = usable[record.index % len(usable)]
                self._links[e164] = LinkRecord(e164, campaign, LinkStatus.ASSIGNED, ts, ts)

    # -- campaigns -------------------------------------------------------------------------------

    def campaign(self, campaign_id: str) -> CampaignRecord | None:
        return self.campaigns.get(campaign_id)

    def assignable(self, campaign_id: str, pointer: str = "/campaignId") -> CampaignRecord:
        """The campaign, if numbers can be linked to it; else a 422 naming it and why."""
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            raise invalid(
                f"Campaign {campaign_id[:60]!r} does not exist on this account; "
                "list campaigns with GET /10dlc/campaign?brandId=<brand>.",
                pointer=pointer,
            )
        why = campaign.refusal()
        if why is not None:
            raise invalid(f"Campaign {campaign_id} cannot take phone numbers: {why}.", pointer=pointer)
        return campaign

    def assigned_count(self, campaign_id: str) -> int:
        return sum(1 for link in self._links.values()
                   if link.campaign_id == campaign_id and link.status is not LinkStatus.FAILED_ASSIGNMENT)

    # -- time ------------------------------------------------------------------------------------

    def settle(self, now: float | None = None) -> None:
        """Apply every transition that fell due by ``now`` (default: the clock); call it before
        any read or write."""
        now = self._clock() if now is None else now
        due = self._due
        while due and due[0][0] <= now:
            _, _, number, generation = heapq.heappop(due)
            link = self._links.get(number)
            if link is None or link.generation != generation:
                continue  # a later write replaced the one this entry was for
            if link.status is LinkStatus.PENDING_ASSIGNMENT:
                link.status = LinkStatus.FAILED_ASSIGNMENT if link.fails else LinkStatus.ASSIGNED
                if link.fails:
                    link.failure_reasons = self._outcomes.choice(FAILURE_REASONS)
                link.updated_ts = self._wall()
            elif link.status is LinkStatus.PENDING_UNASSIGNMENT:
                del self._links[number]
            self.version += 1
        if self._active_tasks:
            self._advance_tasks(now)

    def settle_all(self) -> int:
        """Finish every pending link and task now (a control route); how many links settled."""
        pending = sum(1 for link in self._links.values()
                      if link.status in (LinkStatus.PENDING_ASSIGNMENT, LinkStatus.PENDING_UNASSIGNMENT))
        self.settle(math.inf)  # tasks run to the end, and link what they reach...
        pending += sum(1 for link in self._links.values() if link.status is LinkStatus.PENDING_ASSIGNMENT)
        self.settle(math.inf)  # ... which settles here
        return pending

    def _schedule(self, link: LinkRecord) -> None:
        delay = self.delay * (0.5 + self._outcomes.random()) if self.delay > 0 else 0.0
        self._seq += 1
        heapq.heappush(self._due, (self._clock() + delay, self._seq, link.phone_number, link.generation))

    # -- links -----------------------------------------------------------------------------------

    def link(self, phone_number: str) -> LinkRecord | None:
        return self._links.get(phone_number)

    def links(self) -> dict[str, LinkRecord]:
        """Every link now, by number (a live view: do not mutate)."""
        return self._links

    def _check_number(self, phone_number: str, pointer: str) -> None:
        """The notes' preconditions on the number of a POST or PUT body (a 422 at ``pointer``)."""
        record = self._numbers.get(phone_number)
        if record is None:
            raise invalid(_not_on_account(phone_number), pointer=pointer)
        if record.type is not NumberType.LONGCODE:
            raise invalid(
                f"{phone_number} is a toll-free number; 10DLC campaigns take US long codes only.",
                pointer=pointer,
            )
        if self._numbers.profile_of(phone_number) is None:
            raise invalid(
                f"{phone_number} is not on a messaging profile; assign it to one first "
                "(PATCH /phone_numbers/{id}/messaging), then link it to a campaign.",
                pointer=pointer,
            )

    def _write(self, link: LinkRecord, campaign_id: str) -> None:
        now = self._wall()
        link.campaign_id = campaign_id
        link.status = LinkStatus.PENDING_ASSIGNMENT
        link.failure_reasons = None
        link.updated_ts = now
        link.generation += 1
        link.fails = bool(self.fail_rate) and self._outcomes.random() < self.fail_rate
        self._schedule(link)
        self.writes_by_number[link.phone_number] += 1
        self.version += 1

    def create(self, phone_number: str, campaign_id: str) -> LinkRecord:
        """POST: link a number that has no live link (a failed one may be tried again)."""
        self._check_number(phone_number, "/phoneNumber")
        existing = self._links.get(phone_number)
        if existing is not None and existing.status is not LinkStatus.FAILED_ASSIGNMENT:
            self._refuse_busy(existing)
            raise invalid(
                f"{phone_number} is already assigned to campaign {existing.campaign_id} "
                f"({existing.status.value}); a number takes one campaign: move it with "
                f"PUT /10dlc/phone_number_campaigns/{phone_number}.",
                pointer="/phoneNumber",
            )
        self.assignable(campaign_id)
        now = self._wall()
        link = existing or LinkRecord(phone_number, campaign_id, LinkStatus.PENDING_ASSIGNMENT, now, now)
        self._links[phone_number] = link
        self._write(link, campaign_id)
        return link

    def replace(self, phone_number: str, campaign_id: str) -> LinkRecord:
        """PUT: move a linked number (the same campaign again: unchanged, unless it failed)."""
        link = self._existing(phone_number)
        self._refuse_busy(link)
        self.assignable(campaign_id)
        same = link.campaign_id == campaign_id and link.status is not LinkStatus.FAILED_ASSIGNMENT
        if not same:
            self._check_number(phone_number, "/phoneNumber")
            self._write(link, campaign_id)
        return link

    def remove(self, phone_number: str) -> LinkRecord:
        """DELETE: the link goes PENDING_UNASSIGNMENT, then away (repeating it changes nothing)."""
        link = self._existing(phone_number)
        if link.status is not LinkStatus.PENDING_UNASSIGNMENT:
            link.status = LinkStatus.PENDING_UNASSIGNMENT
            link.failure_reasons = None
            link.updated_ts = self._wall()
            link.generation += 1
            self._schedule(link)
            self.writes_by_number[phone_number] += 1
            self.version += 1
        return link

    def force(self, phone_number: str, campaign_id: str | None) -> None:
        """Change a link behind a job's back (tests of drift): ASSIGNED to ``campaign_id`` at
        once, or none (None); no preconditions, not counted as a write."""
        if self._numbers.get(phone_number) is None:
            raise KeyError(f"{phone_number!r} is not on the sandbox account")
        if campaign_id is not None and campaign_id not in self.campaigns:
            raise KeyError(f"campaign {campaign_id!r} does not exist")
        if campaign_id is None:
            self._links.pop(phone_number, None)
        else:
            now = self._wall()
            link = self._links.setdefault(
                phone_number, LinkRecord(phone_number, campaign_id, LinkStatus.ASSIGNED, now, now))
            link.campaign_id, link.status, link.failure_reasons = campaign_id, LinkStatus.ASSIGNED, None
            link.updated_ts = now
            link.generation += 1  # whatever was due for it is stale now
        self.version += 1

    def _existing(self, phone_number: str) -> LinkRecord:
        link = self._links.get(phone_number)
        if link is None:
            if self._numbers.get(phone_number) is None:
                raise not_found(_not_on_account(phone_number), parameter="phoneNumber")
            raise not_found(
                f"{phone_number} has no campaign assignment; create one with "
                "POST /10dlc/phone_number_campaigns.",
                parameter="phoneNumber",
            )
        return link

    @staticmethod
    def _refuse_busy(link: LinkRecord) -> None:
        if link.status is LinkStatus.PENDING_UNASSIGNMENT:
            raise ApiProblem(
                409, "10015", "Unassignment in progress",
                f"{link.phone_number} is being removed from campaign {link.campaign_id}; "
                "poll GET /10dlc/phone_number_campaigns/{phoneNumber} until it answers 404, then retry.",
            )

    def query(self, q: LinkQuery) -> list[LinkRecord]:
        """Links matching every filter, in the asked order (cached until the next change)."""
        cached = self._sorted
        if cached is not None and cached[0] == self.version and cached[1] == q:
            return cached[2]
        campaigns = self.campaigns
        result: list[LinkRecord] = []
        for link in self._links.values():
            if q.campaign_id is not None and link.campaign_id != q.campaign_id:
                continue
            if q.brand_id is not None or q.tcr_campaign_id is not None or q.tcr_brand_id is not None:
                campaign = campaigns.get(link.campaign_id)
                if campaign is None or (
                    (q.brand_id is not None and campaign.brand_id != q.brand_id)
                    or (q.tcr_campaign_id is not None and campaign.tcr_campaign_id != q.tcr_campaign_id)
                    or (q.tcr_brand_id is not None and campaign.tcr_brand_id != q.tcr_brand_id)
                ):
                    continue
            result.append(link)
        field_name = q.sort.lstrip("-")
        reverse = q.sort.startswith("-")
        # Ties broken by phone number (in the same direction), so pages never overlap.
        key: Callable[[LinkRecord], tuple[object, str]]
        if field_name == "phoneNumber":
            key = lambda link: ("", link.phone_number)  # noqa: E731
        elif field_name == "assignmentStatus":
            key = lambda link: (link.status.value, link.phone_number)  # noqa: E731
        else:
            key = lambda link: (link.created_ts, link.phone_number)  # noqa: E731
        result.sort(key=key, reverse=reverse)
        self._sorted = (self.version, q, result)
        return result

    # -- bulk by profile -------------------------------------------------------------------------

    def start_task(self, profile_id: str, campaign_id: str) -> ProfileTask:
        now = self._wall()
        task = ProfileTask(
            task_id=str(uuid.UUID(int=self._ids.getrandbits(128), version=4)),
            profile_id=profile_id,
            campaign_id=campaign_id,
            numbers=tuple(self._numbers.members(profile_id)),
            created_ts=now,
            started=self._clock(),
            updated_ts=now,
        )
        self._tasks[task.task_id] = task
        self._active_tasks.append(task)
        return task

    def task(self, task_id: str) -> ProfileTask | None:
        return self._tasks.get(task_id)

    def _advance_tasks(self, now: float) -> None:
        still: list[ProfileTask] = []
        for task in self._active_tasks:
            total = len(task.numbers)
            if not self._numbers.has_profile(task.profile_id):
                task.failed = True
                task.statuses.extend(["failed"] * (total - len(task.statuses)))
            else:
                elapsed = now - task.started
                due = total if math.isinf(elapsed) else min(total, int(elapsed * self.speed) + 1)
                while len(task.statuses) < due:
                    task.statuses.append(self._task_link(task, task.numbers[len(task.statuses)]))
            task.updated_ts = self._wall()
            if len(task.statuses) < total:
                still.append(task)
        self._active_tasks = still

    def _task_link(self, task: ProfileTask, number: str) -> str:
        """One number of a task: linked as POST or PUT would (``success``), else ``failed``."""
        record = self._numbers.get(number)
        if (record is None or record.type is not NumberType.LONGCODE
                or self._numbers.profile_of(number) != task.profile_id):
            return "failed"
        link = self._links.get(number)
        if link is not None and link.status is LinkStatus.PENDING_UNASSIGNMENT:
            return "failed"
        if link is not None and link.campaign_id == task.campaign_id and link.status is not LinkStatus.FAILED_ASSIGNMENT:
            return "success"  # already there
        if link is None:
            now = self._wall()
            link = LinkRecord(number, task.campaign_id, LinkStatus.PENDING_ASSIGNMENT, now, now)
            self._links[number] = link
        self._write(link, task.campaign_id)
        return "success"


def _not_on_account(phone_number: str) -> str:
    return (
        f"Phone number {phone_number[:40]!r} is not on this account; give it in E.164 with its "
        "+ (e.g. +13125550101, or %2B13125550101 in a path)."
    )


def page_of(items: Sequence[T], page: int, size: int) -> Sequence[T]:
    """One 1-based page; past the end is empty (``records: []``), never an error."""
    start = (page - 1) * size
    return items[start : start + size] if start < len(items) else ()


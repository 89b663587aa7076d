"""Typed records the journal stores and returns: jobs, items, updates, staging results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bulkops.journal.states import ItemState, JobState, OrderState
from bulkops.models import ApiErrorInfo, Extra, Kind, Resource

# The job a journal is created for, from its CSV; rollbacks of it get the ids after it.
CSV_JOB = 1


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: Kind
    name: str
    state: JobState
    created_at: str
    updated_at: str
    job_file: str | None
    csv_path: str | None
    csv_sha256: str | None
    default_profile_id: str | None
    parent_id: int | None  # a rollback job points at the job it undoes
    settings: Mapping[str, object]  # JSON-able run settings; never the API key


@dataclass(frozen=True, slots=True)
class Item:
    """One attribute of one resource in one job (see ``models.Resource``)."""

    job_id: int
    phone_number: str  # the resource's key: E.164, or a short code's digits
    line: int
    desired: str  # "" = unassigned
    prior: str | None  # profile before the job: None = unknown yet, "" = had none
    expected: str | None  # rollback only: the profile the original job set
    state: ItemState
    attempts: int
    http_status: int | None
    error_code: str | None
    error_title: str | None
    error_detail: str | None
    note: str | None
    on_account: bool | None  # None = not checked; False = the API does not know the number
    extra: Extra
    updated_at: str
    via: str | None = None  # the bulk order that applied it (its order_id), else None
    resource: Resource = Resource.PHONE_NUMBER
    ref: str | None = None  # the API id it is written through, when not the key (a short code's UUID)


@dataclass(frozen=True, slots=True)
class ItemUpdate:
    """One state change of one item; ``None`` fields keep their journaled value."""

    job_id: int
    phone_number: str
    from_state: ItemState
    to_state: ItemState
    attempts: int | None = None
    http_status: int | None = None
    error: ApiErrorInfo | None = None
    note: str | None = None


@dataclass(frozen=True)
class Conflict:  # one number sent to two different profiles by two lines of the CSV
    phone_number: str
    line_a: int  # the first line naming the number
    desired_a: str
    line_b: int  # a later line naming another target
    desired_b: str


@dataclass(frozen=True)
class StagingResult:
    rows: int  # rows staged (before collapsing)
    collapsed: int  # later duplicate lines with the same target, folded into the first
    collapsed_lines: tuple[int, ...]  # the first 20 of them
    conflicts: tuple[Conflict, ...]  # the first 50
    conflict_count: int  # lines whose target differs from the number's first line


@dataclass(frozen=True)
class OrderRecord:
    """One bulk order as journaled (table ``orders``)."""

    id: int  # ours, known before the POST
    job_id: int
    profile_id: str  # the target: "" = unassign
    order_id: str | None  # the server's, once it answered
    state: OrderState
    generation: int  # 0 = first order of its numbers; 1 = the one re-order after a time-out
    numbers: int
    posted_at: float | None  # epoch seconds of the POST: the --order-timeout runs from here


@dataclass(frozen=True)
class SnapshotEntry:
    phone_number: str  # the item's key
    current: str | None  # None = not on the account; "" = unassigned




# The columns of one point of a job's series (table ``series``), in order, after t and width.
SERIES_COUNTS = ("requests", "answers_2xx", "answers_4xx", "answers_5xx", "rate_limited", "holds",
                 "held_seconds", "transient", "done", "failed")


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """What happened during one time bucket of a job (``series``): counts over the bucket,
    gauges (orders open, the learned limit) as they were at its end."""

    t: int  # the bucket's start, epoch seconds
    width: int  # seconds
    requests: int = 0  # HTTP attempts started
    answers_2xx: int = 0
    answers_4xx: int = 0  # 429s included (rate_limited counts them alone)
    answers_5xx: int = 0
    rate_limited: int = 0  # 429 answers
    holds: int = 0  # pool-wide 429 holds started
    held_seconds: float = 0.0
    transient: int = 0  # attempts that got a 5xx or no answer at all
    done: int = 0  # rows finished done
    failed: int = 0  # rows finished failed
    orders_open: int | None = None  # None: the job used no bulk orders
    rate_limit: float | None = None  # requests/s the limiter allowed; None: unpaced


@dataclass(frozen=True)
class RunRecord:
    """One run of a job (``runs``): `run`, a resume, `retry-failed`, `rollback`."""

    id: int
    job_id: int
    started_at: str
    ended_at: str | None  # None: still running, or the process died (see ``pid``)
    state: str | None  # the job's state when the run ended
    exit_code: int | None
    pid: int | None  # the process that ran it

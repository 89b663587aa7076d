"""Typed data shared by the modules: job kinds, parsed rows, problems, API views (the
journal's states are in ``journal/states.py``).

Dicts live only at the JSON and CSV edges; everything inside is one of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from bulkops.journal.states import ItemState

# Telnyx quirk (docs/telnyx/API-NOTES.md): on PATCH /phone_numbers/{id}/messaging the empty string
# unassigns, while null or an absent field silently keeps the current profile.
UNASSIGNED = ""


class Kind(str, Enum):
    """What a job does to each number."""

    ASSIGN = "assign"
    UNASSIGN = "unassign"
    MIGRATE = "migrate"
    SET = "set"  # the desired state: each row says where its number must be ("" = unassigned)
    ROLLBACK = "rollback"  # created by `bulkops rollback`, never from a CSV


class Resource(str, Enum):
    """The kind of resource an item changes: the change model of issue 17.

    An item is one attribute of one resource, with its prior and desired value. Each kind
    names its key (the journal's ``items.phone_number`` column, unique in a job: an E.164
    number starts with "+", a short code is digits, so keys of two kinds never meet), the
    API id it is written through (``items.ref`` when that is not the key) and the attribute
    (``desired``/``prior``). Snapshot, write, read-back and verify dispatch on it
    (``bulkops/resources.py``); the journal, report, plan and rollback only carry it.
    """

    PHONE_NUMBER = "phone_number"  # key E.164; attribute: messaging profile
    SHORT_CODE = "short_code"  # key: its digits; ref: its UUID; attribute: messaging profile

    @property
    def label(self) -> str:  # how the plan, the report and messages name one
        return "short code" if self is Resource.SHORT_CODE else "number"


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


Extra = tuple[tuple[str, str], ...]  # extra CSV columns, (header, value), kept for the report


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or worth a warning) in an input file, located precisely."""

    path: str
    line: int  # 1-based physical line where the record starts; 0 = whole file
    message: str  # what is wrong and what to do
    column: int | None = None  # 1-based field position in the CSV row
    field: str | None = None  # header name of that column, when known
    severity: Severity = Severity.ERROR
    # The row's cells as read, (column, text), for the report of a rejected row; required
    # columns under their canonical names (phone_number, messaging_profile_id, ...).
    cells: Extra = ()

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        if self.column is not None:
            where += f":{self.column}"
        if self.field:
            where += f" ({self.field})"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class NumberRow:
    """A valid assign / unassign row: this number should end on ``profile_id``."""

    line: int
    phone_number: str  # E.164, normalised
    profile_id: str  # a UUID for assign; UNASSIGNED ("") for unassign
    extra: Extra = ()
    # A row naming a short code: ``phone_number`` holds its digits (or, before the account's
    # listing resolved it, the UUID written) and ``ref`` its UUID once resolved.
    resource: Resource = Resource.PHONE_NUMBER
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class MigrateRow:
    """A valid migrate row: every number on ``from_profile_id`` moves to ``to_profile_id``."""

    line: int
    from_profile_id: str
    to_profile_id: str
    extra: Extra = ()


@dataclass(frozen=True, slots=True)
class NumberState:
    """What the API says about one number's messaging settings."""

    phone_number: str
    profile_id: str | None  # None when unassigned (the API answers null or "")
    number_id: str | None = None

    @property
    def profile_or_unassigned(self) -> str:
        return self.profile_id or UNASSIGNED


@dataclass(frozen=True, slots=True)
class ShortCode:
    """One short code as the API shows it (docs/telnyx/short-codes-10dlc.openapi.yml)."""

    id: str  # its UUID: the path of GET/PATCH /short_codes/{id}
    short_code: str  # its digits
    profile_id: str | None  # None when bound to no profile
    country_code: str = ""

    @property
    def profile_or_unassigned(self) -> str:
        return self.profile_id or UNASSIGNED


@dataclass(frozen=True, slots=True)
class OrderStatus:
    """A bulk order as the API shows it: only the three lists (no status, no reasons)."""

    order_id: str
    success: tuple[str, ...]
    pending: tuple[str, ...]
    failed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class AccountNumber:
    """One number as the account listing shows it: what `bulkops export` writes."""

    phone_number: str
    profile_id: str | None  # None when unassigned
    type: str  # longcode | tollfree | shortcode ("" when the API leaves it out)
    messaging_product: str


@dataclass(frozen=True, slots=True)
class ApiErrorInfo:
    """Telnyx's error fields, kept verbatim for the operator and the report."""

    status: int | None
    code: str | None = None
    title: str | None = None
    detail: str | None = None

    def describe(self) -> str:
        parts = [f"HTTP {self.status}" if self.status is not None else "no response"]
        if self.code:
            parts.append(f"code {self.code}")
        text = " - ".join(p for p in (self.title, self.detail) if p)
        return ", ".join(parts) + (f": {text}" if text else "")


@dataclass(slots=True)
class Counts:
    """Item counts by state; the summary at exit and in `status`."""

    by_state: dict[ItemState, int] = field(default_factory=dict)
    rejected: int = 0

    def get(self, state: ItemState) -> int:
        return self.by_state.get(state, 0)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

"""Typed records of the sandbox account: phone numbers, short codes, messaging profiles.

Numbers never change identity, so their record is frozen and shared; what a
write changes (profile, product, tags, updated_at) lives in the state's sparse
maps and is read out as a ``NumberView``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class NumberType(str, Enum):
    LONGCODE = "longcode"
    TOLLFREE = "tollfree"


@dataclass(frozen=True, slots=True)
class NumberRecord:
    """One number on the account, as seeded."""

    index: int  # position in seed order; drives the deterministic health figures
    phone_number: str  # E.164
    number_id: str  # Telnyx-style numeric id, also accepted in /phone_numbers/{id}
    type: NumberType
    created_ts: int  # epoch seconds


SettingValue = str | int | float | bool
Settings = tuple[tuple[str, SettingValue], ...]  # a small JSON object, frozen


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """A messaging profile; updates replace the record (dataclasses.replace)."""

    id: str  # lower-case UUID
    name: str
    created_ts: float
    updated_ts: float
    v1_secret: str
    enabled: bool = True
    whitelisted_destinations: tuple[str, ...] = ("US",)
    webhook_url: str | None = None
    webhook_failover_url: str | None = None
    webhook_api_version: str = "2"
    alpha_sender: str | None = None
    daily_spend_limit: str | None = None  # omitted from JSON when None: the spec's type is string
    daily_spend_limit_enabled: bool = False
    mms_fall_back_to_sms: bool = False
    mms_transcoding: bool = False
    mobile_only: bool = False
    smart_encoding: bool = False
    number_pool_settings: Settings | None = None
    url_shortener_settings: Settings | None = None
    ai_assistant_id: str | None = None
    resource_group_id: str | None = None
    health_webhook_url: str | None = None
    redaction_enabled: bool = False
    redaction_level: int = 2


@dataclass(frozen=True, slots=True)
class ShortCodeRecord:
    """One short code on the account, as seeded: its UUID (the path ``{id}``) and its digits."""

    id: str  # lower-case UUID
    short_code: str  # 5 or 6 digits
    country_code: str
    created_ts: float


@dataclass(frozen=True, slots=True)
class ShortCodeView:
    """A short code's binding at one moment, ready to serialise."""

    record: ShortCodeRecord
    profile_id: str | None  # None = bound to no profile (answered as JSON null)
    tags: tuple[str, ...]
    updated_ts: float


@dataclass(frozen=True, slots=True)
class NumberView:
    """A number's messaging settings at one moment, ready to serialise."""

    record: NumberRecord
    profile_id: str | None  # None = unassigned (answered as JSON null)
    messaging_product: str
    tags: tuple[str, ...]
    updated_ts: float


@dataclass(frozen=True, slots=True)
class NumberQuery:
    """Filters of GET /phone_numbers/messaging, already parsed and normalised."""

    phone_numbers: tuple[str, ...] | None = None
    profile_id: str | None = None
    contains: str | None = None
    type: str | None = None
    descending: bool = False

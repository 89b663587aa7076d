"""Serialisation of sandbox records to the spec's JSON shapes (the only dicts we build).

Figures Telnyx computes (health, features) are derived from the number's seed
index, so the same seed always answers the same body.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache

from .records import NumberType, NumberView, ProfileRecord, Settings, ShortCodeView

JsonObject = dict[str, object]

_ELIGIBLE = {NumberType.LONGCODE: ("A2P", "P2P"), NumberType.TOLLFREE: ("A2P",)}


def eligible_products(kind: NumberType) -> tuple[str, ...]:
    """Messaging products a number of this type may be switched to."""
    return _ELIGIBLE[kind]


def iso(ts: float) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as Telnyx writes timestamps.

    The same rounding as ``datetime.fromtimestamp`` (to the microsecond, half to even) at a
    fifth of its cost: every number object carries two of these, and a page has 250."""
    frac, whole = math.modf(ts)
    micros = round(frac * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros // 1000:03d}Z"


@lru_cache(maxsize=1 << 16)
def _health(index: int) -> Mapping[str, object]:  # read-only: shared between answers
    h = (index * 2_654_435_761 + 12_345) & 0xFFFF_FFFF
    return {
        "message_count": h % 5_000,
        "inbound_outbound_ratio": round((h >> 8) % 100 / 100, 2),
        "success_ratio": round(0.85 + (h >> 12) % 1_500 / 10_000, 4),
        "spam_ratio": round((h >> 20) % 300 / 10_000, 4),
    }


def number_json(view: NumberView, record_type: str = "messaging_settings") -> JsonObject:
    """A ``PhoneNumberWithMessagingSettings``; an unassigned number has ``messaging_profile_id`` null."""
    rec = view.record
    long_code = rec.type is NumberType.LONGCODE
    return {
        "record_type": record_type,
        "id": rec.number_id,
        "phone_number": rec.phone_number,
        "messaging_profile_id": view.profile_id,
        "country_code": "US",
        "type": rec.type.value,
        "messaging_product": view.messaging_product,
        "traffic_type": view.messaging_product,
        "eligible_messaging_products": list(_ELIGIBLE[rec.type]),
        "features": {
            "sms": {
                "domestic_two_way": True,
                "international_inbound": long_code,
                "international_outbound": True,
            },
            "mms": (
                {"domestic_two_way": True, "international_inbound": False, "international_outbound": False}
                if long_code
                else None
            ),
        },
        "health": _health(rec.index),
        "tags": list(view.tags),
        "created_at": iso(rec.created_ts),
        "updated_at": iso(view.updated_ts),
    }


def short_code_json(view: ShortCodeView) -> JsonObject:
    """A ``ShortCode``; one bound to no profile has ``messaging_profile_id`` null."""
    rec = view.record
    return {
        "record_type": "short_code",
        "id": rec.id,
        "short_code": rec.short_code,
        "country_code": rec.country_code,
        "messaging_profile_id": view.profile_id,
        "tags": list(view.tags),
        "created_at": iso(rec.created_ts),
        "updated_at": iso(view.updated_ts),
    }


def _settings(settings: Settings | None) -> JsonObject | None:
    return None if settings is None else dict(settings)


def profile_json(profile: ProfileRecord) -> JsonObject:
    """A ``MessagingProfile``."""
    out: JsonObject = {
        "record_type": "messaging_profile",
        "id": profile.id,
        "name": profile.name,
        "enabled": profile.enabled,
        "webhook_url": profile.webhook_url,
        "webhook_failover_url": profile.webhook_failover_url,
        "webhook_api_version": profile.webhook_api_version,
        "whitelisted_destinations": list(profile.whitelisted_destinations),
        "alpha_sender": profile.alpha_sender,
        "daily_spend_limit_enabled": profile.daily_spend_limit_enabled,
        "mms_fall_back_to_sms": profile.mms_fall_back_to_sms,
        "mms_transcoding": profile.mms_transcoding,
        "mobile_only": profile.mobile_only,
        "smart_encoding": profile.smart_encoding,
        "number_pool_settings": _settings(profile.number_pool_settings),
        "url_shortener_settings": _settings(profile.url_shortener_settings),
        "ai_assistant_id": profile.ai_assistant_id,
        "resource_group_id": profile.resource_group_id,
        "health_webhook_url": profile.health_webhook_url,
        "redaction_enabled": profile.redaction_enabled,
        "redaction_level": profile.redaction_level,
        "v1_secret": profile.v1_secret,
        "created_at": iso(profile.created_ts),
        "updated_at": iso(profile.updated_ts),
    }
    if profile.daily_spend_limit is not None:
        out["daily_spend_limit"] = profile.daily_spend_limit
    return out


def page_meta(total: int, page_number: int, page_size: int) -> JsonObject:
    """``messaging_PaginationMeta``; an empty listing has 0 pages."""
    return {
        "page_number": page_number,
        "page_size": page_size,
        "total_pages": math.ceil(total / page_size),
        "total_results": total,
    }


def page_slice(items: Sequence[str], page_number: int, page_size: int) -> Sequence[str]:
    """One page of a listing; a page beyond the end is empty, never an error."""
    start = (page_number - 1) * page_size
    if start >= len(items):
        return ()
    return items[start : start + page_size]

"""Field-by-field checks of messaging-profile bodies against the spec's request schemas.

The sandbox ships without a JSON-schema engine (it is runtime code with runtime
dependencies only), so the few constraints the spec states are written out
here. A value that breaks one is a 422 pointing at the field; unknown fields
and read-only fields are ignored, as Telnyx does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .params import as_uuid, json_type
from .problems import invalid
from .records import SettingValue, Settings

if TYPE_CHECKING:
    from .state import SandboxState

Kind = Literal["string", "boolean", "countries", "pool", "shortener"]

_ALPHA_SENDER = re.compile(r"[A-Za-z0-9 ]{1,11}")
_SPEND_LIMIT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True, slots=True)
class Rule:
    kind: Kind
    nullable: bool = False
    pattern: re.Pattern[str] | None = None
    enum: tuple[str, ...] = ()
    max_length: int | None = None
    non_empty: bool = False


_COMMON: dict[str, Rule] = {
    "name": Rule("string", non_empty=True, max_length=255),
    "enabled": Rule("boolean"),
    "alpha_sender": Rule("string", nullable=True, pattern=_ALPHA_SENDER),
    "daily_spend_limit": Rule("string", pattern=_SPEND_LIMIT),
    "daily_spend_limit_enabled": Rule("boolean"),
    "mms_fall_back_to_sms": Rule("boolean"),
    "mms_transcoding": Rule("boolean"),
    "mobile_only": Rule("boolean"),
    "smart_encoding": Rule("boolean"),
    "number_pool_settings": Rule("pool", nullable=True),
    "url_shortener_settings": Rule("shortener", nullable=True),
    "webhook_api_version": Rule("string", enum=("1", "2", "2010-04-01")),
    "webhook_url": Rule("string", nullable=True, max_length=2048),
    "webhook_failover_url": Rule("string", nullable=True, max_length=2048),
    "whitelisted_destinations": Rule("countries"),
    "ai_assistant_id": Rule("string", nullable=True, max_length=64),
}
CREATE_RULES: dict[str, Rule] = {
    **_COMMON,
    "resource_group_id": Rule("string", nullable=True, max_length=64),
    "health_webhook_url": Rule("string", nullable=True, max_length=2048),
}
UPDATE_RULES: dict[str, Rule] = {**_COMMON, "v1_secret": Rule("string", max_length=255)}


def _number(value: object, pointer: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"{pointer} must be a number, not {json_type(value)}.", pointer=pointer)
    if not math.isfinite(value) or value < 0:
        raise invalid(f"{pointer} must be a non-negative number.", pointer=pointer)
    return value


def _boolean(value: object, pointer: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"{pointer} must be true or false, not {json_type(value)}.", pointer=pointer)
    return value


def _string(value: object, pointer: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"{pointer} must be a string, not {json_type(value)}.", pointer=pointer)
    return value


def _object(value: object, pointer: str, required: Mapping[str, str], optional: Mapping[str, str]) -> Settings:
    if not isinstance(value, dict):
        raise invalid(f"{pointer} must be an object or null, not {json_type(value)}.", pointer=pointer)
    out: list[tuple[str, SettingValue]] = []
    for key, kind in {**required, **optional}.items():
        where = f"{pointer}/{key}"
        if key not in value:
            if key in required:
                raise invalid(f"{where} is required.", pointer=where)
            if kind == "boolean":
                out.append((key, False))
            continue
        item = value[key]
        if kind == "number":
            out.append((key, _number(item, where)))
        elif kind == "boolean":
            out.append((key, _boolean(item, where)))
        else:
            out.append((key, _string(item, where)))
    return tuple(sorted(out))


def _check(name: str, rule: Rule, value: object) -> object:
    pointer = f"/{name}"
    if value is None:
        if rule.nullable:
            return None
        raise invalid(f"{pointer} must not be null.", pointer=pointer)
    if rule.kind == "boolean":
        return _boolean(value, pointer)
    if rule.kind == "countries":
        if not isinstance(value, list):
            raise invalid(f"{pointer} must be an array of country codes, not {json_type(value)}.", pointer=pointer)
        for i, item in enumerate(value):
            if not isinstance(item, str) or not _COUNTRY.fullmatch(item):
                raise invalid(
                    f"{pointer}/{i} must be an ISO 3166-1 alpha-2 country code such as \"US\".",
                    pointer=f"{pointer}/{i}",
                )
        return tuple(value)
    if rule.kind == "pool":
        return _object(
            value,
            pointer,
            {"long_code_weight": "number", "skip_unhealthy": "boolean", "toll_free_weight": "number"},
            {"geomatch": "boolean", "sticky_sender": "boolean"},
        )
    if rule.kind == "shortener":
        return _object(
            value,
            pointer,
            {"domain": "string"},
            {"prefix": "string", "replace_blacklist_only": "boolean", "send_webhooks": "boolean"},
        )
    text = _string(value, pointer)
    if rule.non_empty and not text.strip():
        raise invalid(f"{pointer} must not be empty.", pointer=pointer)
    if rule.max_length is not None and len(text) > rule.max_length:
        raise invalid(f"{pointer} must be at most {rule.max_length} characters.", pointer=pointer)
    if rule.pattern is not None and not rule.pattern.fullmatch(text):
        raise invalid(f"{pointer} must match {rule.pattern.pattern}.", pointer=pointer)
    if rule.enum and text not in rule.enum:
        raise invalid(f"{pointer} must be one of {', '.join(rule.enum)}.", pointer=pointer)
    return text


def check_fields(body: Mapping[str, object], rules: Mapping[str, Rule]) -> dict[str, Any]:
    """Checked values of the known fields present in ``body``, keyed by field name.

    Values are typed as ``ProfileRecord``'s same-named fields (Any only because
    the mapping is heterogeneous), ready for ``dataclasses.replace``.
    """
    return {name: _check(name, rule, body[name]) for name, rule in rules.items() if name in body}


def require(body: Mapping[str, object], *names: str) -> None:
    for name in names:
        if name not in body:
            raise invalid(f"/{name} is required.", pointer=f"/{name}")


def profile_target(state: SandboxState, value: object) -> str | None:
    """A ``messaging_profile_id`` to set: a UUID of this account's, or "" (None: unassign)."""
    pointer = "/messaging_profile_id"
    if not isinstance(value, str):
        raise invalid(
            f"{pointer} must be a string: a profile UUID, or \"\" to unassign (got {json_type(value)}).",
            pointer=pointer,
        )
    if value == "":
        return None
    profile_id = as_uuid(value)
    if profile_id is None:
        raise invalid(
            f"{pointer} must be a messaging profile UUID, or \"\" to unassign; got {value[:40]!r}.",
            pointer=pointer,
        )
    if not state.has_profile(profile_id):
        raise invalid(
            f"Messaging profile {profile_id} does not exist on this account; "
            "list them with GET /v2/messaging_profiles.",
            pointer=pointer,
        )
    return profile_id

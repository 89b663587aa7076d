"""The spec's answer shapes, read into typed records: anything missing is a ``BadShape``.

The client turns a ``BadShape`` into a permanent failure of that request, with the reason."""

from __future__ import annotations

from typing import Any

from bulkops.models import AccountNumber, NumberState, OrderStatus, Profile, ShortCode


class BadShape(ValueError):
    """A 2xx answer without the fields the spec promises."""


def _data(payload: Any) -> Any:
    if not isinstance(payload, dict) or "data" not in payload:
        raise BadShape("no `data` member")
    return payload["data"]


def _number_state(item: Any) -> NumberState:
    if not isinstance(item, dict):
        raise BadShape("a number is not a JSON object")
    number, profile, number_id = item.get("phone_number"), item.get("messaging_profile_id"), item.get("id")
    if not isinstance(number, str) or not number:
        raise BadShape("a number has no `phone_number`")
    if profile is not None and not isinstance(profile, str):
        raise BadShape(f"`messaging_profile_id` of {number} is not a string or null")
    # Unassigned numbers come back with null or "": both mean no profile.
    return NumberState(number, profile or None, None if number_id is None else str(number_id))


def updated_number(payload: Any) -> NumberState:
    return _number_state(_data(payload))


def maybe_number_state(payload: Any) -> NumberState | None:
    return None if payload is None else _number_state(_data(payload))


def numbers_page(payload: Any) -> tuple[list[NumberState], int]:
    """One page of numbers and the total page count (1 when ``meta`` is missing)."""
    items = _data(payload)
    if not isinstance(items, list):
        raise BadShape("`data` is not a list")
    meta = payload.get("meta")
    pages = meta.get("total_pages") if isinstance(meta, dict) else 1
    if not isinstance(pages, int) or isinstance(pages, bool) or pages < 0:
        raise BadShape("`meta.total_pages` is not a whole number")
    return [_number_state(item) for item in items], pages


def profile(payload: Any) -> Profile | None:
    if payload is None:
        return None  # 404
    data = _data(payload)
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise BadShape("the profile has no `id`")
    name = data.get("name")
    return Profile(data["id"], name if isinstance(name, str) else "")


def _meta_int(payload: Any, name: str, missing: int | None = None) -> int:
    """``meta.<name>``; ``missing`` stands in when the server leaves it out (None: required)."""
    meta = payload.get("meta") if isinstance(payload, dict) else None
    value = meta.get(name) if isinstance(meta, dict) else None
    if value is None and missing is not None:
        return missing
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadShape(f"`meta.{name}` is not a whole number")
    return value


def _pages(payload: Any, items: list[Any]) -> int:
    # The spec requires meta.total_pages; a server that leaves it out is read on while its
    # pages come back non-empty (the caller stops at the first empty page).
    return _meta_int(payload, "total_pages", missing=1 << 30 if items else 0)


def total_results(payload: Any) -> int:
    """``meta.total_results`` of a listing (the spec requires it): how many match."""
    _data(payload)
    return _meta_int(payload, "total_results")


def _profile_item(item: Any) -> Profile:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        raise BadShape("a profile has no `id`")
    name = item.get("name")
    return Profile(item["id"], name if isinstance(name, str) else "")


def profiles_page(payload: Any) -> tuple[list[Profile], int]:
    """One page of messaging profiles and the total page count."""
    items = _data(payload)
    if not isinstance(items, list):
        raise BadShape("`data` is not a list")
    return [_profile_item(item) for item in items], _pages(payload, items)


def _text(item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    return value if isinstance(value, str) else ""


def account_page(payload: Any) -> tuple[list[AccountNumber], int, int]:
    """One page of the account listing: numbers, total pages, total results."""
    items = _data(payload)
    if not isinstance(items, list):
        raise BadShape("`data` is not a list")
    numbers = []
    for item in items:
        state = _number_state(item)
        numbers.append(AccountNumber(state.phone_number, state.profile_id, _text(item, "type"),
                                     _text(item, "messaging_product")))
    return numbers, _pages(payload, items), _meta_int(payload, "total_results", missing=0)


def _numbers(data: dict[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name, [])  # the spec requires none of the lists: absent means empty
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise BadShape(f"the order's `{name}` is not a list of numbers")
    return tuple(value)


def order_status(payload: Any) -> OrderStatus:
    """A ``BulkMessagingSettingsUpdatePhoneNumbers``: the order id and its three lists."""
    data = _data(payload)
    if not isinstance(data, dict) or not isinstance(data.get("order_id"), str) or not data["order_id"]:
        raise BadShape("the bulk order has no `order_id`")
    return OrderStatus(data["order_id"], _numbers(data, "success"), _numbers(data, "pending"),
                       _numbers(data, "failed"))


def _short_code(item: Any) -> ShortCode:
    """A ``ShortCode`` (docs/telnyx/short-codes-10dlc.openapi.yml): only ``messaging_profile_id``
    is required there; without its id and digits bulkops cannot use it."""
    if not isinstance(item, dict):
        raise BadShape("a short code is not a JSON object")
    code_id, digits, profile = item.get("id"), item.get("short_code"), item.get("messaging_profile_id")
    if not isinstance(code_id, str) or not code_id:
        raise BadShape("a short code has no `id`")
    if not isinstance(digits, str) or not digits:
        raise BadShape(f"short code {code_id} has no `short_code`")
    if profile is not None and not isinstance(profile, str):
        raise BadShape(f"`messaging_profile_id` of short code {digits} is not a string or null")
    return ShortCode(code_id, digits, profile or None, _text(item, "country_code"))


def short_code(payload: Any) -> ShortCode:
    return _short_code(_data(payload))


def maybe_short_code(payload: Any) -> ShortCode | None:
    return None if payload is None else _short_code(_data(payload))


def short_codes_page(payload: Any) -> tuple[list[ShortCode], int]:
    """One page of short codes and the total page count."""
    items = _data(payload)
    if not isinstance(items, list):
        raise BadShape("`data` is not a list")
    return [_short_code(item) for item in items], _pages(payload, items)

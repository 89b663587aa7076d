"""Parsing of what a request carries: query parameters, path ids, JSON bodies.

Everything wrong here is the caller's fault and becomes a Telnyx-shaped 400/422
with code 10015 naming the parameter or the body pointer, never a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from multidict import MultiMapping

from .problems import bad_parameter, invalid

DEFAULT_PAGE_SIZE = 20  # the spec's default for page[size]
MAX_PAGE_SIZE = 250

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: int() would also take other scripts' digits


def as_uuid(value: str) -> str | None:
    """The canonical (lower-case) form of a UUID string, or None if it is not one."""
    return value.lower() if _UUID.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    size: int


def _int_param(query: MultiMapping[str], name: str, default: int, low: int, high: int | None) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    bounds = f"from {low} to {high}" if high is not None else f">= {low}"
    if not _DIGITS.fullmatch(raw):
        raise bad_parameter(name, f"{name} must be an integer {bounds}; got {raw[:40]!r}.")
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise bad_parameter(name, f"{name} must be an integer {bounds}; got {value}.")
    return value


def parse_page(query: MultiMapping[str]) -> Page:
    """``page[number]`` (>= 1, default 1) and ``page[size]`` (1..250, default 20)."""
    return Page(
        number=_int_param(query, "page[number]", 1, 1, None),
        size=_int_param(query, "page[size]", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
    )


def restore_plus(value: str) -> str:
    """Undo a "+" that arrived unencoded in a query string and was decoded as a space."""
    stripped = value.strip()
    if stripped and stripped[0].isdigit() and value[:1].isspace():
        return "+" + stripped
    return stripped


def phone_list(raw: str) -> tuple[str, ...]:
    """A comma-separated ``filter[phone_number]`` value as E.164 strings (order kept)."""
    return tuple(item for item in (restore_plus(part) for part in raw.split(",")) if item)


def choice(query: MultiMapping[str], name: str, allowed: tuple[str, ...]) -> str | None:
    raw = query.get(name)
    if raw is None:
        return None
    if raw not in allowed:
        raise bad_parameter(name, f"{name} must be one of {', '.join(allowed)}; got {raw[:40]!r}.")
    return raw


def uuid_param(query: MultiMapping[str], name: str) -> str | None:
    raw = query.get(name)
    if raw is None:
        return None
    value = as_uuid(raw.strip())
    if value is None:
        raise bad_parameter(name, f"{name} must be a UUID; got {raw[:40]!r}.")
    return value


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request) -> object:
    """The request body as JSON; empty or malformed bodies are a 400."""
    raw = await request.read()
    if not raw.strip():
        raise invalid("The request body is empty; send a JSON object.", pointer="/", status=400)
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise invalid(
            f"The request body is not valid JSON ({str(exc)[:80]}); send a JSON object.",
            pointer="/",
            status=400,
        ) from None


async def read_object(request: web.Request) -> Mapping[str, object]:
    """The request body, which must be a JSON object (else 422)."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid(f"The request body must be a JSON object, not {json_type(body)}.", pointer="/")
    return body

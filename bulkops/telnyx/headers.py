"""What a response says about the account's rate limit: ``x-ratelimit-*`` and ``Retry-After``.

Telnyx sends ``x-ratelimit-limit``, ``-remaining`` and ``-reset`` (seconds) on every answer
(docs/telnyx/API-NOTES.md); servers, proxies and gateways send other spellings and junk. Parsing never
raises: a value that cannot be true (zero or negative limit, a remaining above the limit, an
absurd size, a reset that is neither a delay nor an epoch timestamp) is dropped as "not said",
and the limiter treats what is left as a hint."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from multidict import CIMultiDict, CIMultiDictProxy

_EPOCH_LIKE = 1e9  # a "reset" this large is an epoch timestamp, not a delay (GitHub style)
_EPOCH_MS_LIKE = 1e12  # ... and this large, one in milliseconds
MAX_LIMIT = 1_000_000  # a larger limit or remaining is junk (or "unlimited"): not a budget
MAX_RESET = 86_400.0  # a reset further away than a day is junk, not a window


@dataclass(frozen=True, slots=True)
class ServerBudget:
    """What one response says about the account's rate limit; None = not said (or junk)."""

    limit: int | None
    remaining: int | None
    reset_after: float | None  # seconds until the window resets
    window: float | None = None  # window length, when the server states it ("100;w=1")


_NUMBER = re.compile(r"\s*(-?\d+(?:\.\d+)?)")
_WINDOW = re.compile(r";\s*w(?:indow)?\s*=\s*(\d+(?:\.\d+)?)")
_PREFIXES = ("x-ratelimit-", "ratelimit-", "x-rate-limit-")
_REPEATED = re.compile(r"\s*-?\d+(?:\.\d+)?\s*(?:,\s*-?\d+(?:\.\d+)?\s*)+")
_COMBINED = re.compile(r"(limit|remaining|reset)\s*=\s*([\d.]+)")


def _number(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number: float | None = float(value)  # the common case: a plain number
    except ValueError:
        match = _NUMBER.match(value)
        number = float(match.group(1)) if match else None
    return number if number is not None and math.isfinite(number) else None


def plain_budget(headers: Mapping[str, str]) -> ServerBudget | None:
    """The hot path, once per response: Telnyx's three headers as plain whole numbers (and
    a reset too small to be an epoch timestamp); None for anything else."""
    get = headers.get
    limit, remaining, reset = (get("x-ratelimit-limit"), get("x-ratelimit-remaining"),
                               get("x-ratelimit-reset"))
    if limit and remaining and reset and limit.isdecimal() and remaining.isdecimal() \
            and reset.isdecimal() and 0 < (limit_n := int(limit)) <= MAX_LIMIT \
            and (remaining_n := int(remaining)) <= limit_n and (reset_n := int(reset)) <= MAX_RESET:
        return ServerBudget(limit_n, remaining_n, float(reset_n))
    return None


def parse_budget(headers: Mapping[str, str], *, wall_now: float | None = None) -> ServerBudget:
    """Read x-ratelimit-limit/-remaining/-reset, tolerating other spellings and junk values.

    Also accepts ``RateLimit-*`` and ``X-Rate-Limit-*`` names, the combined IETF-draft
    ``RateLimit: limit=.., remaining=.., reset=..`` header, and a reset given as an epoch
    timestamp (converted with ``wall_now``; dropped without it).
    """
    # aiohttp's headers look up case-insensitively already: no copy on the hot path.
    lookup: Mapping[str, str] = (
        headers if isinstance(headers, (CIMultiDict, CIMultiDictProxy))
        else {key.lower(): value for key, value in headers.items()}
    )
    combined: dict[str, str] | None = None

    def field(name: str) -> str | None:
        nonlocal combined
        for prefix in _PREFIXES:
            value = lookup.get(prefix + name)
            if value is not None:
                return value
        if combined is None:
            combined = dict(_COMBINED.findall(lookup.get("ratelimit", "")))
        return combined.get(name)

    limit, remaining, reset = (_number(field(name)) for name in ("limit", "remaining", "reset"))
    if reset is not None and reset >= _EPOCH_LIKE:
        epoch = reset / 1000.0 if reset >= _EPOCH_MS_LIKE else reset
        reset = epoch - wall_now if wall_now is not None else None
    if reset is not None and not 0 <= reset <= MAX_RESET:
        reset = None  # negative: junk, not a moment (a 429 then waits the default)
    whole_limit = int(limit) if limit is not None and 1 <= limit <= MAX_LIMIT else None
    left = max(0, int(remaining)) if remaining is not None else None
    if left is not None and (left > MAX_LIMIT or (whole_limit is not None and left > whole_limit)):
        left = None  # more left than the limit: one of the two is wrong, trust neither number
    stated = _WINDOW.search(field("limit") or "") if whole_limit is not None else None
    window = float(stated.group(1)) if stated else None
    return ServerBudget(
        limit=whole_limit,
        remaining=left,
        reset_after=reset,
        window=window if window and window <= MAX_RESET else None,
    )


def parse_retry_after(value: str | None, *, wall_now: float) -> float | None:
    """Retry-After as delta-seconds (fractions tolerated) or an HTTP date -> seconds >= 0;
    None for anything else (a repeated header, "100, 100", counts by its first value)."""
    if value is None or not value.strip():
        return None
    text = value.strip().split(",")[0].strip() if _REPEATED.fullmatch(value) else value.strip()
    if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) and seconds >= 0 else None  # negative: junk
    try:
        moment = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    return max(0.0, moment - wall_now) if math.isfinite(moment) else None

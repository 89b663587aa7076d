"""What a response says about the rate limit: x-ratelimit-* in every spelling, Retry-After in
both forms, junk dropped (``bulkops/ratelimit_headers.py``)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from bulkops.telnyx.headers import ServerBudget, parse_budget, parse_retry_after
from tests.limiter_kit import EPOCH, http_date


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-limit": "100", "x-ratelimit-remaining": "42", "x-ratelimit-reset": "1"}, (100, 42, 1.0)),
        ({"X-RateLimit-Limit": "100", "X-RATELIMIT-REMAINING": "0", "X-Ratelimit-Reset": "0.25"}, (100, 0, 0.25)),
        ({"RateLimit-Limit": "100, 100;w=1", "RateLimit-Remaining": "9", "RateLimit-Reset": "3"}, (100, 9, 3.0)),
        ({"X-Rate-Limit-Limit": "60", "X-Rate-Limit-Remaining": "-2", "X-Rate-Limit-Reset": "2s"}, (60, 0, 2.0)),
        ({"RateLimit": "limit=10, remaining=4, reset=6"}, (10, 4, 6.0)),
        ({"x-ratelimit-limit": "lots", "x-ratelimit-remaining": "", "x-ratelimit-reset": "soon"}, (None, None, None)),
        ({"x-ratelimit-limit": "-1", "x-ratelimit-reset": "nan"}, (None, None, None)),
        ({}, (None, None, None)),
    ],
)
def test_parse_budget_reads_every_spelling_and_drops_junk(
    headers: dict[str, str], expected: tuple[int | None, int | None, float | None]
) -> None:
    budget = parse_budget(headers)
    assert (budget.limit, budget.remaining, budget.reset_after) == expected


def test_parse_budget_reads_a_stated_window_a_multidict_and_an_epoch_reset() -> None:
    assert parse_budget({"RateLimit-Limit": "100, 100;w=60"}).window == 60.0
    multi = CIMultiDict({"X-RATELIMIT-LIMIT": "7", "x-ratelimit-remaining": "3"})
    assert parse_budget(multi) == ServerBudget(limit=7, remaining=3, reset_after=None)
    epoch = {"x-ratelimit-reset": str(int(EPOCH) + 30)}
    assert parse_budget(epoch, wall_now=EPOCH).reset_after == 30.0
    assert parse_budget(epoch).reset_after is None  # cannot convert without the wall clock


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("-4", None),  # negative: junk, so a 429 waits the default
        (http_date(EPOCH + 90), 90.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: go now
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after_accepts_seconds_and_http_dates(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, wall_now=EPOCH) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-limit": "0", "x-ratelimit-remaining": "3"}, (None, 3, None)),
        ({"x-ratelimit-limit": "100", "x-ratelimit-remaining": "500"}, (100, None, None)),
        ({"x-ratelimit-limit": "1000000000000", "x-ratelimit-remaining": "9"}, (None, 9, None)),
        ({"x-ratelimit-limit": "99.5", "x-ratelimit-remaining": "0.5", "x-ratelimit-reset": "0.25"}, (99, 0, 0.25)),
        ({"x-ratelimit-limit": "100, 100", "x-ratelimit-remaining": "7, 7", "x-ratelimit-reset": "1, 1"}, (100, 7, 1.0)),
        ({"x-ratelimit-reset": "86401"}, (None, None, None)),
        ({"x-ratelimit-reset": "1e999"}, (None, None, None)),
    ],
    ids=["zero-limit", "remaining-over-limit", "absurd-limit", "fractions", "repeated",
         "reset-over-a-day", "infinite"],
)
def test_parse_budget_drops_values_that_cannot_be_true(
    headers: dict[str, str], expected: tuple[int | None, int | None, float | None]
) -> None:
    budget = parse_budget(headers)
    assert (budget.limit, budget.remaining, budget.reset_after) == expected


def test_a_reset_in_epoch_milliseconds_becomes_a_delay() -> None:
    ms = {"x-ratelimit-reset": str(int((EPOCH + 12) * 1000))}
    assert parse_budget(ms, wall_now=EPOCH).reset_after == pytest.approx(12.0)


def test_a_repeated_or_absurd_retry_after_is_read_safely() -> None:
    assert parse_retry_after("5, 5", wall_now=EPOCH) == 5.0
    assert parse_retry_after("9" * 400, wall_now=EPOCH) is None  # not a finite number
    assert parse_retry_after("Fri, 31 Dec 99999 23:59:59 GMT", wall_now=EPOCH) is None

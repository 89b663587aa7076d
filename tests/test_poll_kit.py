"""The tests' poll helper: it returns as soon as the thing happened and fails, naming it, when
it never does (the deadline is what ends the wait, not a count of tries)."""

from __future__ import annotations

import pytest

from tests.poll_kit import poll, wait_until


async def test_wait_until_returns_once_the_condition_holds() -> None:
    checks: list[int] = []

    def third_check() -> bool:
        checks.append(1)
        return len(checks) >= 3

    await wait_until(third_check, within=30, what="the third check", every=0)

    assert len(checks) == 3  # checked until true, and not once more


async def test_wait_until_fails_naming_what_never_happened_and_why() -> None:
    with pytest.raises(AssertionError, match=r"waited 0\.05 s for the door to open: it did not happen\n"
                                             r"the door is shut"):
        await wait_until(lambda: False, within=0.05, what="the door to open",
                         explain=lambda: "the door is shut")


async def test_poll_returns_the_first_value_that_satisfies_until() -> None:
    values = iter(range(10))

    async def probe() -> int:
        return next(values)

    assert await poll(probe, until=lambda v: v >= 4, within=30, what="4", every=0) == 4


async def test_poll_fails_with_the_last_value_it_saw() -> None:
    async def probe() -> dict[str, list[str]]:
        return {"pending": ["+13125550101"]}

    with pytest.raises(AssertionError, match=r"for the order to settle: it did not happen\n1 pending"):
        await poll(probe, until=lambda order: not order["pending"], within=0.05, what="the order to settle",
                   explain=lambda order: f"{len(order['pending'])} pending")

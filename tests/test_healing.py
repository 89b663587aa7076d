"""The healing rule (bulkops/healing.py): re-order what orders did not move while a round of
orders costs less than PATCHing it at the learned rate. Pure logic: no server."""

from __future__ import annotations

from bulkops.healing import Figures, History, decide

QUIET = History(orders=10, timed_out=0, numbers=10_000, moved=9_900)  # 1 % listed failed
STUCKY = History(orders=10, timed_out=3, numbers=10_000, moved=7_000)  # 30 % of orders stuck


def figures(history: History, *, rate: float = 10.0, speed: float = 500.0,
            timeout: float = 15.0) -> Figures:
    return Figures(rate=rate, speed=speed, timeout=timeout, history=history)


def test_a_hundred_numbers_failed_at_ten_per_second_are_reordered() -> None:
    decision = decide([100], 250, figures(QUIET))
    assert decision.reorder and decision.orders == 1
    assert decision.patch_seconds == 10.0  # n / R
    assert decision.round_seconds < 2.0  # a poll's wait, a POST, a poll and a read-back


def test_a_few_numbers_are_patched_when_a_round_costs_more_than_their_patches() -> None:
    assert not decide([5], 250, figures(QUIET)).reorder  # 0.5 s of PATCH against a round
    assert not decide([100], 250, figures(QUIET, rate=1000.0)).reorder  # PATCH is nearly free


def test_stuck_orders_make_a_round_cost_the_timeout() -> None:
    big = decide([3000], 250, figures(STUCKY))  # 12 orders: one of them is surely stuck
    assert big.reorder and big.round_seconds > 15.0
    small = decide([80], 250, figures(STUCKY))  # 8 s of PATCH: not worth a likely 15 s wait
    assert not small.reorder


def test_orders_that_never_moved_anything_are_never_reordered() -> None:
    nothing = History(orders=4, timed_out=4, numbers=4000, moved=0)
    assert not decide([4000], 250, figures(nothing)).reorder


def test_leftovers_spread_over_many_target_profiles_cost_an_order_each() -> None:
    one = decide([20], 250, figures(QUIET))  # 1 order: 3 requests and a wait, against 2 s
    spread = decide([4, 4, 4, 4, 4], 250, figures(QUIET))  # 5 orders: 15 requests, against 2 s
    assert one.reorder and one.orders == 1
    assert not spread.reorder and spread.orders == 5 and spread.numbers == 20


def test_no_leftovers_means_no_reorder() -> None:
    assert not decide([], 250, figures(QUIET)).reorder

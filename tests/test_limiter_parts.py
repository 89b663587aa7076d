"""Each part of the rate limiter on its own (``bulkops/telnyx/limiter/``): the moments it is
given are virtual, so every check is an exact count or instant, never a wall-clock tolerance.
Queries (``wait``, ``room_at``, ``reserve``, ``is_news``) are asked twice to prove they change
nothing."""

from __future__ import annotations

import math

import pytest

from bulkops.telnyx.headers import ServerBudget
from bulkops.telnyx.limiter.aimd import BACKOFF, MIN_RATE, PACE_STEP, Aimd
from bulkops.telnyx.limiter.guard import MAX_SKEW, SKEW, SKEW_MEMORY, BudgetGuard, RoundTrips, Skew
from bulkops.telnyx.limiter.hold import Hold, asked_wait
from bulkops.telnyx.limiter.learned import Learned
from bulkops.telnyx.limiter.pacer import Pacer
from bulkops.telnyx.limiter.views import CountingOrder, Ledger, Report
from bulkops.telnyx.ratelimit import PACE
from tests.limiter_kit import EPOCH, max_in_any_window

# --- pacer ------------------------------------------------------------------------------------


def test_the_pacer_spaces_starts_one_interval_apart_and_its_wait_is_a_query() -> None:
    pacer, now, starts = Pacer(), 0.0, []
    for _ in range(50):
        now += pacer.wait(now)
        assert pacer.wait(now) == pacer.wait(now) == 0.0
        pacer.start(now, 0.1, credit=False)
        starts.append(now)
    assert max_in_any_window(starts, 1.0) == 10
    assert min(b - a for a, b in zip(starts, starts[1:])) == pytest.approx(0.1)


def test_a_late_start_keeps_one_interval_of_credit_but_an_idle_pool_does_not_burst() -> None:
    pacer = Pacer()
    pacer.start(0.0, 0.1, credit=False)
    pacer.start(0.15, 0.1, credit=True)  # 50 ms late: keeps its place on the schedule
    assert pacer.tat == pytest.approx(0.2)
    pacer.start(5.0, 0.1, credit=True)  # idle for seconds: the next start waits half an interval
    assert pacer.wait(5.0) == pytest.approx(0.05)


def test_without_credit_a_late_start_pushes_the_schedule_back() -> None:
    pacer = Pacer()
    pacer.start(0.0, 0.1, credit=False)
    pacer.start(0.15, 0.1, credit=False)
    assert pacer.tat == pytest.approx(0.25)


# --- hold -------------------------------------------------------------------------------------


def test_a_hold_is_extended_by_a_later_429_and_never_shortened() -> None:
    hold = Hold(default_wait=1.0, max_wait=900.0)
    assert hold.extend(10.0, 5.0) == 5.0
    assert hold.extend(11.0, 1.0) == 4.0  # earlier moment: the hold stands
    assert hold.extend(12.0, 8.0) == 8.0
    assert hold.wait(13.0) == hold.wait(13.0) == 7.0
    assert (hold.count, hold.seconds, hold.asked_max) == (1, 10.0, 8.0)
    assert hold.extend(25.0, 2.0) == 2.0 and hold.count == 2


def test_a_hold_is_capped_at_the_operators_longest_wait() -> None:
    hold = Hold(default_wait=1.0, max_wait=30.0)
    assert hold.extend(0.0, 5000.0) == 30.0 and hold.asked_max == 30.0


@pytest.mark.parametrize(
    ("headers", "reset", "expected"),
    [({"Retry-After": "7"}, None, 7.0), ({}, 3.0, 3.0), ({}, 0.0, 1.0), ({}, 90.0, 1.0),
     ({"retry-after": "-5"}, None, 1.0), ({}, None, 1.0)],
    ids=["retry-after", "reset", "reset-zero", "reset-past-window", "negative", "nothing"])
def test_a_429_asks_for_retry_after_else_a_reset_within_the_window_else_the_default(
        headers: dict[str, str], reset: float | None, expected: float) -> None:
    budget = ServerBudget(limit=100, remaining=0, reset_after=reset)
    assert asked_wait(headers, budget, 60.0, wall_now=EPOCH, default=1.0) == expected


# --- AIMD -------------------------------------------------------------------------------------


def test_a_cut_is_sized_to_a_share_of_what_got_through_and_clean_windows_raise_it() -> None:
    aimd = Aimd()
    for n in range(1, 61):  # 60 answered in the window before the refused start at 1.0
        aimd.succeeded(n / 60, n / 60, 1.0, None)
    assert aimd.is_news(0) and aimd.is_news(0)
    aimd.cut(1.0, 1.0, next_seq=61)
    assert not aimd.is_news(60) and aimd.is_news(61)
    aimd.size(None, 1.0, None, PACE)
    assert aimd.cap == pytest.approx(BACKOFF * 60)
    aimd.succeeded(2.5, 2.5, 1.0, None)  # a clean window later: well under, so a fast climb
    assert aimd.cap is not None and aimd.cap > BACKOFF * 60


def test_a_429_while_the_server_gave_what_it_promised_costs_one_pace_step() -> None:
    aimd = Aimd()
    for n in range(100):
        aimd.succeeded(n / 100, n / 100, 1.0, 100)
    aimd.cut(1.0, 1.0, next_seq=100)
    aimd.size(PACE * 100, 1.0, 100, PACE)
    assert aimd.cap == pytest.approx(PACE * 100 - PACE_STEP * 100)


def test_a_cut_with_nothing_let_through_leaves_the_rate_alone_and_never_goes_below_min() -> None:
    aimd = Aimd()
    aimd.cut(1.0, 1.0, next_seq=1)
    aimd.size(None, 1.0, None, PACE)
    assert aimd.cap is None and not aimd.pending
    aimd.succeeded(0.5, 0.9, 1.0, None)
    aimd.cut(1.0, 1.0, next_seq=2)
    aimd.size(None, 1.0, None, PACE)
    assert aimd.cap == MIN_RATE


# --- budget guard -----------------------------------------------------------------------------


def _guard(limit: int = 10) -> tuple[BudgetGuard, Learned]:
    learned = Learned()
    learned.hear(ServerBudget(limit=limit, remaining=limit, reset_after=1.0))
    return BudgetGuard(learned), learned


def test_the_guard_opens_as_our_own_starts_age_out_of_the_window() -> None:
    guard, _ = _guard(limit=10)
    for n in range(10):
        guard.started(n * 0.01)
    answer = guard.answered(0.1)
    guard.learn(9, 0.09, answer, 0, 1.0, now=0.1, started=10, probe=False, held_up=False)
    moment, ours = guard.room_at(0.1, started=10)
    assert (moment, ours) == guard.room_at(0.1, started=10)  # a query
    assert ours and moment == pytest.approx(1.0 + SKEW)  # the first start leaves, SKEW late
    assert guard.room_at(1.0 + SKEW + 1e-6, started=10)[0] == -math.inf


def test_the_guard_arms_a_probe_once_it_was_shut_longer_than_a_429_asked() -> None:
    guard, _ = _guard(limit=10)
    for n in range(10):
        guard.started(n * 0.01)
    answer = guard.answered(0.1)
    guard.learn(9, 0.09, answer, 0, 1.0, now=0.1, started=10, probe=False, held_up=False)
    assert guard.admit(0.1, started=10, asked_max=0.5) == pytest.approx(0.5)  # shut since 0.1
    assert not guard.probe.due
    assert guard.admit(0.6, started=10, asked_max=0.5) == 0.0 and guard.probe.due
    assert guard.started(0.6) and guard.probe.out and not guard.probe.due
    assert guard.admit(0.61, started=11, asked_max=0.5) > 0  # the probe's answer wakes the pool
    guard.succeeded(10, 0.6, 0.65, probe=True)  # answered 200 against the headers' word
    guard.settled(True)
    assert guard.probe.trust == 0.5 and not guard.probe.out


def test_the_skew_doubles_on_a_429_not_seen_coming_and_halves_after_quiet_windows() -> None:
    skew = Skew()
    skew.double(0.0)
    skew.double(0.0)
    skew.double(0.0)
    assert skew.value == pytest.approx(min(8 * SKEW, MAX_SKEW))
    skew.relax(SKEW_MEMORY - 1.0, 1.0)
    assert skew.value == pytest.approx(MAX_SKEW)
    skew.relax(SKEW_MEMORY + 0.0, 1.0)
    assert skew.value == pytest.approx(MAX_SKEW / 2)


def test_a_round_trip_past_the_fence_ages_its_request_out_later() -> None:
    trips = RoundTrips()
    for n in range(16):
        assert not trips.note(n, n, n + 0.08 + 0.001 * (n % 4), 1.0, SKEW)
    assert trips.note(16, 20.0, 20.0 + 0.15, 1.0, SKEW)  # 70 ms beyond the fastest
    [(seq, gone)] = trips.held_up
    assert seq == 16 and gone == pytest.approx(20.0 + 1.0 + 0.07)
    trips.expire(gone)
    assert not trips.held_up


def test_a_drop_in_remaining_plus_seq_is_kept_as_a_reserve_beyond_the_skew() -> None:
    order, starts = CountingOrder(), [n * 0.01 for n in range(40)]
    order.note(Report(10, 0.10, 50), starts, 100, 1.0, 0.0)
    order.note(Report(20, 0.20, 36), starts, 100, 1.0, 0.0)  # 4 counted before their turn
    assert order.reserve(100, 1.0, 0.0) == order.reserve(100, 1.0, 0.0) == 4
    assert order.reserve(100, 1.0, 0.02) == 2  # the skew allows for 2 of them
    order.forget()
    assert order.reserve(100, 1.0, 0.0) == 0


def test_a_limit_needs_a_majority_and_the_window_two_steady_resets() -> None:
    learned = Learned()
    for limit in (100, 100, 1, 100):
        assert learned.hear(ServerBudget(limit=limit, remaining=0, reset_after=1.0)) == (limit == 100)
    assert learned.limit == 100 and learned.window == 1.0
    learned.hear(ServerBudget(limit=100, remaining=0, reset_after=2.0))
    assert learned.window == 1.0
    learned.hear(ServerBudget(limit=100, remaining=0, reset_after=2.0))
    assert learned.window == 2.0


def test_a_ledger_keeps_numbering_its_moments_after_a_trim() -> None:
    ledger = Ledger()
    assert [ledger.add(t) for t in (0.0, 0.5, 1.0, 1.5)] == [0, 1, 2, 3]
    ledger.trim(0.7)
    assert ledger.base == 2 and ledger.times == [1.0, 1.5]
    assert ledger.add(2.0) == 4


def test_a_server_counting_in_answer_order_is_followed_by_the_answer_view() -> None:
    """Requests counted just before their answer, in an order far from the start order: the
    start view's strays outgrow its reserve, the answer view sees none, and the guard counts
    every request not yet answered as still to come."""
    guard, _ = _guard(limit=100)
    for n in range(30):
        guard.started(n * 0.01)
    # Answered (and counted) far out of start order, 10 ms apart: the 21st start is counted
    # second, before the 19 started ahead of it.
    for k, seq in enumerate([0, 20, *range(1, 20), *range(21, 30)]):
        now = 0.5 + 0.01 * k
        answer = guard.answered(now)
        guard.learn(seq, seq * 0.01, answer, 99 - k, 1.0, now=now, started=30, probe=False,
                    held_up=False)
    assert guard.by_answer.order.drop == 0 and guard.by_start.order.drop > 5
    assert guard.by_answer in guard.views()
    assert guard.room_at(0.8, started=30) == (-math.inf, True)  # 70 left, none in flight
    for n in range(30, 100):
        guard.started(0.8 + n * 0.001)
    moment, _ = guard.by_answer.room_at(0.9, 100, 100, 1.0, 0.0, [])
    # 70 in flight, 30 counted: room again when the first answered leaves the window
    assert moment == pytest.approx(0.5 + 1.0, abs=1e-6)
    assert guard.room_at(0.9, started=100)[0] <= moment  # the sooner of the views believed


def test_with_a_heavy_tail_requests_in_flight_are_taken_to_reach_the_counter_spread_out() -> None:
    """20 requests in flight and a window of 100 holding 90 that leave it over the next second:
    counted all at once the 21st would not fit, but round trips as spread as these (up to a
    second) bring them to the counter while the first ones leave."""
    guard, _ = _guard(limit=100)
    trips = guard.trips
    for n in range(64):  # a heavy tail: most answers fast, some very slow
        trips.note(n, 0.0, 0.001 + 0.016 * n, 1.0, SKEW)
    assert trips.heavy
    for n in range(110):
        guard.started(n * 0.01)
    for n in range(90):
        answer = guard.answered(0.1 + n * 0.01)
        guard.learn(n, n * 0.01, answer, 99 - n, 1.0, now=0.1 + n * 0.01, started=110,
                    probe=False, held_up=False)
    view = guard.by_answer
    assert not view.spread_room(1.0, 110, 100, 1.0, RoundTrips().quantile)  # none known
    assert view.spread_room(1.2, 110, 100, 1.0, trips.quantile) == \
        view.spread_room(1.2, 110, 100, 1.0, trips.quantile)
    assert view.spread_room(1.2, 110, 100, 1.0, trips.quantile)

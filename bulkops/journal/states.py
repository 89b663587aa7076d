"""The journal's state machines: item states, job states, order states and their transitions."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType


class ItemState(str, Enum):
    """Journal state of one number in one job; see TRANSITIONS below."""

    PENDING = "pending"  # not yet sent (or sent by a process that died before recording it)
    IN_FLIGHT = "in_flight"  # a PATCH may be on the wire
    ORDERED = "ordered"  # held by a bulk order (items.order_ref) that is not settled yet
    DONE = "done"  # the API confirmed the desired profile
    FAILED = "failed"  # permanent error, retries exhausted, or not applied
    SKIPPED = "skipped"  # already in place (snapshot), or left alone by rollback


class JobState(str, Enum):
    """Life of one job; the runner moves it, the journal only stores it."""

    LOADING = "loading"  # the CSV is being streamed in; restarted from scratch if it dies here
    READY = "ready"  # items exist and were validated; nothing sent yet
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"  # a fatal API error (auth...) stopped it; resumable
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM; resumable
    CANCELLED = "cancelled"  # the operator declined it before anything was sent; no other
    # command picks it up (`run` of job 1 asks again; a declined rollback is never resumed)

    @property
    def ran(self) -> bool:
        """Writing started: the job is what "the latest job that ran" means."""
        return self in (JobState.RUNNING, JobState.FINISHED, JobState.ABORTED,
                        JobState.INTERRUPTED)


_P, _I, _D, _F, _S, _O = (ItemState.PENDING, ItemState.IN_FLIGHT, ItemState.DONE, ItemState.FAILED,
                          ItemState.SKIPPED, ItemState.ORDERED)
TRANSITIONS: Mapping[ItemState, frozenset[ItemState]] = MappingProxyType({
    _P: frozenset({_I, _S, _F, _D, _O}),  # DONE/FAILED directly: outcome known without a request
    _I: frozenset({_D, _F, _P}),  # PENDING: interrupted, so it may be re-sent (PATCH is idempotent)
    _O: frozenset({_D, _P}),  # read back once its order is over: applied, or to be sent again
    _F: frozenset({_P}),  # retry-failed
    _D: frozenset(), _S: frozenset(),
})


class OrderState(str, Enum):
    """Life of one bulk order (journal table ``orders``); see ORDER_TRANSITIONS.

    An order is journaled SUBMITTING, with its numbers, before it is posted, so a crash at any
    moment leaves a record of every order that may exist on the server."""

    SUBMITTING = "submitting"  # journaled; the POST may or may not have reached the server
    OPEN = "open"  # the server answered its order_id; polled until nothing is pending
    SETTLED = "settled"  # nothing pending any more; its numbers were read back
    TIMED_OUT = "timed_out"  # still pending after --order-timeout; its numbers were read back
    LOST = "lost"  # no order_id known (crash before it was journaled, or the server forgot it)
    REFUSED = "refused"  # the POST was refused (too big, endpoint unavailable...): nothing sent


_OS, _OO, _OT, _OX, _OL, _OR = (OrderState.SUBMITTING, OrderState.OPEN, OrderState.SETTLED,
                                OrderState.TIMED_OUT, OrderState.LOST, OrderState.REFUSED)
ORDER_TRANSITIONS: Mapping[OrderState, frozenset[OrderState]] = MappingProxyType({
    _OS: frozenset({_OO, _OL, _OR}),
    _OO: frozenset({_OT, _OX, _OL}),
    _OT: frozenset(), _OX: frozenset(), _OL: frozenset(), _OR: frozenset(),
})



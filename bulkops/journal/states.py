"""The journal's state machines: item states, job states and the allowed item transitions."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType


class ItemState(str, Enum):
    """Journal state of one number in one job; see TRANSITIONS below."""

    PENDING = "pending"  # not yet sent (or sent by a process that died before recording it)
    IN_FLIGHT = "in_flight"  # a PATCH may be on the wire
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


_P, _I, _D, _F, _S = (ItemState.PENDING, ItemState.IN_FLIGHT, ItemState.DONE, ItemState.FAILED,
                      ItemState.SKIPPED)
TRANSITIONS: Mapping[ItemState, frozenset[ItemState]] = MappingProxyType({
    _P: frozenset({_I, _S, _F, _D}),  # DONE/FAILED directly: outcome known without a request
    _I: frozenset({_D, _F, _P}),  # PENDING: interrupted, so it may be re-sent (PATCH is idempotent)
    _F: frozenset({_P}),  # retry-failed
    _D: frozenset(), _S: frozenset(),
})



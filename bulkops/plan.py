"""The plan: what a run would do to each item (number or short code), as a summary and as a
plan CSV."""

from __future__ import annotations

import csv
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from enum import Enum
from typing import IO

from bulkops.journal.records import Item
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops.models import UNASSIGNED, Extra, Kind, Resource
from bulkops.report import REPORT_COLUMNS, Line, by_line, inert, input_column, side_lines


SHORT_CODES_ROW = "short codes to change"  # a plan row, of those that will change, when any


class Action(str, Enum):
    CHANGE = "will change"
    UNASSIGN = "will unassign"  # taken off its profile: counted and said on its own
    IN_PLACE = "already in place"
    NOT_ON_ACCOUNT = "not on account"
    DONE = "done"
    FAILED = "failed"
    LEFT_ALONE = "left alone"


SHOWN_TARGETS = 5  # target profiles named in the question; the plan table lists them all


@dataclass
class PlanSummary:
    change: int = 0  # moved onto a profile (``targets`` says which)
    unassign: int = 0  # taken off their profile
    in_place: int = 0
    not_on_account: int = 0
    done: int = 0
    failed: int = 0
    left_alone: int = 0
    short_codes: int = 0  # of the writes, those to short codes (the rest are phone numbers)
    kind: Kind | None = field(default=None, compare=False)  # what the job does, for the question before it runs
    targets: dict[str, int] = field(default_factory=dict, compare=False)  # profile id -> moved onto it
    names: dict[str, str] = field(default_factory=dict, compare=False)  # profile id -> name, when known

    def profile(self, profile_id: str) -> str:
        """A target as the operator knows it: its name (and id), else its id."""
        name = self.names.get(profile_id)
        return f'"{name}" ({profile_id})' if name else profile_id

    def target_rows(self) -> list[tuple[str, int]]:
        """Each target profile with the numbers moved onto it, most first."""
        ordered = sorted(self.targets.items(), key=lambda t: (-t[1], t[0]))
        return [(self.profile(profile_id), count) for profile_id, count in ordered]

    def question(self) -> str:
        """What the operator is asked before the writes, naming what will happen: each target
        profile, and the numbers taken off their profile on their own."""
        writes = self.what()
        if self.kind is Kind.ROLLBACK:
            return f"Roll back {writes} to their prior profiles? [y/N] "
        parts = [f"move {count:,} to {name}" for name, count in self.target_rows()[:SHOWN_TARGETS]]
        if len(self.targets) > SHOWN_TARGETS:
            rest = sum(count for _, count in self.target_rows()[SHOWN_TARGETS:])
            parts.append(f"move {rest:,} to {len(self.targets) - SHOWN_TARGETS} other profiles "
                         "(listed in the plan above)")
        if self.unassign:
            parts.append(f"unassign {_numbers(self.unassign)} (take them off their messaging "
                         "profile)")
        if self.kind is Kind.UNASSIGN and not self.change:
            return f"Unassign {writes} from their messaging profiles? [y/N] "
        return f"Write {writes}: {'; '.join(parts)}? [y/N] "

    def what(self) -> str:
        """The writes in words: "1,000 numbers", "988 numbers and 12 short codes"."""
        numbers, codes = self.writes - self.short_codes, self.short_codes
        text = f"{numbers:,} number{'s' if numbers != 1 else ''}"
        if codes:
            text = (text + " and " if numbers else "") + f"{codes:,} short code{'s' * (codes != 1)}"
        return text

    def add(self, action: Action, desired: str | None = None,
            resource: Resource = Resource.PHONE_NUMBER) -> None:
        name = action.name.lower()  # each Action has the field of its name
        setattr(self, name, getattr(self, name) + 1)
        if action is Action.CHANGE and desired:
            self.targets[desired] = self.targets.get(desired, 0) + 1
        if resource is Resource.SHORT_CODE and action in (Action.CHANGE, Action.UNASSIGN):
            self.short_codes += 1

    @property
    def writes(self) -> int:
        """Numbers the run will write (one the API does not know fails without a request)."""
        return self.change + self.unassign

    def rows(self) -> list[tuple[str, int]]:
        return [
            (Action.CHANGE.value, self.change),
            (Action.UNASSIGN.value, self.unassign),
            (Action.IN_PLACE.value, self.in_place),
            (Action.NOT_ON_ACCOUNT.value, self.not_on_account),
            (Action.LEFT_ALONE.value, self.left_alone),
            (Action.DONE.value, self.done),
            (Action.FAILED.value, self.failed),
        ] + ([(SHORT_CODES_ROW, self.short_codes)] if self.short_codes else [])


def _numbers(count: int) -> str:
    return f"{count:,} number{'s' if count != 1 else ''}"


def classify(item: Item) -> Action:
    if item.on_account is False and item.state in (ItemState.PENDING, ItemState.FAILED):
        return Action.NOT_ON_ACCOUNT  # failed by the snapshot, without a request
    if item.state is ItemState.PENDING:
        return Action.UNASSIGN if item.desired == UNASSIGNED else Action.CHANGE
    if item.state is ItemState.SKIPPED:
        return Action.IN_PLACE if (item.note or "").startswith("already") else Action.LEFT_ALONE
    if item.state is ItemState.DONE:
        return Action.DONE
    return Action.FAILED if item.state is ItemState.FAILED else Action.CHANGE


async def summarize(journal: Journal, job_id: int, kind: Kind | None = None) -> PlanSummary:
    summary = PlanSummary(kind=kind)
    async with aclosing(journal.iter_items(job_id, None, batch=5000)) as pages:
        async for page in pages:
            for item in page:
                summary.add(classify(item), item.desired, item.resource)
    return summary


# The report's scheme: bulkops' own columns, then the input's other columns as input_<header>.
# ``resource``: phone_number or short_code (then phone_number holds its digits).
PLAN_COLUMNS = ["line", "phone_number", "current_profile_id", "desired_profile_id", "action", "note",
                "resource"]


_AT = {name: i for i, name in enumerate(REPORT_COLUMNS)}


def _side_plan_line(line: Line) -> tuple[list[object], Extra]:
    """A rejected row or a collapsed duplicate as a plan line: nothing will be sent for it,
    and its note says why (every problem found, or the line it repeats)."""
    values, extra = line
    state = values[_AT["final_state"]]
    note = values[_AT["error_detail"]] if state == "rejected" else values[_AT["note"]]
    return [values[_AT["line"]], values[_AT["phone_number"]] or "", "",
            values[_AT["desired_profile_id"]] or "", state, note or "",
            values[_AT["resource"]] or ""], extra


async def write_plan_csv(journal: Journal, job_id: int, handle: IO[str],
                         kind: Kind | None = None) -> PlanSummary:
    """One line per input line, in input order, as the report has: the items with what the
    run would do, and the rejected rows and collapsed duplicates it will not send."""
    summary = PlanSummary(kind=kind)
    writer = csv.writer(handle)
    headers: list[str] | None = None

    async def items() -> AsyncGenerator[tuple[int, Item], None]:
        async with aclosing(journal.iter_items(job_id, None, batch=5000)) as pages:
            async for page in pages:
                for item in page:
                    yield item.line, item

    async with aclosing(by_line(items(), side_lines(journal, job_id))) as lines:
        async for _, entry in lines:
            if isinstance(entry, Item):
                action = classify(entry)
                summary.add(action, entry.desired, entry.resource)
                current = "" if entry.on_account is False else (entry.prior or "")
                cells: list[object] = [entry.line, entry.phone_number, current, entry.desired,
                                       action.value, entry.note or "", entry.resource.value]
                extra = entry.extra
            else:
                cells, extra = _side_plan_line(entry)
            if headers is None:  # every line of one CSV has the same input columns
                headers = list(dict.fromkeys(k for k, _ in extra))
                writer.writerow(PLAN_COLUMNS + [input_column(h) for h in headers])
            given = dict(reversed(extra)) if headers else {}
            writer.writerow([*cells, *(inert(given.get(h, "")) for h in headers)])
    if headers is None:
        writer.writerow(PLAN_COLUMNS)
    return summary

"""The plan: what a run would do to each number, as a summary and as a plan CSV."""

from __future__ import annotations

import csv
import os
from contextlib import aclosing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from bulkops.journal.records import Item
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops.report import open_private


class Action(str, Enum):
    CHANGE = "will change"
    IN_PLACE = "already in place"
    NOT_ON_ACCOUNT = "not on account"
    DONE = "done"
    FAILED = "failed"
    LEFT_ALONE = "left alone"


@dataclass
class PlanSummary:
    change: int = 0
    in_place: int = 0
    not_on_account: int = 0
    done: int = 0
    failed: int = 0
    left_alone: int = 0

    def add(self, action: Action) -> None:
        name = {
            Action.CHANGE: "change", Action.IN_PLACE: "in_place",
            Action.NOT_ON_ACCOUNT: "not_on_account", Action.DONE: "done",
            Action.FAILED: "failed", Action.LEFT_ALONE: "left_alone",
        }[action]
        setattr(self, name, getattr(self, name) + 1)

    @property
    def writes(self) -> int:
        """Requests the run will send (a number unknown to the snapshot is still tried once)."""
        return self.change + self.not_on_account

    def rows(self) -> list[tuple[str, int]]:
        return [
            (Action.CHANGE.value, self.change),
            (Action.IN_PLACE.value, self.in_place),
            (Action.NOT_ON_ACCOUNT.value, self.not_on_account),
            (Action.LEFT_ALONE.value, self.left_alone),
            (Action.DONE.value, self.done),
            (Action.FAILED.value, self.failed),
        ]


def classify(item: Item) -> Action:
    if item.state is ItemState.PENDING:
        return Action.NOT_ON_ACCOUNT if item.on_account is False else Action.CHANGE
    if item.state is ItemState.SKIPPED:
        return Action.IN_PLACE if (item.note or "").startswith("already") else Action.LEFT_ALONE
    if item.state is ItemState.DONE:
        return Action.DONE
    return Action.FAILED if item.state is ItemState.FAILED else Action.CHANGE


async def summarize(journal: Journal, job_id: int) -> PlanSummary:
    summary = PlanSummary()
    async with aclosing(journal.iter_items(job_id, None, batch=5000)) as pages:
        async for page in pages:
            for item in page:
                summary.add(classify(item))
    return summary


PLAN_COLUMNS = ["line", "phone_number", "current_profile_id", "desired_profile_id", "action", "note"]


async def write_plan_csv(journal: Journal, job_id: int, output: Path) -> PlanSummary:
    summary = PlanSummary()
    with os.fdopen(open_private(output, "plan", "--output / --plan-output"), "w", newline="",
                   encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PLAN_COLUMNS)
        async with aclosing(journal.iter_items(job_id, None, batch=5000)) as pages:
            async for page in pages:
                for item in page:
                    action = classify(item)
                    summary.add(action)
                    current = "" if item.on_account is False else (item.prior or "")
                    writer.writerow([item.line, item.phone_number, current, item.desired,
                                     action.value, item.note or ""])
    return summary

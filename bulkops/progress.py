"""Progress for people and for cron, and the ledger log.

On a terminal a live bar (done / failed / retries, rate, ETA); off a terminal
(cron, systemd) one plain line every few seconds. Notable events go to the
``bulkops`` logger as one line each with fixed wording, so a log reads like a
ledger and can be grepped.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

log = logging.getLogger("bulkops")


class _CurrentStderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is *now*, so rich's live display can redirect it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class _Redact(logging.Filter):
    """Defence in depth: the key is never logged, even if a message somehow carries it."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret and self.secret in record.getMessage():
            record.msg = record.getMessage().replace(self.secret, "***")
            record.args = ()
        return True


def setup_logging(verbose: bool = False, secret: str | None = None) -> None:
    handler = _CurrentStderrHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s bulkops: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z")
    )
    if secret:
        handler.addFilter(_Redact(secret))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def add_secret_filter(secret: str) -> None:
    for handler in log.handlers:
        handler.addFilter(_Redact(secret))


@dataclass
class Tracker:
    """Live counters of one phase of a job (the write phase, a snapshot...)."""

    label: str
    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    retries: Callable[[], int] = lambda: 0  # retries so far (the client counts them)
    started: float = field(default_factory=time.monotonic)
    orders_open: int | None = None  # bulk orders not settled yet; None: the job uses none

    @property
    def title(self) -> str:
        return self.label + ("" if self.orders_open is None else f" ({self.orders_open} orders open)")

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.finished / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        left = self.total - self.finished
        return left / rate if rate > 0 and left >= 0 else None

    def line(self) -> str:
        eta = self.eta()
        eta_text = f"{eta:.0f}s" if eta is not None else "?"
        return (
            f"progress {self.label}: {self.finished}/{self.total} done={self.done} "
            f"failed={self.failed} skipped={self.skipped} retries={self.retries()} "
            f"rate={self.rate():.1f}/s eta={eta_text}"
            + ("" if self.orders_open is None else f" orders_open={self.orders_open}")
        )


async def show_progress(tracker: Tracker, *, interactive: bool, plain_every: float = 5.0) -> None:
    """Render until cancelled: a rich bar on a terminal, else a plain line every few seconds."""
    if not interactive:
        while True:
            await anyio.sleep(plain_every)
            log.info("%s", tracker.line())
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("[green]done {task.fields[done]}[/] [red]failed {task.fields[failed]}[/] "
                   "[yellow]retries {task.fields[retries]}[/] {task.fields[rate]:.0f}/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False, redirect_stderr=True) as bar:
        task = bar.add_task(tracker.label, total=tracker.total, done=0, failed=0, retries=0, rate=0.0)
        try:
            while True:
                bar.update(
                    task,
                    description=tracker.title,
                    completed=tracker.finished,
                    done=tracker.done,
                    failed=tracker.failed,
                    retries=tracker.retries(),
                    rate=tracker.rate(),
                )
                await anyio.sleep(0.2)
        finally:
            bar.update(task, completed=tracker.finished, done=tracker.done,
                       failed=tracker.failed, retries=tracker.retries(), rate=tracker.rate())

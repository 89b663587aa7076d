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

from bulkops.redact import redact

log = logging.getLogger("bulkops")


class _CurrentStderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is *now*, so rich's live display can redirect it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class Redact(logging.Filter):
    """Defence in depth: the key is never logged, even if a message somehow carries it.

    Only where it can appear: in the values a ledger line interpolates (server text, paths,
    exception text), never in its fixed wording; and only as a whole token (``redact``), so a
    short key does not mangle the words around it."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secret or self.secret not in record.getMessage():
            return True
        if isinstance(record.args, tuple) and record.args:  # the values, not the wording
            record.args = tuple(redact(str(a), self.secret) if self.secret in str(a) else a
                                for a in record.args)
        else:  # a message built before logging (or mapping args): all of it may be values
            record.msg, record.args = redact(record.getMessage(), self.secret), ()
        return True


def setup_logging(verbose: bool = False) -> None:
    """The ledger on stderr; the key filter is added once the key is known (add_secret_filter)."""
    handler = _CurrentStderrHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s bulkops: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z")
    )
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def add_secret_filter(secret: str) -> None:
    for handler in log.handlers:
        handler.addFilter(Redact(secret))


@dataclass
class Tracker:
    """Live counters of one phase of a job (the write phase, a snapshot...).

    ``total`` counts every row of the job and ``already`` the rows a previous run finished,
    so a resumed bar starts where the last one stopped. The ETA is paced by the rows that
    took a request (done, failed): rows found already in place finish in no time and would
    make it far too short."""

    label: str
    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    retries: Callable[[], int] = lambda: 0  # retries so far (the client counts them)
    started: float = field(default_factory=time.monotonic)
    already: int = 0  # finished before this run (a resume)
    orders_open: int | None = None  # bulk orders not settled yet; None: the job uses none

    @property
    def title(self) -> str:
        return self.label + ("" if self.orders_open is None else f" ({self.orders_open} orders open)")

    @property
    def finished(self) -> int:
        """Rows this run finished."""
        return self.done + self.failed + self.skipped

    @property
    def position(self) -> int:
        """Rows of the job finished, this run or before."""
        return self.already + self.finished

    def rate(self) -> float:
        """Rows sent per second (done, failed): rows found in place took no request, and an
        all-skipped run would read as a million rows a second."""
        elapsed = time.monotonic() - self.started
        return (self.done + self.failed) / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        elapsed = time.monotonic() - self.started
        sent = self.done + self.failed
        left = self.total - self.position
        if left <= 0:
            return 0.0
        return left * elapsed / sent if sent > 0 and elapsed > 0 else None

    def eta_text(self) -> str:
        eta = self.eta()
        if eta is None:
            return "?"
        minutes, seconds = divmod(int(eta + 0.5), 60)
        return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else \
            f"{minutes}:{seconds:02d}"

    def line(self) -> str:
        return (
            f"progress {self.label}: {self.position}/{self.total} done={self.done} "
            f"failed={self.failed} skipped={self.skipped} retries={self.retries()} "
            f"rate={self.rate():.1f}/s time left={self.eta_text()}"
            + (f" (resumed at {self.already})" if self.already else "")
            + ("" if self.orders_open is None else f" orders_open={self.orders_open}")
        )


async def show_progress(tracker: Tracker, *, interactive: bool, plain_every: float = 5.0) -> None:
    """Render until cancelled: a rich bar on a terminal, else a plain line every few seconds."""
    if not interactive:
        try:
            while True:
                await anyio.sleep(plain_every)
                log.info("%s", tracker.line())
        finally:  # where the phase ended, for the log of a cron run
            log.info("%s", tracker.line())
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("[green]done {task.fields[done]}[/] [red]failed {task.fields[failed]}[/] "
                   "[yellow]retries {task.fields[retries]}[/] {task.fields[rate]:.0f}/s"),
        TextColumn("elapsed"), TimeElapsedColumn(),
        TextColumn("time left {task.fields[left]}"),
    )

    with Progress(*columns, transient=False, redirect_stderr=True) as bar:
        task = bar.add_task(tracker.label, total=tracker.total, completed=tracker.position,
                            done=0, failed=0, retries=0, rate=0.0, left="?")

        def show() -> None:
            bar.update(task, description=tracker.title, completed=tracker.position,
                       done=tracker.done, failed=tracker.failed,
                       retries=tracker.retries(), rate=tracker.rate(), left=tracker.eta_text())

        try:
            while True:
                show()
                await anyio.sleep(0.2)
        finally:
            show()

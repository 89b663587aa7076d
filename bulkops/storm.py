"""Stop a job when every write fails the same way: a failure storm.

When the account refuses every write alike (say 422 on numbers that cannot be enabled for
messaging), a 100,000-row job would otherwise spend 100,000 requests to learn it. The writer
tells ``FailureStorm`` each row's outcome as it records it; once the last ``limit`` writes
all failed permanently with the same Telnyx code, it raises ``FailureStormError`` and the
pool stops. Every row stays in the journal, so the job resumes once the cause is fixed.
Transient failures (retries exhausted) and successes end a streak; ``limit`` 0 turns it off.
"""

from __future__ import annotations

from bulkops.errors import ApiError, ExitCode
from bulkops.models import ApiErrorInfo

DEFAULT_MAX_CONSECUTIVE_FAILURES = 50
_LINES_SHOWN = 5


class FailureStormError(ApiError):
    """The last N writes all failed permanently with the same Telnyx code; nothing more was sent."""

    exit_code = ExitCode.FAILED_ROWS


def _cause(info: ApiErrorInfo) -> str:
    """What makes two failures "the same way": Telnyx's code, else status and title."""
    return f"code {info.code}" if info.code else f"HTTP {info.status} {info.title or ''}".rstrip()


class FailureStorm:
    """Counts the permanent failures in a row that share one cause."""

    __slots__ = ("limit", "_cause", "_count", "_lines")

    def __init__(self, limit: int = DEFAULT_MAX_CONSECUTIVE_FAILURES) -> None:
        if limit < 0:
            raise ValueError("the failure storm limit must be 0 (off) or more")
        self.limit = limit
        self._cause: str | None = None
        self._count = 0
        self._lines: list[int] = []  # the first lines of the current streak

    def succeeded(self) -> None:
        self._cause, self._count = None, 0

    def failed(self, line: int, info: ApiErrorInfo, *, permanent: bool) -> None:
        """Record a failed row; raise ``FailureStormError`` when the streak reaches the limit."""
        if not self.limit:
            return
        if not permanent:
            self.succeeded()  # a transient cause may clear: no storm of this kind
            return
        cause = _cause(info)
        if cause != self._cause:
            self._cause, self._count, self._lines = cause, 0, []
        self._count += 1
        if len(self._lines) < _LINES_SHOWN:
            self._lines.append(line)
        if self._count >= self.limit:
            lines = ", ".join(str(n) for n in sorted(self._lines))
            raise FailureStormError(
                f"stopped: the last {self._count} writes all failed with {cause} "
                f"({info.describe()}); the API refuses them all the same way, so no further row "
                f"was sent. First failing lines: {lines}. Fix the cause, then run "
                "`bulkops retry-failed --journal <journal>` to send the failed and the unsent rows "
                "(--max-consecutive-failures 0 turns this stop off).",
                status=info.status, code=info.code, title=info.title, detail=info.detail,
            )

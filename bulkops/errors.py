"""One exception tree for every expected failure.

The CLI turns any ``BulkOpsError`` into ``Error: <message>`` and exits with its
``exit_code``; messages say what went wrong *and* what to do next. A failed row
is a recorded outcome in the journal, never an exception: only failures that
make every further row pointless (bad input before sending, auth, a broken
journal) are raised.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (README, "Exit codes")."""

    OK = 0
    INTERNAL = 1  # a bug: an unexpected exception
    INPUT = 2  # bad CSV, job file or usage; nothing was sent
    FAILED_ROWS = 3  # the job finished but some rows failed
    ABORTED = 4  # the API refused the credentials (401/403) or answered a fatal error
    LOCKED = 5  # the journal is held by another live bulkops process
    JOURNAL = 6  # the journal is unreadable, from another CSV, or of another schema
    UNREACHABLE = 7  # the API could not be reached, or kept failing (5xx, timeouts) past the retries
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; resume with the same command


class BulkOpsError(Exception):
    """Base of every expected failure; ``str(err)`` is shown to the operator."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(BulkOpsError):
    """The CSV, job file or command line is wrong; nothing was sent."""

    exit_code = ExitCode.INPUT


class ConfigError(BulkOpsError):
    """Missing or unsafe configuration (API key, base URL, job file settings)."""

    exit_code = ExitCode.INPUT


class JournalError(BulkOpsError):
    """The journal cannot be used as asked (corrupt, other CSV, other schema)."""

    exit_code = ExitCode.JOURNAL


class JournalLockedError(JournalError):
    """Another live process holds the journal."""

    exit_code = ExitCode.LOCKED


class JournalAccessError(JournalError):
    """The journal's folder (or file) cannot be written: a usage problem of the --journal
    path, not a damaged journal; nothing was sent."""

    exit_code = ExitCode.INPUT


class ApiError(BulkOpsError):
    """A fatal answer from the API: every further row would fail the same way."""

    exit_code = ExitCode.ABORTED

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail


class ApiUnreachable(ApiError):
    """No usable answer: nothing listens at the base URL, or the API kept failing past the
    retries. Not the key's fault: the operator checks the URL, the network, the API's status."""

    exit_code = ExitCode.UNREACHABLE


class AuthError(ApiError):
    """401 or 403: the key is missing, wrong, or lacks permission."""


class Interrupted(BulkOpsError):
    """The operator (or the service manager) asked us to stop."""

    exit_code = ExitCode.INTERRUPTED

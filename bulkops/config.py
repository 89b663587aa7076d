"""Run settings, and where the API key and base URL come from.

The key is read from the environment (``TELNYX_API_KEY``) or a file
(``--api-key-file``), never from a flag that would land in shell history, and it
is kept out of every message: ``Secret`` hides it from ``repr``/``str``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from bulkops.errors import ConfigError
from bulkops.telnyx.retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.telnyx.com/v2"
API_KEY_ENV = "TELNYX_API_KEY"
BASE_URL_ENV = "TELNYX_API_BASE_URL"


class Secret:
    """A string that never shows itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def resolve_api_key(api_key_file: Path | None = None, env: dict[str, str] | None = None) -> Secret:
    """The key from ``--api-key-file`` if given, else from ``TELNYX_API_KEY``."""
    environ = os.environ if env is None else env
    if api_key_file is not None:
        try:
            text = api_key_file.read_text(encoding="utf-8").strip()
            mode = api_key_file.stat().st_mode
        except OSError as exc:
            raise ConfigError(
                f"cannot read the API key file {api_key_file}: {exc.strerror}; "
                "check the path and its permissions"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"the API key file {api_key_file} is not UTF-8 text; save it as plain text with "
                "the key on its first line"
            ) from None
        if not text:
            raise ConfigError(f"the API key file {api_key_file} is empty; put the key on its first line")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Not fatal: the operator may share a service account's file on purpose.
            import logging

            logging.getLogger("bulkops").warning(
                "api key file %s is readable by others; run: chmod 600 %s", api_key_file, api_key_file
            )
        return Secret(text.splitlines()[0].strip())
    value = environ.get(API_KEY_ENV, "").strip()
    if not value:
        raise ConfigError(
            f"no API key: set {API_KEY_ENV} (for the sandbox, the key `bulkops sandbox` prints) "
            "or pass --api-key-file PATH"
        )
    return Secret(value)


def resolve_base_url(flag: str | None, env: dict[str, str] | None = None) -> str:
    environ = os.environ if env is None else env
    url = (flag or environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).strip().rstrip("/")
    return url


class WriteMode(str, Enum):
    """How writes are sent: ``--mode``."""

    AUTO = "auto"  # bulk orders for jobs of at least --bulk-min writes, else PATCH
    BULK = "bulk"  # bulk orders; PATCH only for what orders could not do
    PATCH = "patch"  # one PATCH per number


@dataclass(frozen=True)
class RunSettings:
    """How a job talks to the API; everything here may be written to the journal (no secrets)."""

    base_url: str = DEFAULT_BASE_URL
    concurrency: int = 32
    rate: float | None = None
    timeout: float = 30.0
    max_server_wait: float = 900.0
    max_consecutive_failures: int = 50  # stop after this many same-code permanent failures; 0 = never
    insecure: bool = False
    verify: bool = False
    skip_invalid: bool = False
    default_region: str = "US"
    assume_yes: bool = False
    confirm_threshold: int = 100
    force: bool = False
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    mode: WriteMode = WriteMode.AUTO
    bulk_size: int = 1000  # numbers per order (halved when the server says it is too big)
    bulk_min: int = 100  # auto: fewer writes than this go by PATCH
    order_timeout: float = 900.0  # an order still pending after this is read back
    leave_short_codes: bool = False  # migrate: the source profiles' short codes stay behind

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.concurrency > 1000:
            raise ConfigError(f"--concurrency must be between 1 and 1000, not {self.concurrency}")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError(f"--rate must be a positive number of requests per second, not {self.rate}")
        if self.timeout <= 0:
            raise ConfigError(f"--timeout must be positive, not {self.timeout}")
        if self.max_server_wait < 0:
            raise ConfigError(f"--max-server-wait must be 0 or more seconds, not {self.max_server_wait}")
        if self.max_consecutive_failures < 0:
            raise ConfigError("--max-consecutive-failures must be 0 (never stop) or more, not "
                              f"{self.max_consecutive_failures}")
        if not isinstance(self.mode, WriteMode):
            if self.mode not in {m.value for m in WriteMode}:
                raise ConfigError(f"--mode must be auto, bulk or patch, not {self.mode!r}")
            object.__setattr__(self, "mode", WriteMode(self.mode))  # library callers pass "bulk"
        if self.bulk_size < 1 or self.bulk_min < 0:
            raise ConfigError(f"--bulk-size must be at least 1 (got {self.bulk_size}) and --bulk-min "
                              f"0 or more (got {self.bulk_min})")
        if not self.order_timeout > 0:
            raise ConfigError(f"--order-timeout must be a positive number of seconds, not {self.order_timeout}")

    def journal_view(self) -> dict[str, object]:
        """What a journal records about how the job was run."""
        return {
            "base_url": self.base_url,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "timeout": self.timeout,
            "max_server_wait": self.max_server_wait,
            "max_consecutive_failures": self.max_consecutive_failures,
            "max_attempts": self.policy.max_attempts,
            "max_retry_seconds": self.policy.max_elapsed,
            "default_region": self.default_region,
            "skip_invalid": self.skip_invalid,
            "verify": self.verify,
            "mode": self.mode.value,
            "bulk_size": self.bulk_size,
            "bulk_min": self.bulk_min,
            "order_timeout": self.order_timeout,
            "leave_short_codes": self.leave_short_codes,
        }

"""Run settings, and where the API key and base URL come from.

The key is read from the environment (``TELNYX_API_KEY``) or a file
(``--api-key-file``), never from a flag that would land in shell history, and it
is kept out of every message: ``Secret`` hides it from ``repr``/``str``.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping
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


# How a key gets wrapped on its way into a file or a variable: a shell or .env line
# (``TELNYX_API_KEY=KEY0...``, ``export ...``), quotes, an HTTP header, a comment first.
_ASSIGNMENT = re.compile(r"(?:export\s+|set\s+)?([A-Za-z_][A-Za-z0-9_]*)(?:\s*=\s*|\s*:\s+)(?!=*$)\S")
_HEADER = re.compile(r"(?:authorization\s*:\s*)?bearer\s", re.IGNORECASE)


def _key_shape(line: str) -> str | None:
    """Why ``line`` is not a key as it stands, in words that never quote it; None if it may be."""
    if line.startswith("#"):
        return "its first line is a comment; put the key alone on the first line"
    if _HEADER.match(line):
        return "it starts with \"Bearer\" (an HTTP header); keep only the key itself"
    if (match := _ASSIGNMENT.match(line)) and (line.startswith(("export", "set ")) or re.search(
            "key|token|telnyx|api|secret", match.group(1), re.IGNORECASE)):
        return (f"it is written as a variable assignment ({match.group(1)}=...), as in a shell or "
                ".env file, but the whole line is read as the key: keep only the key itself")
    if line[:1] in "\"'" or line[-1:] in "\"'":
        return "it is in quotes, which would be sent as part of the key: remove them"
    if any(c.isspace() for c in line) or not line.isprintable():
        return "it contains spaces or control characters; copy the key again, alone"
    return None


def resolve_api_key(api_key_file: Path | None = None, env: dict[str, str] | None = None) -> Secret:
    """The key from ``--api-key-file`` if given, else from ``TELNYX_API_KEY``; a key written
    in a wrapper (``KEY=value``, quotes, ``Bearer``...) is refused before it is sent and
    answered by a bare 401."""
    environ = os.environ if env is None else env
    if api_key_file is not None:
        try:
            # utf-8-sig: Notepad starts a UTF-8 file with a byte-order mark
            text = api_key_file.read_text(encoding="utf-8-sig").strip()
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
        first = text.splitlines()[0].strip()
        if problem := _key_shape(first):
            raise ConfigError(f"the API key file {api_key_file} does not hold the key alone: "
                              f"{problem} (the file is read as the key on its first line)")
        return Secret(first)
    value = environ.get(API_KEY_ENV, "").strip()
    if not value:
        raise ConfigError(
            f"no API key: set {API_KEY_ENV} (for the sandbox, the key `bulkops sandbox` prints) "
            "or pass --api-key-file PATH"
        )
    if problem := _key_shape(value):
        raise ConfigError(f"{API_KEY_ENV} does not hold the key alone: {problem}")
    return Secret(value)


def resolve_base_url(flag: str | None, env: dict[str, str] | None = None) -> str:
    environ = os.environ if env is None else env
    url = (flag or environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).strip().rstrip("/")
    return url


def base_url_hint(base_url: str) -> str | None:
    """What to change in a base URL whose path is not Telnyx's ``/v2`` (a 404 for every
    request is what such a URL gets), or None when it ends in /v2."""
    url = base_url.strip().rstrip("/")
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    path = slash + path
    if path.endswith("/v2"):
        return None
    if "/v2/" in path:
        fixed = f"{scheme}://{host}{path[:path.index('/v2/') + 3]}"
    elif re.search(r"/v\d+$", path):
        fixed = f"{scheme}://{host}{path.rsplit('/', 1)[0]}/v2"
    else:
        fixed = f"{url}/v2"
    return (f"The base URL {url} does not end in /v2, the path of Telnyx's API v2 (and of "
            f"`bulkops sandbox`): if that is what it points at, pass --base-url {fixed} (or set "
            f"{BASE_URL_ENV}).")


@dataclass(frozen=True)
class Limit:
    """One numeric setting: its ``[limits]`` key, its flag and the values it may take
    (finite, whole when ``whole``, from ``low`` to ``high``; above ``low`` only when
    ``low_open``). Every number from a flag, a job file or a library caller is checked here."""

    key: str
    flag: str
    whole: bool
    low: float
    high: float
    unit: str
    low_open: bool = False

    def parse(self, value: object) -> int | float:
        """``value`` (a flag's text, or a number from a job file) as this setting's number;
        ValueError saying what it must be."""
        number: int | float
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            try:
                number = int(text) if self.whole else float(text)
            except ValueError:
                raise ValueError(self._must(repr(value))) from None
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(self._must(repr(value)))
        elif self.whole and isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise ValueError(self._must(repr(value)))
            number = int(value)
        else:
            number = value
        if not math.isfinite(number) or number > self.high or number < self.low or (
                self.low_open and number == self.low):
            raise ValueError(self._must(repr(value) if isinstance(value, str) else f"{number:g}"))
        return number

    def _must(self, got: str) -> str:
        what = "a whole number" if self.whole else "a number"
        low = f"above {_num(self.low)}" if self.low_open else f"from {_num(self.low)}"
        return f"must be {what} {low} to {_num(self.high)} ({self.unit}), not {got}"


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


LIMITS: dict[str, Limit] = {limit.key: limit for limit in (
    Limit("concurrency", "--concurrency", True, 1, 1000, "requests in flight"),
    # Below one request per 10 s a job of any size would seem to hang: a typo, not a pace.
    Limit("rate", "--rate", False, 0.1, 10_000, "requests per second, at least one per 10 s"),
    Limit("timeout", "--timeout", False, 0.1, 3600, "seconds per request"),
    Limit("max_server_wait", "--max-server-wait", False, 0, 86_400, "seconds"),
    Limit("max_attempts", "--max-attempts", True, 1, 100, "attempts per row"),
    Limit("max_retry_seconds", "--max-retry-seconds", False, 0, 86_400, "seconds per row"),
    Limit("max_consecutive_failures", "--max-consecutive-failures", True, 0, 1_000_000_000,
          "writes; 0 = never stop"),
    Limit("bulk_size", "--bulk-size", True, 1, 100_000, "numbers per order"),
    Limit("bulk_min", "--bulk-min", True, 0, 1_000_000_000, "writes"),
    Limit("order_timeout", "--order-timeout", False, 0, 7 * 86_400, "seconds", low_open=True),
)}
"""Every numeric setting in one table (flags, ``[limits]`` of a job file, ``RunSettings``)."""


def check_limits(values: Mapping[str, object], name: Mapping[str, str] | None = None,
                 ) -> tuple[dict[str, int | float], list[str]]:
    """Each of ``values`` (None: not given) parsed by its ``Limit``, and every problem at
    once, each naming its source (``name[key]``, by default the flag)."""
    parsed: dict[str, int | float] = {}
    problems: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        limit = LIMITS[key]
        try:
            parsed[key] = limit.parse(value)
        except ValueError as err:
            problems.append(f"{(name or {}).get(key, limit.flag)} {err}")
    return parsed, problems


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
        _, problems = check_limits({key: getattr(self, key) for key in LIMITS if hasattr(self, key)}
                                   | {"max_attempts": self.policy.max_attempts,
                                      "max_retry_seconds": self.policy.max_elapsed})
        if problems:
            raise ConfigError("; ".join(problems))
        if not isinstance(self.mode, WriteMode):
            if self.mode not in {m.value for m in WriteMode}:
                raise ConfigError(f"--mode must be auto, bulk or patch, not {self.mode!r}")
            object.__setattr__(self, "mode", WriteMode(self.mode))  # library callers pass "bulk"

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

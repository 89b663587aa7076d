"""Job files: a job's settings in a small TOML file, so cron runs and reruns are repeatable.

Format (relative paths are relative to the job file's folder, not the working directory)::

    name = "assign-batch-7"          # optional; defaults to the file name without .toml
    kind = "assign"                  # required: assign | unassign | migrate | set
    csv = "../sample_csv/assign.csv" # required: the input CSV
    profile_id = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"  # assign only: profile (id or name)
                                     # for rows whose messaging_profile_id cell is empty or absent
    journal = "journals/assign-{date}.db"  # optional; {date} becomes today as YYYY-MM-DD
    default_region = "US"            # optional: region for numbers written without +country
    verify = true                    # optional: read every number back after the job
    skip_invalid = false             # optional: journal invalid rows as rejected and go on
    mode = "auto"                    # optional: auto | bulk | patch (how writes are sent)
    notify = "https://hooks.example.com/..."  # optional: POST the outcome here when a run ends
    leave_short_codes = false        # optional, migrate: leave the profiles' short codes behind

    [limits]                         # optional table; every key in it is optional
    rate = 50                        # requests per second, ceiling (0.1 to 10000)
    concurrency = 16                 # requests in flight (1 to 1000)
    max_attempts = 5                 # tries per row for transient failures (1 to 100)
    max_retry_seconds = 300          # time one row may spend retrying (0 to 86400)
    max_server_wait = 900            # longest single 429 wait we accept from the server (0 to 86400)
    max_consecutive_failures = 50    # stop when this many writes in a row fail alike (0 = never)
    bulk_size = 1000                 # numbers per bulk order (1 to 100000)
    bulk_min = 100                   # auto mode: bulk orders from this many writes on (>= 0)
    order_timeout = 900              # seconds an order may stay pending (> 0, up to 7 days)

Limits live only in ``[limits]``; written at the top level they are an error that says so.
Every number is checked against the one table of ranges the flags use (``config.LIMITS``).
Every problem of a file is reported at once; an API key in it is reported alone.
The API key never goes in a job file (they get copied and committed): a key named like
``api_key``, ``token`` or ``secret``, or a value that looks like a Telnyx key, is refused.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bulkops.config import LIMITS
from bulkops.errors import InputError
from bulkops.input.phone import normalize_profile_ref, normalize_region
from bulkops.models import Kind

TOP_KEYS = (
    "name", "kind", "csv", "profile_id", "journal", "default_region", "verify", "skip_invalid",
    "mode", "notify", "leave_short_codes",
)
LIMIT_KEYS = ("rate", "concurrency", "max_attempts", "max_retry_seconds", "max_server_wait",
              "max_consecutive_failures", "bulk_size", "bulk_min", "order_timeout")
MODES = ("auto", "bulk", "patch")
JOB_KINDS = (Kind.ASSIGN, Kind.UNASSIGN, Kind.MIGRATE, Kind.SET)

_SECRET_KEY = re.compile(r"api[_\-]?key|token|secret|passw(or)?d|bearer|credential", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"KEY0[0-9A-Za-z_\-]{20,}")  # the shape of a Telnyx v2 API key
_BRACES = re.compile(r"\{[^{}]*\}|[{}]")
_TABLE = re.compile(r"\s*\[+\s*([^\]]*?)\s*\]+")
_KEY = re.compile(r"""\s*["']?([A-Za-z0-9_\-]+)["']?\s*=""")


@dataclass(frozen=True)
class JobFile:
    """A loaded, checked job file; paths already resolved against its folder."""

    path: Path
    name: str
    kind: Kind
    csv: Path  # resolved relative to the job file's folder
    profile_id: str | None = None  # default profile for assign
    journal: str | None = None  # path template, relative to the job file's folder, may hold {date}
    rate: float | None = None  # requests/s ceiling
    concurrency: int | None = None
    max_attempts: int | None = None  # per row, transient failures
    max_retry_seconds: float | None = None  # per row, total time spent retrying
    max_server_wait: float | None = None  # cap on a single 429 wait the server asks for
    max_consecutive_failures: int | None = None  # failure-storm stop (storm.py); 0 = never
    default_region: str | None = None
    verify: bool | None = None
    skip_invalid: bool | None = None
    mode: str | None = None  # auto | bulk | patch
    bulk_size: int | None = None
    bulk_min: int | None = None
    order_timeout: float | None = None
    notify: str | None = None  # webhook URL told how each run ended (notify.py)
    leave_short_codes: bool | None = None

    def journal_path(self, today: date) -> Path | None:
        """The journal for a run on ``today``, or None when the job file names none."""
        if self.journal is None:
            return None
        return render_journal_path(self.journal, self.path.parent, today)


def render_journal_path(template: str, base_dir: Path, today: date) -> Path:
    """``template`` with ``{date}`` as YYYY-MM-DD, relative to ``base_dir`` unless absolute."""
    problem = _template_problem(template)
    if problem:
        raise InputError(f"journal path {template!r}: {problem}")
    rendered = template.replace("{date}", today.isoformat())
    return base_dir / Path(rendered).expanduser()


def _template_problem(template: str) -> str | None:
    if not template.strip():
        return "is empty; give a file path like journals/job-{date}.db"
    for match in _BRACES.finditer(template):
        if match.group() != "{date}":
            return f"{match.group()!r} is not a placeholder; the only one is {{date}}"
    return None


class _Loader:
    """Checks one parsed file; knows the text so every error can name its line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, key: str, table: str = "") -> int | None:
        """Line where ``key`` is set in ``table`` ("" = top level), by a light scan of the text."""
        current = ""
        for number, line in enumerate(self.lines, 1):
            header = _TABLE.match(line)
            if header and not _KEY.match(line):
                current = header.group(1).strip("\"' ")
                continue
            found = _KEY.match(line)
            if found and found.group(1) == key and current == table:
                return number
        return None

    def error(self, key: str, message: str, table: str = "") -> InputError:
        line = self.line_of(key, table)
        where = f"{self.path}:{line}" if line else str(self.path)
        shown = f"{table}.{key}" if table else key
        return InputError(f"{where}: {shown}: {message}")

    def check_secrets(self, data: dict[str, Any], table: str = "") -> None:
        for key, value in data.items():
            if _SECRET_KEY.search(key) or (isinstance(value, str) and _SECRET_VALUE.search(value)):
                raise self.error(
                    key,
                    "an API key must not be in a job file (job files get copied and committed); "
                    "remove it and give the key with TELNYX_API_KEY or --api-key-file",
                    table,
                )
            if isinstance(value, dict):
                self.check_secrets(value, f"{table}.{key}" if table else key)

    def text(self, data: dict[str, Any], key: str, table: str = "") -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            message = f"must be a non-empty string in quotes, got {_show(value)}"
            raise self.error(key, message, table)
        return value.strip()

    def flag(self, data: dict[str, Any], key: str) -> bool | None:
        value = data.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.error(key, f"must be true or false (no quotes), got {_show(value)}")
        return value


def _show(value: object) -> str:
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, dict):
        return "a table"
    return f"{value!r} ({type(value).__name__})"


def load_job_file(path: Path) -> JobFile:
    """Read and check a job file; InputError names file:line and key for anything wrong."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such job file; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; give the job file (.toml)") from None
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror}); check the file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        message = f"{path}:{line}: the job file is not UTF-8 text; save it as UTF-8"
        raise InputError(message) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        where = re.search(r"at line (\d+)", str(err))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)|\s*\(at end of document\)", "", str(err))
        if reason == "Cannot overwrite a value":
            reason = "a key is set twice"
        at = int(where.group(1)) if where else max(len(text.splitlines()), 1)
        raise InputError(
            f"{path}:{at}: not valid TOML ({reason}); "
            'write key = value lines, strings in "quotes"'
        ) from None
    return _check(_Loader(path, text), data)


def _check(loader: _Loader, data: dict[str, Any]) -> JobFile:
    """Every problem of the file in one error (a typo per run would take as many runs)."""
    path = loader.path
    loader.check_secrets(data)  # first and alone: nothing else is said about a file with a key
    problems: list[str] = []

    def keep(err: InputError) -> None:
        problems.append(str(err))

    for key in data:
        if key in LIMIT_KEYS:
            keep(loader.error(key, "belongs in the [limits] table; move it under a [limits] line"))
        elif key not in (*TOP_KEYS, "limits"):
            valid = ", ".join(TOP_KEYS)
            keep(loader.error(key, f"unknown key; valid keys are {valid} and a [limits] table"))
    limits = data.get("limits", {})
    if not isinstance(limits, dict):
        keep(loader.error("limits", "must be a table: write [limits] on its own line, then its keys"))
        limits = {}
    for key in limits:
        if key in TOP_KEYS:
            keep(loader.error(key, "belongs at the top of the file, before [limits]; move it up",
                              "limits"))
        elif key not in LIMIT_KEYS:
            valid = ", ".join(LIMIT_KEYS)
            keep(loader.error(key, f"unknown limit; valid ones are {valid}", "limits"))

    def text(key: str) -> str | None:
        try:
            return loader.text(data, key)
        except InputError as err:
            keep(err)
            return None

    def flag(key: str) -> bool | None:
        try:
            return loader.flag(data, key)
        except InputError as err:
            keep(err)
            return None

    kind: Kind | None = None
    kind_text = text("kind")
    if kind_text is None and "kind" not in data and "kind" not in limits:  # misplaced: said
        problems.append(f'{path}: kind is missing; add kind = "assign", "unassign", "migrate" or "set"')
    elif kind_text is not None:
        kinds = {k.value: k for k in JOB_KINDS}
        if kind_text.lower() in kinds:
            kind = kinds[kind_text.lower()]
        else:
            why = ""
            if kind_text.lower() == Kind.ROLLBACK.value:
                why = " (rollback jobs are made by `bulkops rollback`)"
            keep(loader.error("kind", f"{kind_text!r} is not a job kind{why}; use assign, "
                              "unassign, migrate or set"))

    csv_text = text("csv")
    if csv_text is None and "csv" not in data and "csv" not in limits:
        problems.append(f'{path}: csv is missing; add csv = "path/to/numbers.csv"')
    base = path.absolute().parent

    profile_id = text("profile_id")
    if profile_id is not None:
        if kind is not None and kind is not Kind.ASSIGN:
            keep(loader.error("profile_id", f"only applies to assign jobs, not {kind.value}; "
                              "remove it"))
        try:
            profile_id = normalize_profile_ref(profile_id)  # a name is resolved with the rows
        except ValueError as err:
            keep(loader.error("profile_id", str(err)))

    journal = text("journal")
    if journal is not None and (problem := _template_problem(journal)):
        keep(loader.error("journal", problem))

    region = text("default_region")
    if region is not None:
        try:
            region = normalize_region(region)
        except ValueError as err:
            keep(loader.error("default_region", str(err)))

    mode = text("mode")
    if mode is not None and mode.lower() not in MODES:
        keep(loader.error("mode", f"must be one of {', '.join(MODES)}, got {_show(mode)}"))

    # Every number through the one table of ranges (config.LIMITS), as the flags are.
    numbers: dict[str, int | float] = {}
    for key in LIMIT_KEYS:
        if limits.get(key) is None:
            continue
        if isinstance(limits[key], str):  # a flag's text, but here a number is a number
            whole = "a whole number" if LIMITS[key].whole else "a number"
            keep(loader.error(key, f"must be {whole} without quotes, got {_show(limits[key])}",
                              "limits"))
            continue
        try:
            numbers[key] = LIMITS[key].parse(limits[key])
        except ValueError as err:
            keep(loader.error(key, f"{err} (the flag {LIMITS[key].flag} takes the same)", "limits"))
    name = text("name")
    verify, skip_invalid = flag("verify"), flag("skip_invalid")
    leave_short_codes = flag("leave_short_codes")
    notify = None
    try:
        notify = _notify(loader, data)
    except InputError as err:
        keep(err)

    if problems or kind is None or csv_text is None:
        if len(problems) == 1:
            raise InputError(problems[0])
        raise InputError(f"{path} has {len(problems)} problems; nothing was sent:\n  "
                         + "\n  ".join(problems))

    def number(key: str, cast: type[int] | type[float]) -> Any:
        return None if key not in numbers else cast(numbers[key])

    return JobFile(
        path=path.absolute(),
        name=name or path.stem,
        kind=kind,
        csv=(base / Path(csv_text).expanduser()).resolve(),
        profile_id=profile_id,
        journal=journal,
        rate=number("rate", float),
        concurrency=number("concurrency", int),
        max_attempts=number("max_attempts", int),
        max_retry_seconds=number("max_retry_seconds", float),
        max_server_wait=number("max_server_wait", float),
        max_consecutive_failures=number("max_consecutive_failures", int),
        default_region=region,
        verify=verify,
        skip_invalid=skip_invalid,
        mode=None if mode is None else mode.lower(),
        bulk_size=number("bulk_size", int),
        bulk_min=number("bulk_min", int),
        order_timeout=number("order_timeout", float),
        notify=notify,
        leave_short_codes=leave_short_codes,
    )


def _notify(loader: _Loader, data: dict[str, Any]) -> str | None:
    from bulkops.errors import ConfigError
    from bulkops.notify import check_url

    url = loader.text(data, "notify")
    if url is None:
        return None
    try:  # plain http to a host that is not loopback is decided with --insecure, at run time
        return check_url(url, insecure=True, option="notify")
    except ConfigError as err:
        raise loader.error("notify", str(err).removeprefix("notify: ")) from None

"""Shared plumbing of the crash, soak and abuse tests: the CLI in a child process, CSVs, reads.

The child is always ``python -m bulkops.cli`` with the interpreter running the tests, so the
tests exercise the code in this tree whatever ``bulkops`` is first on PATH. Children talk to
sandboxes served by the test's own event loop, so the async helpers never block that loop.
"""

from __future__ import annotations

import asyncio
import csv
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bulkops.journal.records import Item
from bulkops.journal.store import Journal
from bulkops.models import Counts

CANARY_KEY = "KEY0SECRET-canary-1234567890"
# Any of these in any output or file is a leak: the whole key, or a telling part of it.
LEAKS = (CANARY_KEY, "KEY0SECRET", "canary-1234567890")
Args = list[str | Path]  # a `bulkops` command line, paths left as paths
ENV_VARS_CLEARED = ("TELNYX_API_KEY", "TELNYX_API_BASE_URL")


@dataclass(frozen=True, slots=True)
class CliResult:
    """What one `bulkops` child did: exit code and its two streams, decoded."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        """For assertion messages: the exit code and the tail of both streams."""
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


def cli_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "bulkops.cli", *(str(a) for a in args)]


def cli_env(api_key: str | None = None) -> dict[str, str]:
    """The parent's environment without any Telnyx settings, plus ``api_key`` if given."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS_CLEARED}
    if api_key is not None:
        env["TELNYX_API_KEY"] = api_key
    return env


async def run_cli(
    args: Sequence[str | Path], *, env: Mapping[str, str], timeout: float = 90.0, umask: int = -1
) -> CliResult:
    """Run `bulkops ARGS` to completion without blocking the event loop (sandboxes live on it).

    ``umask`` (default: inherited) lets a test prove file modes are set by bulkops itself.
    """
    process = await asyncio.create_subprocess_exec(
        *cli_command(*args), env=dict(env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, umask=umask,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"bulkops {' '.join(map(str, args))} did not finish within {timeout:g} s") from None
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def peak_rss_so_far(pid: int) -> int:
    """The child's peak resident memory since its exec, in bytes (0 once it has exited).

    On Linux this is ``VmHWM`` of /proc/PID/status: a high-water mark, so polling it misses
    nothing but the last moments before exit. (``ru_maxrss`` from ``wait4`` would not do: it
    keeps the high-water mark of the test process the child was forked from, before its exec.)
    Elsewhere, psutil's current RSS is sampled instead.
    """
    status = Path(f"/proc/{pid}/status")
    if status.parent.parent.is_dir():
        try:
            text = status.read_text()
        except (FileNotFoundError, ProcessLookupError):
            return 0
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0
    import psutil  # type: ignore[import-untyped]  # no stubs installed; only used off Linux

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def run_cli_measured(
    args: Sequence[str | Path], *, env: Mapping[str, str], workdir: Path, timeout: float = 90.0
) -> tuple[CliResult, int]:
    """Run `bulkops ARGS` (synchronously) and return its result and peak RSS in bytes.

    Output goes to files so a chatty child never blocks on a full pipe while we poll.
    """
    out_path, err_path = workdir / "measured.stdout", workdir / "measured.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(cli_command(*args), env=dict(env), stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err)
    peak, deadline = 0, Deadline(timeout)
    try:
        while process.poll() is None:
            assert not deadline.passed, f"bulkops {' '.join(map(str, args))} did not finish within {timeout:g} s"
            peak = max(peak, peak_rss_so_far(process.pid))
            time.sleep(0.01)  # polling a child's memory with a deadline; there is nothing to await
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert peak > 0, "the child's memory was never sampled; the measurement would prove nothing"
    result = CliResult(process.returncode, out_path.read_text("utf-8", "replace"),
                       err_path.read_text("utf-8", "replace"))
    return result, peak


def closed_port_url() -> str:
    """A loopback base URL where nothing listens: every request is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v2"


def assert_no_key(where: str, data: str | bytes) -> None:
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    for leak in LEAKS:
        assert leak.encode() not in raw, f"the API key (or part of it, {leak!r}) leaked into {where}"


def assert_no_key_in_files(folder: Path, *, skip: Iterable[Path] = ()) -> list[Path]:
    """Scan every file under ``folder`` (journal, -wal, -shm, lock, reports...); returns them."""
    skipped = set(skip)
    scanned = [p for p in sorted(folder.rglob("*")) if p.is_file() and p not in skipped]
    for path in scanned:
        assert_no_key(str(path), path.read_bytes())
    return scanned


def assert_no_key_in_result(what: str, result: CliResult) -> None:
    assert_no_key(f"the stdout of {what}", result.stdout)
    assert_no_key(f"the stderr of {what}", result.stderr)


def assert_clean_error(result: CliResult, code: int, *mentions: str) -> None:
    """An expected failure: ``Error: ...`` on stderr, the documented exit code, no traceback."""
    assert result.returncode == code, result.describe()
    assert "Traceback" not in result.output, result.describe()
    assert any(line.startswith("Error: ") for line in result.stderr.splitlines()), result.describe()
    for text in mentions:
        assert text in result.stderr, f"{text!r} not in the error\n{result.describe()}"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_assign_csv(path: Path, rows: Iterable[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phone_number", "messaging_profile_id"])
        writer.writerows(rows)
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


async def journal_snapshot(path: Path, job_id: int = 1) -> tuple[Counts, dict[str, Item]]:
    """Counts and every item of a job, read without taking the journal's lock."""
    journal = await Journal.open(path, lock=False)
    try:
        counts = await journal.counts(job_id)
        items: dict[str, Item] = {}
        async for page in journal.iter_items(job_id):
            items.update((item.phone_number, item) for item in page)
        return counts, items
    finally:
        await journal.close()


def file_signature(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, or None while it does not exist: changes on every write."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


class Deadline:
    """A monotonic deadline for polling loops: ``while not deadline.passed: ...``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.at

"""Running bulkops itself: in-process through the library, or as a ``bulkops run`` child.

In-process is the default (the reference loops run in-process too, so both pay the same
for the interpreter); a child process is used where it must be killed with SIGKILL.
bulkops is imported lazily so that a broken runner fails its own row of a table, not
the reference loops beside it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .harness import BenchError
from .sizes import API_KEY

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BulkopsRun:
    """One finished ``run_job``: wall time around it, and its own summary."""

    elapsed: float
    counts: dict[str, int]
    requests: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0

    def count(self, state: str) -> int:
        return int(self.counts.get(state, 0))


def log_to(path: Path) -> None:
    """bulkops' ledger goes to a file: the terminal shows only the tables."""
    logger = logging.getLogger("bulkops")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


async def run_in_process(csv_path: Path, journal_path: Path, base_url: str, *,
                         concurrency: int, name: str = "bench", mode: str = "patch") -> BulkopsRun:
    """``run_job`` from validation to report, timed from the call to its return. The PATCH
    path unless ``mode`` says otherwise: scenarios 1-5 measure it (6 measures orders)."""
    from bulkops.config import RunSettings, Secret, WriteMode
    from bulkops.jobs import JobRequest, run_job
    from bulkops.models import Kind

    request = JobRequest(kind=Kind.ASSIGN, csv_path=csv_path, journal_path=journal_path, name=name)
    settings = RunSettings(base_url=base_url, concurrency=concurrency, rate=None, assume_yes=True,
                           mode=WriteMode(mode))
    started = time.perf_counter()
    result = await run_job(request, settings, Secret(API_KEY))
    elapsed = time.perf_counter() - started
    summary = result.as_dict()
    return BulkopsRun(elapsed, dict(summary["counts"]), dict(summary["requests"]), int(result.exit_code))


def cli_command(csv_path: Path, journal_path: Path, base_url: str, *, concurrency: int,
                mode: str = "patch") -> list[str]:
    """``bulkops run`` as a user types it (through ``python -m bulkops.cli``: no install needed);
    the PATCH path unless ``mode`` says otherwise."""
    return [sys.executable, "-m", "bulkops.cli", "run", "--kind", "assign", "--csv", str(csv_path),
            "--journal", str(journal_path), "--base-url", base_url, "--concurrency",
            str(concurrency), "--yes", "--json", "--mode", mode]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TELNYX_API_KEY"] = API_KEY  # a sandbox key; the child reads it like a user's
    env.pop("TELNYX_API_BASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


class CliRun:
    """A ``bulkops run`` child whose stdout (the JSON summary) and stderr go to files."""

    def __init__(self, command: list[str], workdir: Path, label: str) -> None:
        self.stdout_path = workdir / f"{label}.stdout"
        self.stderr_path = workdir / f"{label}.stderr"
        self.started = time.perf_counter()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=cli_env(), cwd=REPO)

    peak_rss = 0  # bytes: the child's VmHWM, as last sampled by ``watch``

    def watch(self, timeout: float, every: float = 0.25) -> bool:
        """Wait up to ``timeout`` s, sampling the child's peak RSS; whether it exited."""
        deadline = time.perf_counter() + timeout
        while self.process.poll() is None:
            self.peak_rss = max(self.peak_rss, _vm_hwm(self.process.pid))
            if (left := deadline - time.perf_counter()) <= 0:
                return False
            try:
                self.process.wait(min(every, left))
            except subprocess.TimeoutExpired:
                pass
        return True

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed: the crash the journal must survive."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"bulkops run did not finish within {timeout:g} s; "
                             f"see {self.stderr_path}") from None

    def summary(self) -> dict[str, Any]:
        """The ``--json`` summary; BenchError quoting stderr when there is none."""
        text = self.stdout_path.read_text(encoding="utf-8", errors="replace")
        try:
            data: dict[str, Any] = json.loads(text)
            return data
        except json.JSONDecodeError:
            raise BenchError(f"bulkops run (exit code {self.process.returncode}) printed no JSON "
                             f"summary; its stderr: {tail(self.stderr_path)}") from None


def _vm_hwm(pid: int) -> int:
    """A live process's peak RSS in bytes (``VmHWM``), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def tail(path: Path, chars: int = 600) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "(none)"
    return text[-chars:] or "(none)"

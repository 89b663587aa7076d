"""A sandbox in a child process, for benchmarks and crash tests that must not share our loop.

The child is ``python -m bulkops.sandbox --port 0 --ready-file PATH ...``; the
parent polls for the ready file (with a deadline) to learn the base URL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from bulkops.errors import ConfigError


class SandboxProcess:
    """A running child sandbox; stop it with ``stop()`` or by leaving the ``with`` block."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log_path = log_path  # the child's stdout and stderr

    @property
    def origin(self) -> str:
        """The base URL without ``/v2``: where ``/_control/*`` lives (needs ``--control``)."""
        return self.base_url.removesuffix("/v2")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def spawn_sandbox(
    args: Sequence[str] = (),
    *,
    ready_timeout: float = 30.0,
    workdir: Path | None = None,
) -> SandboxProcess:
    """Start ``python -m bulkops.sandbox --port 0 <args>`` and wait until it listens.

    ``args`` are CLI flags (e.g. ``["--numbers", "5000", "--control"]``). The
    child's output goes to a log file in ``workdir`` (a temporary directory by
    default), quoted in the error if it fails to start.
    """
    directory = workdir or Path(tempfile.mkdtemp(prefix="bulkops-sandbox-"))
    ready = directory / f"sandbox-{os.getpid()}-{time.monotonic_ns()}.url"
    log_path = ready.with_suffix(".log")
    command = [sys.executable, "-m", "bulkops.sandbox", "--port", "0", *args, "--ready-file", str(ready)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return SandboxProcess(process, ready.read_text(encoding="utf-8").strip(), log_path)
        if process.poll() is not None:
            break
        time.sleep(0.02)  # polling a file with a deadline; nothing to await
    if process.poll() is None:
        process.kill()
        process.wait()
    output = log_path.read_text(encoding="utf-8", errors="replace").strip()[-2000:]
    raise ConfigError(
        f"The sandbox process did not start within {ready_timeout:g} s "
        f"(exit code {process.returncode}). Its output:\n{output or '(none)'}"
    )

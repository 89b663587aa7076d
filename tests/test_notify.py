"""run --notify: one POST of the run's outcome, whatever it is, that never changes the exit code."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bulkops.config import Secret
from bulkops.errors import AuthError, ConfigError, ExitCode
from bulkops.jobs import JobRequest, run_job
from bulkops.models import Kind
from bulkops.notify import check_url
from bulkops.sandbox import Sandbox

from tests.conftest import SandboxFactory
from tests.harness import cli_command, cli_env, run_cli
from tests.jobhelpers import other_profile, run_started, settings_for, write_csv
from tests.journal_kit import num
from tests.poll_kit import wait_until


@dataclass
class Webhook:
    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    failures: int = 0  # answer this many tries with 500 first


@asynccontextmanager
async def webhook(failures: int = 0) -> AsyncIterator[Webhook]:
    hook = Webhook("", failures=failures)

    async def receive(request: web.Request) -> web.Response:
        hook.raw.append(await request.read())
        if hook.failures:
            hook.failures -= 1
            return web.Response(status=500)
        hook.bodies.append(json.loads(hook.raw[-1]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook/secret-token", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hook.url = f"http://127.0.0.1:{port}/hook/secret-token"
    try:
        yield hook
    finally:
        await runner.cleanup()


def _job(sandbox: Sandbox, tmp_path: Path, missing: int = 2) -> JobRequest:
    good = sandbox.numbers()[:6]
    rows = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in good]
    rows += [(num(9000 + i), sandbox.profile_ids()[0]) for i in range(missing)]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], rows)
    return JobRequest(Kind.ASSIGN, csv_path, tmp_path / "a.db", "batch-7")


async def test_a_run_with_failed_rows_posts_one_summary_with_counts_paths_and_a_line_of_text(
        sandbox: Sandbox, tmp_path: Path) -> None:
    async with webhook() as hook:
        result = await run_job(_job(sandbox, tmp_path), settings_for(sandbox),
                               Secret(sandbox.api_key), notify=hook.url)

    assert result.exit_code is ExitCode.FAILED_ROWS
    (body,) = hook.bodies
    assert body["event"] == "finished" and body["job"] == "batch-7" and body["kind"] == "assign"
    assert body["state"] == "finished" and body["exit_code"] == 3
    assert body["counts"]["done"] == 6 and body["counts"]["failed"] == 2
    assert body["counts"]["rejected"] == 0 and body["counts"]["skipped"] == 0
    assert body["report"] == str(result.report_path) and body["html"] == str(result.html_path)
    assert body["started_at"] <= body["ended_at"] and body["duration_s"] >= 0
    assert body["text"].startswith("bulkops assign job batch-7: finished, exit code 3; done 6, failed 2")
    assert sandbox.api_key.encode() not in hook.raw[0]


async def test_a_refused_key_is_notified_with_its_exit_code_and_the_error_still_raised(
        sandbox: Sandbox, tmp_path: Path) -> None:
    async with webhook() as hook:
        with pytest.raises(AuthError):
            await run_job(_job(sandbox, tmp_path), settings_for(sandbox), Secret("KEY-not-the-key"),
                          notify=hook.url)

    (body,) = hook.bodies
    assert body["exit_code"] == int(ExitCode.ABORTED) and body["error"]
    assert "exit code 4" in body["text"]
    assert b"KEY-not-the-key" not in hook.raw[0]


async def test_a_webhook_that_fails_once_is_tried_again_and_gets_one_notification(
        sandbox: Sandbox, tmp_path: Path) -> None:
    async with webhook(failures=1) as hook:
        result = await run_job(_job(sandbox, tmp_path, missing=0), settings_for(sandbox),
                               Secret(sandbox.api_key), notify=hook.url)

    assert result.exit_code is ExitCode.OK
    assert len(hook.raw) == 2 and len(hook.bodies) == 1 and hook.bodies[0]["exit_code"] == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_webhook_is_logged_and_leaves_the_exit_code_alone(
        sandbox: Sandbox, tmp_path: Path) -> None:
    request = _job(sandbox, tmp_path)
    done = await run_cli(["run", "--kind", "assign", "--csv", request.csv_path, "--journal",
                          request.journal_path, "--base-url", sandbox.base_url, "--yes",
                          "--notify", f"http://127.0.0.1:{_closed_port()}/hook/secret-token"],
                         env=cli_env(sandbox.api_key))

    assert done.returncode == 3, done.stderr
    assert "the notification to http://127.0.0.1:" in done.stderr and "failed after 3 tries" in done.stderr
    assert "secret-token" not in done.stderr


async def test_a_cleartext_webhook_off_loopback_is_refused_before_anything_is_sent(
        sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="refusing to send the run's outcome in clear text"):
        await run_job(_job(sandbox, tmp_path), settings_for(sandbox), Secret(sandbox.api_key),
                      notify="http://hooks.example.com/x")
    assert not (tmp_path / "a.db").exists()
    assert check_url("http://hooks.example.com/x", insecure=True) == "http://hooks.example.com/x"
    with pytest.raises(ConfigError, match="not an http"):
        check_url("ftp://example.com/x")


async def test_a_job_file_names_the_webhook_with_its_notify_key(
        sandbox: Sandbox, tmp_path: Path) -> None:
    request = _job(sandbox, tmp_path, missing=0)
    async with webhook() as hook:
        (tmp_path / "job.toml").write_text(f'kind = "assign"\ncsv = "a.csv"\nnotify = "{hook.url}"\n')
        done = await run_cli(["run", tmp_path / "job.toml", "--journal", request.journal_path,
                              "--base-url", sandbox.base_url, "--yes"], env=cli_env(sandbox.api_key))

    assert done.returncode == 0, done.stderr
    (body,) = hook.bodies
    assert body["exit_code"] == 0 and body["counts"]["done"] == 6


async def test_an_interrupted_run_is_notified_with_exit_130_and_its_html_report(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=120, profiles=3, seed=5, rate=10, window=1) as sandbox, \
            webhook() as hook:
        numbers = sandbox.numbers()[:80]  # 8 s at 10 requests/s: stopped long before its end
        csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                             [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
        runner = await asyncio.create_subprocess_exec(
            *cli_command("run", "--kind", "assign", "--csv", csv_path, "--journal",
                         tmp_path / "a.db", "--base-url", sandbox.base_url, "--yes",
                         "--mode", "patch", "--notify", hook.url),
            env=cli_env(sandbox.api_key), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        await run_started(tmp_path / "a.db", table="series")  # writing, signals handled
        runner.send_signal(signal.SIGTERM)
        _, err = await runner.communicate()

    assert runner.returncode == int(ExitCode.INTERRUPTED), err.decode()
    (body,) = hook.bodies
    assert body["state"] == "interrupted" and body["exit_code"] == 130
    assert body["html"] == str(tmp_path / "a.report.html") and Path(body["html"]).is_file()
    assert body["counts"]["done"] < 80


async def test_a_run_stopped_by_ctrl_c_while_it_loads_is_notified_with_exit_130(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    # Every answer takes 3 s: the run is still checking its profiles (loading, before the
    # write phase's own Ctrl-C handling) when the signal comes.
    async with sandbox_factory(numbers=20, profiles=2, seed=6, faults={"latency_ms": 3000}) as sandbox, \
            webhook() as hook:
        numbers = sandbox.numbers()[:5]
        csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                             [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
        runner = await asyncio.create_subprocess_exec(
            *cli_command("run", "--kind", "assign", "--csv", csv_path, "--journal",
                         tmp_path / "a.db", "--base-url", sandbox.base_url, "--yes",
                         "--notify", hook.url),
            env=cli_env(sandbox.api_key), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        await wait_until(lambda: sandbox.stats.total_requests > 0, within=30,
                         what="the run's first request")
        runner.send_signal(signal.SIGINT)
        _, err = await runner.communicate()

    assert runner.returncode == int(ExitCode.INTERRUPTED), err.decode()
    assert "Traceback" not in err.decode()
    (body,) = hook.bodies
    assert body["exit_code"] == 130 and body["event"] == "finished"
    assert body["counts"].get("done", 0) == 0 and "interrupted" in body["text"]

"""A real browser for page tests: headless Chromium (Debian's ``chromium``) driven over the
DevTools protocol with aiohttp's WebSocket client, so no browser download and no new package.

``open_page(path)`` loads a local file and returns what the page did: script errors
(exceptions, console errors, log errors), every request it made, and a handle to evaluate
JavaScript in it. Chromium runs as root here, so it needs --no-sandbox; the background
services are switched off (the machine has no network) and each run gets a fresh profile.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic", "--no-default-browser-check", "--remote-debugging-port=0")
START_DEADLINE = 30.0  # seconds for Chromium to say where its DevTools endpoint is


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium on this machine: `apt-get install -y chromium` (.ci/run does)")
    return found


@dataclass
class Page:
    ws: aiohttp.ClientWebSocketResponse
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _waiting: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call] = answer
        await self.ws.send_str(json.dumps({"id": call, "method": method, "params": params}))
        reply = await asyncio.wait_for(answer, 30)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` (JSON-able), evaluated in the page."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(str(details.get("exception", {}).get("description") or details))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description")))
                                        for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Page.loadEventFired":
            self.loaded.set()

    async def pump(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data and (waiter := self._waiting.pop(data["id"], None)) is not None:
                waiter.set_result(data)
            else:
                self._event(data)


async def _devtools_port(log: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            raise AssertionError(f"chromium exited {process.returncode}: {log.read_text()[-2000:]}")
        await asyncio.sleep(0.05)
    raise AssertionError(f"chromium gave no DevTools endpoint in {START_DEADLINE:.0f} s")


@asynccontextmanager
async def open_page(path: Path) -> AsyncIterator[Page]:
    """``path`` loaded in a fresh headless Chromium; the page is closed with the browser."""
    # Chromium's helper processes can still be writing the profile when the browser exits:
    # the whole process group is ended, and a file left behind does not fail the test.
    with tempfile.TemporaryDirectory(prefix="bulkops-chromium-", ignore_cleanup_errors=True) as profile:
        log = Path(profile) / "stderr.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}/p",
                                        "about:blank"], stdout=subprocess.DEVNULL, stderr=stderr,
                                       start_new_session=True)
        try:
            port = await _devtools_port(log, process)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                    targets = await answer.json()
                page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                async with http.ws_connect(page_url, max_msg_size=0) as ws:
                    page = Page(ws)
                    pump = asyncio.create_task(page.pump())
                    try:
                        for domain in ("Runtime", "Log", "Network", "Page"):
                            await page.send(f"{domain}.enable")
                        await page.send("Page.navigate", url=path.resolve().as_uri())
                        await asyncio.wait_for(page.loaded.wait(), 30)
                        yield page
                    finally:
                        pump.cancel()
                        await asyncio.gather(pump, return_exceptions=True)
        finally:
            _end_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _end_group(process, signal.SIGKILL)
                process.wait()


def _end_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass

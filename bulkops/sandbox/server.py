"""Running a sandbox: in-process (``running_sandbox``) or on a thread of its own.

``Sandbox`` is the handle tests, the demo and benchmarks hold: its base URL and
key, the live state and counters, and setters that change the server's
behaviour mid-run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

from aiohttp import web

from bulkops.errors import ConfigError

from .app import build_app
from .config import FaultConfig, LimiterKind, SandboxConfig
from .context import SandboxContext
from .state import SandboxState
from .stats import RecordedExchange, SandboxStats
from .tendlc import TenDlcState

SHUTDOWN_TIMEOUT = 1.0  # seconds in-flight requests get at shutdown (slow faults are cancelled)


def base_url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v2"


class Sandbox:
    """A running sandbox. Call its methods from the event loop that serves it."""

    def __init__(self, ctx: SandboxContext, base_url: str) -> None:
        self._ctx = ctx
        self.base_url = base_url
        self.api_key = ctx.config.api_key

    @property
    def config(self) -> SandboxConfig:
        """The configuration in force now (setters below change it)."""
        return self._ctx.current_config()

    @property
    def state(self) -> SandboxState:
        return self._ctx.state

    @property
    def stats(self) -> SandboxStats:
        return self._ctx.stats

    @property
    def recorded(self) -> list[RecordedExchange]:
        """Every exchange since start, when started with ``record=True`` (else empty)."""
        return self._ctx.recorded

    @property
    def tendlc(self) -> TenDlcState:
        """10DLC campaigns, links and tasks (call ``settle()`` first to read them current)."""
        return self._ctx.tendlc

    @property
    def origin(self) -> str:
        """The base URL without ``/v2``: where the control routes live."""
        return self.base_url.removesuffix("/v2")

    def profile_of(self, number: str) -> str | None:
        return self._ctx.state.profile_of(number)

    def set_profile(self, number: str, profile_id: str | None) -> None:
        """Change a number behind a job's back (not counted as a write); None or "" unassigns."""
        self._ctx.set_profile(number, profile_id)

    def dump(self) -> dict[str, str | None]:
        return self._ctx.state.dump()

    def short_codes(self) -> dict[str, str | None]:
        """Every short code's digits -> its profile id or None."""
        return self._ctx.state.short_code_dump()

    def short_code_id(self, digits: str) -> str:
        """The UUID of the short code with these digits (KeyError if there is none)."""
        return next(r.id for r in self._ctx.state.short_codes() if r.short_code == digits)

    def set_short_code_profile(self, digits: str, profile_id: str | None) -> None:
        """Rebind a short code behind a job's back (not counted as a write); None unbinds."""
        import time
        self._ctx.state.bind_short_code(self.short_code_id(digits),
                                        profile_id.lower() if profile_id else None, None, time.time())

    def profile_ids(self) -> list[str]:
        return self._ctx.state.profile_ids()

    def numbers(self) -> list[str]:
        return self._ctx.state.numbers()

    def set_faults(self, faults: FaultConfig) -> None:
        self._ctx.set_faults(faults)

    def set_rate(self, rate: int, window: float, kind: LimiterKind | None = None) -> None:
        self._ctx.set_rate(rate, window, kind)

    def set_ignore_writes(self, on: bool) -> None:
        self._ctx.set_ignore_writes(on)

    def on_write(self, hook: Callable[[web.Request], Awaitable[None]] | None) -> None:
        """Await ``hook(request)`` as each write arrives, before it is served (None: stop)."""
        self._ctx.write_hook = hook


@asynccontextmanager
async def running_sandbox(config: SandboxConfig | None = None) -> AsyncIterator[Sandbox]:
    """Serve a sandbox on loopback for the duration of the block."""
    config = config or SandboxConfig()
    ctx = SandboxContext(config)
    # handler_cancellation: a client that gives up on a slow answer frees its handler.
    runner = web.AppRunner(
        build_app(ctx), access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"The sandbox cannot listen on {config.host}:{config.port} ({exc.strerror or exc}); "
                "choose another port (0 picks a free one) or host."
            ) from None
        port = int(runner.addresses[0][1])
        yield Sandbox(ctx, base_url_for(config.host, port))
    finally:
        await runner.cleanup()


@contextmanager
def sandbox_in_thread(config: SandboxConfig | None = None, start_timeout: float = 30.0) -> Iterator[Sandbox]:
    """A sandbox on its own thread and event loop, for synchronous callers (schemathesis, benchmarks).

    Read its stats freely; to change settings mid-run, prefer the control routes
    (``control=True``): the setters are not synchronised with the serving thread.
    """
    ready = threading.Event()
    holder: dict[str, object] = {}
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with running_sandbox(config) as sandbox:
                holder["sandbox"] = sandbox
                ready.set()
                await stop.wait()
        except BaseException as exc:
            holder["error"] = exc
            ready.set()
            if not isinstance(exc, Exception):
                raise

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="bulkops-sandbox", daemon=True)
    thread.start()
    if not ready.wait(start_timeout):
        raise ConfigError(f"The sandbox thread did not start within {start_timeout:g} s.")
    error = holder.get("error")
    if isinstance(error, BaseException):
        thread.join()
        raise error
    sandbox = holder["sandbox"]
    assert isinstance(sandbox, Sandbox)
    try:
        yield sandbox
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)

"""The per-server bundle handlers and middlewares share (one per running sandbox)."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from .bulk import BulkOrders
from .config import FaultConfig, LimiterKind, SandboxConfig
from .faults import FaultInjector, RateLimiter
from .seed import generate
from .state import SandboxState
from .stats import RecordedExchange, SandboxStats
from .tendlc import TenDlcState


class SandboxContext:
    """Live settings and state of one sandbox; the control routes and ``Sandbox`` mutate it."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.state = SandboxState(generate(config))
        self.stats = SandboxStats()
        self.limiter = RateLimiter(config.rate, config.window, kind=config.limiter)
        self.faults = FaultInjector(config.faults)
        self.ignore_writes = config.ignore_writes
        self.recorded: list[RecordedExchange] = []
        self.tendlc = TenDlcState(config, self.state)  # 10DLC campaigns and links (routes_10dlc.py)
        # Called as each write (PATCH, POST...) arrives, before anything acts on it: tests
        # look at the client's side (its journal) at the moment a write reaches the server.
        self.write_hook: Callable[[web.Request], Awaitable[None]] | None = None
        # Ids the server mints (new profiles, bulk orders) are seeded too.
        self.ids = random.Random(f"bulkops-sandbox/ids/{config.seed}")
        self.bulk = BulkOrders(
            self.state, self.stats, config.bulk_speed, self.ids, lambda: not self.ignore_writes,
            faults=random.Random(f"bulkops-sandbox/orders/{config.seed}"),
            fail_rate=config.order_fail_rate, stuck_rate=config.order_stuck_rate,
        )

    def current_config(self) -> SandboxConfig:
        """The config with the live rate, faults and ignore_writes settings."""
        return dataclasses.replace(
            self.config,
            rate=self.limiter.rate,
            window=self.limiter.window,
            limiter=self.limiter.kind,
            faults=self.faults.config,
            ignore_writes=self.ignore_writes,
        )

    def set_faults(self, faults: FaultConfig) -> None:
        self.faults.configure(faults)

    def set_rate(self, rate: int, window: float, kind: LimiterKind | None = None) -> None:
        dataclasses.replace(self.config, rate=rate, window=window,
                            limiter=kind or self.limiter.kind)  # validates (ConfigError)
        self.limiter.configure(rate, window, kind)

    def set_ignore_writes(self, on: bool) -> None:
        self.ignore_writes = bool(on)

    def set_profile(self, phone_number: str, profile_id: str | None) -> None:
        """Change a number behind a job's back: not counted as a write. None or "" unassigns."""
        target = profile_id.lower() if profile_id else None
        self.state.assign(phone_number, target, time.time())


CTX: web.AppKey[SandboxContext] = web.AppKey("bulkops_sandbox", SandboxContext)

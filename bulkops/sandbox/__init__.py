"""A local Telnyx look-alike for messaging-profile jobs: no account, no network.

Every integration test, benchmark and the demo run against it, and operators
rehearse migrations on it, so it follows the contract in
``docs/telnyx/messaging-numbers.openapi.yml`` and ``docs/telnyx/API-NOTES.md`` closely: the
unassign-with-"" quirk, Telnyx-shaped errors, rate-limit headers, bulk orders,
and seeded faults (5xx, 5xx after the write, dropped connections, latency,
slow answers). 10DLC campaigns, their asynchronous phone-number links and the
bulk-by-profile task follow ``docs/telnyx/short-codes-10dlc.openapi.yml`` (``tendlc.py``,
``routes_10dlc.py``).

Use it in-process with ``running_sandbox(SandboxConfig(...))``, on a thread with
``sandbox_in_thread``, in another process with ``python -m bulkops.sandbox``
(see ``process.spawn_sandbox``), or from the CLI as ``bulkops sandbox``.
"""

from __future__ import annotations

from .config import FaultConfig, LimiterKind, SandboxConfig
from .demo import DemoData, demo_data, write_sample_csvs
from .faults import FaultKind
from .records import NumberType, ProfileRecord
from .server import Sandbox, running_sandbox, sandbox_in_thread
from .state import SandboxState
from .stats import RecordedExchange, SandboxStats

__all__ = [
    "DemoData",
    "FaultConfig",
    "FaultKind",
    "LimiterKind",
    "NumberType",
    "ProfileRecord",
    "RecordedExchange",
    "Sandbox",
    "SandboxConfig",
    "SandboxState",
    "SandboxStats",
    "demo_data",
    "running_sandbox",
    "sandbox_in_thread",
    "write_sample_csvs",
]

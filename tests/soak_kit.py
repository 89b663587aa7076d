"""The fault soak's faults and its numbers the account does not hold, shared by the PATCH soak
(test_fault_soak) and the bulk-order soak (test_bulk_orders)."""

from __future__ import annotations

from bulkops.sandbox import FaultConfig
from bulkops.sandbox.seed import AREA_CODES

TIMEOUT = 0.5  # client seconds per request; slow answers are held back 4x longer

FAULTS = FaultConfig(
    error_rate=0.08,
    error_after_write_rate=0.08,
    drop_rate=0.05,
    latency_ms=4,
    jitter_ms=4,
    slow_rate=0.01,
    slow_ms=TIMEOUT * 4_000,
    seed=41,
)


def numbers_not_on(account: set[str], count: int) -> list[str]:
    """Valid E.164 numbers (the sandbox's own number space) that the account does not hold."""
    found: list[str] = []
    for area in AREA_CODES[::7]:
        for line in range(0, 10_000, 997):
            number = f"+1{area}555{line:04d}"
            if number not in account:
                found.append(number)
                if len(found) == count:
                    return found
    raise AssertionError("not enough free numbers in the sandbox's number space")

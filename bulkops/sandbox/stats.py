"""What the sandbox saw: request counters, applied writes, faults, recorded exchanges.

Tests and benchmarks assert on these instead of on timing: e.g. the crash test
proves from ``writes_by_number`` that no number was written more than 1 + kills
times.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

NO_RESPONSE = 0  # the status recorded for a dropped connection or a cancelled request


@dataclass(frozen=True, slots=True)
class RecordedExchange:
    """One request and its answer, as they crossed the wire (for contract tests).

    ``path`` and ``query`` are raw (still percent-encoded). The Authorization
    header keeps only its scheme (``Bearer <redacted>``): recordings may be printed.
    ``status`` is None when the connection was dropped or the client gave up.
    """

    method: str
    path: str
    query: str
    request_headers: tuple[tuple[str, str], ...]
    request_body: bytes
    route: str  # "METHOD /v2/template/{id}" or "<unmatched>"
    status: int | None
    response_headers: tuple[tuple[str, str], ...] = ()
    response_body: bytes = b""
    received_at: float = 0.0  # time.monotonic() when the request arrived
    answered_at: float = 0.0  # time.monotonic() when the answer (or the drop) was decided

    def header(self, name: str, *, response: bool = True) -> str | None:
        wanted = name.lower()
        for key, value in self.response_headers if response else self.request_headers:
            if key.lower() == wanted:
                return value
        return None

    def request_json(self) -> object:
        return json.loads(self.request_body) if self.request_body else None


@dataclass(slots=True)
class SandboxStats:
    """Counters of one sandbox, reset with ``reset()``; ``as_dict()`` for JSON."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (route, status); 0 = no response
    writes_applied: int = 0  # number assignments applied by PATCH or by a bulk order
    writes_by_number: Counter[str] = field(default_factory=Counter)
    bulk_numbers_applied: int = 0  # the part of writes_applied done by bulk orders
    rate_limited: int = 0  # 429s sent
    in_flight: int = 0
    peak_in_flight: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)  # by FaultKind value
    # When the first and the last write (PATCH answered 200) left: the write phase, for the
    # rate benchmark's "requests per second while writing" (monotonic seconds).
    first_write_at: float | None = None
    last_write_at: float | None = None

    def reset(self) -> None:
        """Zero every counter; requests in flight stay counted (they will still finish)."""
        self.requests.clear()
        self.writes_applied = 0
        self.writes_by_number.clear()
        self.bulk_numbers_applied = 0
        self.rate_limited = 0
        self.peak_in_flight = self.in_flight
        self.faults_injected.clear()
        self.first_write_at = self.last_write_at = None

    def record_write(self, phone_number: str, *, bulk: bool = False) -> None:
        self.writes_applied += 1
        self.writes_by_number[phone_number] += 1
        if bulk:
            self.bulk_numbers_applied += 1

    def enter(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight

    def leave(self, route: str, status: int | None) -> None:
        self.in_flight -= 1
        self.requests[(route, NO_RESPONSE if status is None else status)] += 1
        if status == 200 and route.startswith("PATCH "):
            self.last_write_at = time.monotonic()
            if self.first_write_at is None:
                self.first_write_at = self.last_write_at

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def count(self, route: str | None = None, status: int | None = None) -> int:
        """Requests seen, optionally only for one route ("PATCH /v2/...") and/or status."""
        return sum(
            n
            for (r, s), n in self.requests.items()
            if (route is None or r == route) and (status is None or s == status)
        )

    def as_dict(self) -> dict[str, object]:
        by_route: dict[str, dict[str, int]] = {}
        for (route, status), n in sorted(self.requests.items()):
            by_route.setdefault(route, {})[str(status)] = n
        return {
            "requests": by_route,
            "total_requests": self.total_requests,
            "writes_applied": self.writes_applied,
            "writes_by_number": dict(self.writes_by_number),
            "bulk_numbers_applied": self.bulk_numbers_applied,
            "rate_limited": self.rate_limited,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "faults_injected": dict(self.faults_injected),
            "first_write_at": self.first_write_at,
            "last_write_at": self.last_write_at,
        }

"""How big each scenario is, full or ``--quick``: the one place to change a size."""

from __future__ import annotations

from dataclasses import dataclass

SEED = 20_260_701  # seeds the sandbox accounts, their faults and every row choice
API_KEY = "bench-sandbox-key"  # a sandbox key only: never a real one


@dataclass(frozen=True, slots=True)
class Sizes:
    quick: bool
    concurrency: int = 32
    # 1. rate-limit efficiency
    rate: int = 100  # requests per 1 s window
    latency_ms: float = 80.0
    jitter_ms: float = 20.0
    rate_rows: int = 3_000
    rate_kinds: tuple[str, ...] = ("fixed", "fixed-clock", "sliding", "bucket")  # --limiter
    rate_latencies_ms: tuple[float, ...] = (20.0, 80.0, 200.0)  # bulkops; the plain loop: latency_ms
    # The rest of the server family, at latency_ms, latency passing before the count:
    # (--limiter, --latency-shape), uniform +- jitter or exponential (a heavy tail).
    rate_family: tuple[tuple[str, str], ...] = (
        ("fixed", "uniform"), ("fixed-clock", "uniform"), ("sliding", "uniform"),
        ("fixed", "exponential"), ("fixed-clock", "exponential"), ("sliding", "exponential"),
        ("bucket", "exponential"))
    odd_header_rate: float = 0.3  # one bulkops run with this share of junk x-ratelimit-* headers
    # The sequential loop's real rows, extrapolated to rate_rows: one PATCH after another is
    # linear in the rows, and all 3,000 would take ~4 minutes of the full run's ~20.
    sequential_rows: int = 1_000
    # 2. overhead
    overhead_rows: int = 20_000
    # 3. scale
    scale_rows: int = 1_000_000
    # 4. resume
    resume_rows: int = 1_000_000
    kill_share: float = 0.2  # kill -9 once this share of the outstanding rows was written
    # 5. faults
    fault_rows: int = 5_000
    fault_latency_ms: float = 20.0
    fault_jitter_ms: float = 5.0
    error_rate: float = 0.05
    drop_rate: float = 0.02
    error_after_write_rate: float = 0.02
    # 6. bulk orders (R = 10/s, as the brief's figures)
    bulk_rate: int = 10
    bulk_rows: int = 10_000
    bulk_patch_rows: int = 300  # PATCH contenders at R = 10/s, extrapolated to bulk_rows
    bulk_stuck_rows: int = 10_000
    order_timeout: float = 15.0
    bulk_stuck_250: bool = True  # the stuck run again with --bulk-size 250
    bulk_killed_rows: int = 100_000  # mixed, 1 % failed by orders, two kill -9s
    bulk_kill_window: tuple[float, float] = (10.0, 40.0)  # seconds after a start: the kill
    bulk_stuck_kill_window: tuple[float, float] = (3.0, 12.0)

    @property
    def label(self) -> str:
        return "quick" if self.quick else "full"


FULL = Sizes(quick=False)
# A quick check (under 3 minutes on 2 shared cores): every scenario runs, smaller, and
# scenario 1 on two limiters at one latency only.
QUICK = Sizes(
    quick=True,
    rate_rows=500,
    rate_kinds=("fixed", "sliding"),
    rate_family=(("fixed-clock", "uniform"), ("sliding", "exponential")),
    rate_latencies_ms=(80.0,),
    sequential_rows=50,
    overhead_rows=3_000,
    scale_rows=100_000,
    resume_rows=30_000,
    fault_rows=1_000,
    bulk_rows=2_000,
    bulk_patch_rows=30,
    bulk_stuck_rows=2_000,
    order_timeout=3.0,
    bulk_stuck_250=False,
    bulk_killed_rows=3_000,
    bulk_kill_window=(2.0, 5.0),
    bulk_stuck_kill_window=(1.0, 3.0),
)


def sizes_for(quick: bool) -> Sizes:
    return QUICK if quick else FULL

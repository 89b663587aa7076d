"""Ablation of the rate limiter's mechanisms on the virtual-clock server family (not a test).

``python -m tests.limiter_ablation`` runs 3,000 requests at R = 100/s through each variant of
the limiter against every server of the family and prints, per variant, the share of R while
writing, the 429s, and the ratio to the best fixed pace with no 429 on that server (that
pace's own share of R, measured the same way: from the second start to the last answer).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

from tests.limiter_kit import (FixedWindow, Server, SlidingWindow, Stalling, TokenBucket,
                               best_fixed_pace, drive, fixed_pace_share, run_virtual)

LIMIT = 100
REQUESTS = 3000
Factory = Callable[..., object]


@dataclass(frozen=True)
class Cell:
    """One server of the family: how it counts, and the latency before it counts."""

    kind: str
    latency: float
    model: str  # "arrival": counted on arrival, the latency after; "uniform" / "exponential": before

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.model}/{self.latency * 1000:g}ms"

    def server(self) -> Server:
        makers: dict[str, Callable[[], Server]] = {
            "fixed": lambda: FixedWindow(limit=LIMIT),
            "fixed-clock": lambda: FixedWindow(limit=LIMIT, aligned=True, phase=0.37),
            "sliding": lambda: SlidingWindow(limit=LIMIT),
            "bucket": lambda: TokenBucket(limit=LIMIT),
            "sliding-stall": lambda: Stalling(SlidingWindow(limit=LIMIT), every=1.3, length=0.03, offset=0.11),
        }
        return makers[self.kind]()

    @property
    def drive_args(self) -> dict[str, object]:
        spread = "exponential" if self.model == "exponential" else "uniform"
        counted_after = 0.02 if self.model == "arrival" else 1.0
        return {"latency": self.latency, "jitter": self.latency / 4, "counted_after": counted_after,
                "spread": spread}


FAMILY = tuple(Cell(kind, latency, model)
               for model in ("arrival", "uniform", "exponential")
               for kind in ("fixed", "fixed-clock", "sliding", "bucket")
               for latency in (0.02, 0.08, 0.2)) + tuple(
    Cell("sliding-stall", latency, "arrival") for latency in (0.02, 0.08, 0.2))


def best(cell: Cell, seed: int) -> float:
    """The best fixed pace's own share of R, measured as the limiter's is (``Run.share_of``)."""
    if cell.kind == "sliding-stall":
        return float("nan")
    args = cell.drive_args
    pace = best_fixed_pace(cell.server, LIMIT, requests=REQUESTS, seed=seed, **args)  # type: ignore[arg-type]
    return fixed_pace_share(pace * LIMIT, LIMIT, requests=REQUESTS, seed=seed,
                            latency=cell.latency, jitter=cell.latency / 4, spread=str(args["spread"]))


def measure(make: Factory, cell: Cell, seed: int) -> tuple[float, int]:
    async def main(clock: object) -> tuple[float, int]:
        limiter = make(clock=clock)
        run = await drive(limiter, clock, cell.server(), requests=REQUESTS, workers=64, seed=seed,  # type: ignore[arg-type]
                          **cell.drive_args)  # type: ignore[arg-type]
        return run.share_of(LIMIT), run.rate_limited

    return run_virtual(main)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="*")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--cells", default="")
    args = parser.parse_args(argv)
    from tests.limiter_variants import VARIANTS

    names = args.variants or list(VARIANTS)
    cells = [c for c in FAMILY if args.cells in c.name]
    bests = {(c, s): best(c, s) for c in cells for s in range(1, args.seeds + 1)}
    print("cell".ljust(34) + "best " + "".join(n[:14].rjust(15) for n in names))
    table: dict[str, list[tuple[Cell, float, int, float]]] = {n: [] for n in names}
    for cell in cells:
        for seed in range(1, args.seeds + 1):
            line = f"{cell.name} s{seed}".ljust(34) + f"{bests[cell, seed]:.3f}"
            for name in names:
                share, refused = measure(VARIANTS[name], cell, seed)
                table[name].append((cell, share, refused, share / bests[cell, seed]))
                line += f"{share:9.3f} {refused:4d} "
            print(line, flush=True)
    print()
    for name in names:
        rows = table[name]
        tight = [s for c, s, r, _ in rows if c.model != "exponential" and c.kind != "sliding-stall"]
        heavy = [q for c, s, r, q in rows if c.model == "exponential"]
        ratios = [q for c, s, r, q in rows if q == q]
        over = sum(1 for c, s, r, _ in rows if r > 0.01 * REQUESTS)
        print(f"{name:16} min share (arrival+uniform) {min(tight, default=0):.3f}  mean ratio {statistics.mean(ratios):.3f}"
              f"  min ratio {min(ratios):.3f}  heavy min ratio {min(heavy) if heavy else 0:.3f}"
              f"  429s {sum(r for _, _, r, _ in rows)}  cells>1% {over}", file=sys.stdout, flush=True)


if __name__ == "__main__":
    main()

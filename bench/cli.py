"""Run bulkops' benchmark scenarios and write bench/RESULTS.md.

``python -m bench [--quick] [--only 1 3] [--output FILE] [--workdir DIR]`` runs the scenarios one after another, prints each table as soon as it is measured, and
rewrites ``bench/RESULTS.md`` after every scenario (so an interrupted run still leaves
what it measured). A missed target prints FAIL but never changes the exit code; a
scenario that could not be measured at all (a crash, a timeout) makes it 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import (drive, scenario_bulk, scenario_faults, scenario_overhead, scenario_rate,
               scenario_resume, scenario_scale)
from .harness import describe
from .results import Machine, ScenarioResult, render
from .sizes import Sizes, sizes_for

Scenario = Callable[[Sizes, Path], ScenarioResult]
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "1": ("Rate-limit efficiency", scenario_rate.run),
    "2": ("Overhead", scenario_overhead.run),
    "3": ("Scale", scenario_scale.run),
    "4": ("Resume", scenario_resume.run),
    "5": ("Faults", scenario_faults.run),
    "6": ("Bulk orders", scenario_bulk.run),
}
DEFAULT_OUTPUT = drive.REPO / "bench" / "RESULTS.md"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes: the whole run takes a few minutes")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), metavar="N",
                        help="run only these scenarios (1-6)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"results file (default {DEFAULT_OUTPUT.relative_to(drive.REPO)})")
    parser.add_argument("--workdir", type=Path,
                        help="keep CSVs, journals and logs here (default: a temporary folder, deleted)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = sizes_for(args.quick)
    words = list(sys.argv[1:] if argv is None else argv)
    machine = Machine.describe(" ".join(["python -m bench", *words]), drive.REPO)
    keys = [k for k in SCENARIOS if args.only is None or k in args.only]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bulkops-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    drive.log_to(workdir / "bulkops.log")
    print(f"bulkops benchmarks ({sizes.label}); files in {workdir}", flush=True)
    results: list[ScenarioResult] = []
    try:
        for key in keys:
            results.append(_run_one(key, sizes, workdir))
            print("\n" + results[-1].markdown(), flush=True)
            _write(args.output, machine, results, complete=False)
    except KeyboardInterrupt:
        _write(args.output, machine, results, complete=False)
        print(f"interrupted; partial results in {args.output}", file=sys.stderr)
        return 130
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    _write(args.output, machine, results, complete=args.only is None)
    print(f"\nresults written to {args.output}")
    return 1 if any(r.error for r in results) else 0


def _run_one(key: str, sizes: Sizes, workdir: Path) -> ScenarioResult:
    title, scenario = SCENARIOS[key]
    print(f"\n== scenario {key}: {title} ({sizes.label}) ...", flush=True)
    started = time.perf_counter()
    try:
        folder = workdir / f"scenario-{key}"
        # Fresh every time: a journal left by an earlier run (--workdir) would be resumed,
        # and a finished job resumed sends nothing: a PASS that measured nothing.
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        return scenario(sizes, folder)
    except Exception as exc:  # a scenario that cannot finish is reported, the others still run
        return ScenarioResult(key, title, "", error=describe(exc),
                              seconds=time.perf_counter() - started)


def _write(path: Path, machine: Machine, results: Sequence[ScenarioResult], *, complete: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(machine, results, complete=complete), encoding="utf-8")
    tmp.replace(path)

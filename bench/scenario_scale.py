"""Scenario 3, scale: a million-row CSV through validation into the journal, in flat memory.

Nothing is sent: this is the part of every run before its first request, and the part
that would need gigabytes if the rows were held in memory. Each contender loads the
same CSV in a child process of its own (``bench/loadchild.py``), whose high-water mark
(``VmHWM``) is its peak RSS. Target: bulkops under 200 MB. The numbers are the seeded
sandbox account's own, written in the mixed formats people paste from spreadsheets, so
every row goes through real parsing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bulkops.sandbox import SandboxConfig
from bulkops.sandbox.demo import written_form
from bulkops.sandbox.seed import generate

from .drive import REPO, cli_env, tail
from .harness import Account, BenchError, describe, say, write_csv
from .results import Check, ScenarioResult, Table, count, seconds
from .sizes import SEED, Sizes

RSS_TARGET = 200 * 2**20
MB = 2**20


@dataclass(frozen=True, slots=True)
class Load:
    name: str
    rows: int
    elapsed: float
    peak_rss: int
    journal_bytes: int | None  # None: the contender keeps no journal


def run(sizes: Sizes, workdir: Path) -> ScenarioResult:
    started = time.perf_counter()
    n = sizes.scale_rows
    csv_path = _make_csv(n, workdir)
    say(f"wrote {csv_path.name}: {count(n)} rows")
    journal = workdir / "scale.journal.db"
    timeout = n / 1_000 + 300  # a healthy load does tens of thousands of rows per second

    loads: list[Load | tuple[str, str]] = []
    for name, argv in (("bulkops (validate + journal)", ["bulkops", str(csv_path), str(journal)]),
                       ("in-memory script", ["script", str(csv_path)])):
        try:
            loads.append(_child(name, argv, timeout, workdir,
                                journal if argv[0] == "bulkops" else None))
        except Exception as exc:  # reported in its row; the other contender still runs
            loads.append((name, describe(exc)))
        last = loads[-1]
        say(f"{name}: " + (last[1] if isinstance(last, tuple) else
                           f"{seconds(last.elapsed)}, peak RSS {last.peak_rss / MB:,.0f} MB"))

    rows = []
    for load in loads:
        if isinstance(load, tuple):
            rows.append((load[0], "ERROR: " + load[1], "-", "-", "-", "-"))
            continue
        per_row = "-" if load.journal_bytes is None else f"{load.journal_bytes / max(load.rows, 1):.0f} B"
        rows.append((load.name, count(load.rows), seconds(load.elapsed),
                     f"{load.rows / load.elapsed:,.0f}", f"{load.peak_rss / MB:,.0f} MB", per_row))
    table = Table(f"{count(n)}-row CSV ({csv_path.stat().st_size / MB:,.0f} MB), no requests",
                  ("contender", "rows", "time", "rows/s", "peak RSS", "journal bytes/row"),
                  tuple(rows))
    checks: list[Check] = []
    mine = loads[0]
    if isinstance(mine, Load):
        checks.append(Check("bulkops peak RSS", f"< {RSS_TARGET // MB} MB",
                            f"{mine.peak_rss / MB:,.0f} MB", mine.peak_rss < RSS_TARGET))
    setup = (f"One child process per contender loads the same {count(n)}-row assign CSV; peak "
             "RSS is the child's own high-water mark (`VmHWM`, interpreter and imports "
             "included), time is from the start of the load to its end. bulkops streams rows through its validation "
             "into a new journal (`Journal.create` + `load_rows`, job left READY); the script "
             "reads the whole file into a list and checks it with phonenumbers and a dict. "
             "Journal bytes count the SQLite file and its WAL after close.")
    return ScenarioResult("3", "Scale", setup, (table,), tuple(checks),
                          seconds=time.perf_counter() - started)


def _make_csv(n: int, workdir: Path) -> Path:
    """The seeded account of a sandbox with ``n`` numbers; every row a change of profile."""
    seed = generate(SandboxConfig(numbers=n, profiles=5, seed=SEED))
    account = Account.from_dump(dict(zip(seed.numbers, seed.assignment)))
    return write_csv(workdir / "scale.csv", account.moves(n), written_form)


def _child(name: str, argv: list[str], timeout: float, workdir: Path, journal: Path | None) -> Load:
    label = argv[0]
    out_path, err_path = workdir / f"{label}.stdout", workdir / f"{label}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "bench.loadchild", *argv], stdout=out,
                                   stderr=err, env=cli_env(), cwd=REPO)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise BenchError(f"the load did not finish within {timeout:g} s") from None
    if code != 0:
        raise BenchError(f"the load exited with code {code}: {tail(err_path)}")
    data = json.loads(out_path.read_text(encoding="utf-8"))
    journal_bytes = None
    if journal is not None:
        journal_bytes = sum(p.stat().st_size for p in journal.parent.glob(journal.name + "*")
                            if not p.name.endswith(".lock"))
    return Load(name, int(data["rows"]), float(data["elapsed"]), int(data["peak_rss_bytes"]),
                journal_bytes)

"""The child process of scenario 3: load one CSV, print what it cost as JSON on stdout.

``python -m bench.loadchild bulkops CSV JOURNAL`` streams the CSV through bulkops'
validation into a real journal (``Journal.create`` + ``load_rows``), exactly as
``bulkops run`` does before its first request. ``python -m bench.loadchild script CSV``
is what a plain script does instead: the whole file in memory, each number normalised
with phonenumbers, a dict to find duplicates. Peak RSS is the child's own high-water
mark (``VmHWM``), measured in a fresh process so nothing the benchmark did before counts.
"""

from __future__ import annotations

import asyncio
import csv
import json
import resource
import sys
import time
import uuid
from pathlib import Path


async def load_with_bulkops(csv_path: Path, journal_path: Path) -> int:
    from bulkops.input.rows import file_sha256
    from bulkops.journal.states import JobState
    from bulkops.journal.store import Journal
    from bulkops.input.loading import load_rows
    from bulkops.models import Kind

    journal = await Journal.create(
        journal_path, kind=Kind.ASSIGN, name=csv_path.stem, job_file=None,
        csv_path=str(csv_path.resolve()), csv_sha256=file_sha256(csv_path),
        default_profile_id=None, settings={},
    )
    try:
        report = await load_rows(journal, 1, Kind.ASSIGN, csv_path, default_profile_id=None,
                                 default_region="US", skip_invalid=False)
        await journal.set_job_state(1, JobState.READY)
    finally:
        await journal.close()
    return report.rows


def load_like_a_script(csv_path: Path) -> int:
    """Everything in memory: the list of rows, then a dict keyed by normalised number."""
    import phonenumbers

    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    targets: dict[str, str] = {}
    for row in rows:
        parsed = phonenumbers.parse(row["phone_number"], "US")
        if not phonenumbers.is_valid_number(parsed):
            raise ValueError(f"invalid number {row['phone_number']!r}")
        profile = str(uuid.UUID(row["messaging_profile_id"]))
        number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if targets.setdefault(number, profile) != profile:
            raise ValueError(f"{number} has two targets")
    return len(rows)


def peak_rss() -> int:
    """This process's peak RSS in bytes: ``VmHWM``, which starts afresh at exec.

    ``ru_maxrss`` would not do: Linux keeps it across fork and exec, so the child would
    report the benchmark parent's size (a million seeded numbers) as its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    if argv[:1] == ["bulkops"] and len(argv) == 3:
        rows = asyncio.run(load_with_bulkops(Path(argv[1]), Path(argv[2])))
    elif argv[:1] == ["script"] and len(argv) == 2:
        rows = load_like_a_script(Path(argv[1]))
    else:
        print("usage: python -m bench.loadchild bulkops CSV JOURNAL | script CSV", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(json.dumps({"rows": rows, "elapsed": elapsed, "peak_rss_bytes": peak_rss()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

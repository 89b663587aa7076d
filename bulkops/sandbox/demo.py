"""Sample CSVs that match a sandbox seed (by default ``SandboxConfig()``: 1000 numbers, 5 profiles).

``sample_csv/`` in the repository is this module's output; regenerate it with
``python -c "import pathlib, bulkops.sandbox as s; s.write_sample_csvs(pathlib.Path('sample_csv'))"``. The five files use disjoint sets of
numbers so the demo can run them in any order, write numbers in the mixed
formats operators paste from spreadsheets, and include a few rows that are
already in place (the runner should skip them).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import SandboxConfig
from .seed import SeedData, generate

ASSIGN_ROWS = 40
ALREADY_IN_PLACE = 3  # assign rows whose number is already on its target profile
DEFAULT_PROFILE_ROWS = 20
UNASSIGN_ROWS = 20


@dataclass(frozen=True, slots=True)
class DemoRow:
    written: str  # the number as it appears in the CSV
    phone_number: str  # the same number in E.164
    profile_id: str  # target profile; "" for unassign
    note: str
    profile_written: str | None = None  # the profile cell when it names the profile by name


@dataclass(frozen=True, slots=True)
class DemoData:
    config: SandboxConfig
    assign: tuple[DemoRow, ...]
    default_profile_id: str  # the profile for assign-default-profile.csv (passed on the command line)
    assign_default: tuple[DemoRow, ...]
    unassign: tuple[DemoRow, ...]
    migrate_from: str
    migrate_to: str
    desired: tuple[DemoRow, ...] = ()  # desired-state.csv, rows of a set job

    def csv_files(self) -> dict[str, str]:
        """File name -> CSV text."""
        return {
            "assign.csv": _csv(
                ("phone_number", "messaging_profile_id", "note"),
                [(r.written, r.profile_id, r.note) for r in self.assign],
            ),
            "assign-default-profile.csv": _csv(("phone_number",), [(r.written,) for r in self.assign_default]),
            "unassign.csv": _csv(("phone_number", "note"), [(r.written, r.note) for r in self.unassign]),
            "migrate.csv": _csv(("from_profile_id", "to_profile_id"), [(self.migrate_from, self.migrate_to)]),
            "desired-state.csv": _csv(
                ("phone_number", "messaging_profile_id", "note"),
                [(r.written, r.profile_id if r.profile_written is None else r.profile_written, r.note)
                 for r in self.desired],
            ),
        }


def _csv(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def written_form(e164: str, style: int) -> str:
    """``+13125550101`` in one of the formats people type (all valid, all US)."""
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    forms = (
        f"+1 ({area}) {exchange}-{line}",
        f"1{area}{exchange}{line}",
        f" {e164} ",
        f"+1-{area}-{exchange}-{line}",
        e164,
        f"+1.{area}.{exchange}.{line}",
        f"1 ({area}) {exchange}-{line}",
    )
    return forms[style % len(forms)]


def demo_data(config: SandboxConfig | None = None) -> DemoData:
    """Rows for the sample CSVs, drawn deterministically from the seed of ``config``."""
    config = config or SandboxConfig()
    seed: SeedData = generate(config)
    profiles = seed.profiles
    if len(profiles) < 3:
        raise ValueError("demo data needs a seed with at least 3 profiles")
    names = {p.id: p.name for p in profiles}
    migrate_from, migrate_to = profiles[-1].id, profiles[min(2, len(profiles) - 2)].id
    targets = [p.id for p in profiles if p.id != migrate_from]
    current = dict(zip(seed.numbers, seed.assignment))
    # Numbers on the migrate source stay out of the other files.
    pool = [n for n in seed.numbers if current[n] != migrate_from]
    taken: set[str] = set()

    def pick(predicate: Callable[[str], bool], count: int) -> list[str]:
        chosen = [n for n in pool if n not in taken and predicate(n)][:count]
        taken.update(chosen)
        return chosen

    assign: list[DemoRow] = []
    for i, number in enumerate(pick(lambda n: current[n] is not None, ALREADY_IN_PLACE)):
        target = current[number] or ""
        assign.append(DemoRow(written_form(number, i), number, target, f"already on {names[target]}: expect skipped"))
    for i, number in enumerate(pick(lambda n: True, ASSIGN_ROWS - ALREADY_IN_PLACE)):
        rotated = targets[i % len(targets) :] + targets[: i % len(targets)]
        target = next(t for t in rotated if t != current[number])
        assign.append(DemoRow(written_form(number, i + ALREADY_IN_PLACE), number, target, f"move to {names[target]}"))
    default_profile_id = targets[0]
    assign_default = [
        DemoRow(written_form(n, i), n, default_profile_id, "")
        for i, n in enumerate(pick(lambda n: current[n] is None, DEFAULT_PROFILE_ROWS))
    ]
    unassign = [
        DemoRow(written_form(n, i), n, "", f"retire from {names[current[n] or '']}")
        for i, n in enumerate(pick(lambda n: current[n] is not None, UNASSIGN_ROWS))
    ]
    desired: list[DemoRow] = []
    plan = (("stays", True, 6), ("stays", False, 4), ("move", True, 8), ("move", False, 6),
            ("take off", True, 6))  # (what, assigned now, how many): 30 rows, 10 in place
    for what, assigned, count in plan:
        for number in pick(lambda n: (current[n] is not None) == assigned, count):
            i, now = len(desired), current[number]
            if what == "stays":
                target, note = now or "", f"stays {'on ' + names[now] if now else 'unassigned'}"
            elif what == "move":
                target = next(t for t in targets[i % len(targets):] + targets if t != now)
                note = f"move to {names[target]}"
            else:
                target, note = "", f"take off {names[now or '']}"
            desired.append(DemoRow(written_form(number, i), number, target, note,
                                   names[target] if target and i % 2 == 0 else None))
    return DemoData(
        config=config,
        assign=tuple(assign),
        default_profile_id=default_profile_id,
        assign_default=tuple(assign_default),
        unassign=tuple(unassign),
        migrate_from=migrate_from,
        migrate_to=migrate_to,
        desired=tuple(desired),
    )


def write_sample_csvs(directory: Path, data: DemoData | None = None) -> list[Path]:
    """Write the four sample CSVs into ``directory`` (created if needed); returns their paths."""
    data = data or demo_data()
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in data.csv_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


"""The sample CSVs in sample_csv/ match the default seed (SandboxConfig())."""

from __future__ import annotations

import csv
from pathlib import Path

import phonenumbers

from bulkops.sandbox import SandboxConfig, demo_data, write_sample_csvs
from bulkops.sandbox.seed import generate

SAMPLES = Path(__file__).resolve().parents[2] / "sample_csv"


def rows(name: str) -> list[dict[str, str]]:
    with (SAMPLES / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def e164(written: str) -> str:
    parsed = phonenumbers.parse(written.strip(), "US")
    assert phonenumbers.is_valid_number(parsed), written
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def test_every_number_and_profile_in_the_sample_csvs_exists_in_the_default_seed() -> None:
    seed = generate(SandboxConfig())
    current = dict(zip(seed.numbers, seed.assignment))
    profiles = {p.id for p in seed.profiles}
    assign = rows("assign.csv")
    default = rows("assign-default-profile.csv")
    unassign = rows("unassign.csv")
    migrate = rows("migrate.csv")
    assert (len(assign), len(default), len(unassign), len(migrate)) == (40, 20, 20, 1)
    for row in assign:
        assert e164(row["phone_number"]) in current
        assert row["messaging_profile_id"] in profiles
    for row in default + unassign:
        assert e164(row["phone_number"]) in current
    assert unassign and all(current[e164(r["phone_number"])] is not None for r in unassign)
    assert {migrate[0]["from_profile_id"], migrate[0]["to_profile_id"]} <= profiles
    assert migrate[0]["from_profile_id"] in current.values()


def test_sample_files_use_disjoint_numbers_in_mixed_formats() -> None:
    files = [rows(n) for n in ("assign.csv", "assign-default-profile.csv", "unassign.csv")]
    numbers = [e164(r["phone_number"]) for f in files for r in f]
    assert len(numbers) == len(set(numbers))
    written = [r["phone_number"] for f in files for r in f]
    assert any(w.startswith("+1 (") for w in written)
    assert any(w.isdigit() for w in written)
    assert any(w != w.strip() for w in written)


def test_sample_files_are_what_demo_data_generates(tmp_path: Path) -> None:
    for path in write_sample_csvs(tmp_path, demo_data()):
        assert path.read_text(encoding="utf-8") == (SAMPLES / path.name).read_text(encoding="utf-8"), path.name


def test_demo_data_marks_rows_already_in_place() -> None:
    data = demo_data()
    seed = generate(SandboxConfig())
    current = dict(zip(seed.numbers, seed.assignment))
    in_place = [r for r in data.assign if current[r.phone_number] == r.profile_id]
    assert len(in_place) == 3
    assert all("skipped" in r.note for r in in_place)
    assert all(current[r.phone_number] is None for r in data.assign_default)

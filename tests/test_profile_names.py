"""Profile names: how a name is matched, refused, and resolved while a CSV is read (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.errors import InputError
from bulkops.input.names import NameProblem, NeedProfiles, ProfileLookup, ProfileNames
from bulkops.input.phone import normalize_profile_ref
from bulkops.input.rows import read_rows
from bulkops.models import UNASSIGNED, Kind, MigrateRow, NumberRow, Problem, Profile

SALES = "30f376fc-040e-4c08-b1c1-5e92618dbf61"
SUPPORT = "11d33ee2-e602-49fb-899c-c6575dbd0644"
ALERTS = "8e6d0042-0187-4899-a856-4d3ea079b28c"
TWIN = "ee3c31e7-b87d-49eb-807e-9bc9c3d9c9c5"
NUMBER = "+13125550101"


PROFILES = ProfileNames.of([Profile(SALES, "Sales"), Profile(SUPPORT, "Customer Support"),
                            Profile(ALERTS, "alerts"), Profile(TWIN, "ALERTS")])


def test_an_exact_name_resolves_to_its_profile() -> None:
    assert PROFILES.resolve("Sales") == SALES
    assert PROFILES.resolve("  Customer Support ") == SUPPORT


def test_an_exact_match_wins_over_a_case_insensitive_one() -> None:
    assert PROFILES.resolve("alerts") == ALERTS
    assert PROFILES.resolve("ALERTS") == TWIN


def test_a_name_in_another_case_resolves_when_only_one_profile_matches() -> None:
    assert PROFILES.resolve("sales") == SALES
    assert PROFILES.resolve("CUSTOMER SUPPORT") == SUPPORT


def test_a_name_two_profiles_share_is_refused_listing_both_ids() -> None:
    with pytest.raises(NameProblem) as caught:
        PROFILES.resolve("Alerts")  # no exact match; two case-insensitive ones
    assert ALERTS in str(caught.value) and TWIN in str(caught.value)
    twins = ProfileNames.of([Profile(SALES, "Sales"), Profile(SUPPORT, "Sales")])
    with pytest.raises(NameProblem, match=f"{SALES}, {SUPPORT}"):
        twins.resolve("Sales")


def test_an_unknown_name_is_refused_with_close_names_suggested() -> None:
    with pytest.raises(NameProblem, match='named "Sale".*did you mean "Sales"'):
        PROFILES.resolve("Sale")
    with pytest.raises(NameProblem, match="bulkops profiles"):
        PROFILES.resolve("Billing")


def test_a_uuid_is_an_id_never_a_name() -> None:
    assert PROFILES.resolve(SALES.upper()) == SALES
    assert PROFILES.resolve(ALERTS) == ALERTS
    unknown = "00000000-0000-4000-8000-000000000000"
    assert PROFILES.resolve(unknown) == unknown  # its existence is checked with the job's profiles


@pytest.mark.parametrize("text", ["Sales", "Two-Factor Auth", "Ventas Méxicó", "  Spaced  "])
def test_names_are_accepted_where_an_id_goes(text: str) -> None:
    assert normalize_profile_ref(text) == text.strip()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("=HYPERLINK(1)", "formula"),
        ("@SUM(A1)", "formula"),
        ("-Sales", "formula"),
        (SALES.replace("-", ""), "not a messaging profile id"),
        (SALES[:-1], "not a messaging profile id"),
        ("Sales\x07", "not a messaging profile id or name"),
        ("x" * 256, "not a messaging profile id or name"),
    ],
)
def test_bad_cells_are_refused_not_taken_as_names(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_profile_ref(text)


def test_the_lookup_asks_for_the_profiles_once_then_resolves() -> None:
    lookup = ProfileLookup()
    with pytest.raises(NeedProfiles):
        lookup.resolve("Sales")
    lookup.load(PROFILES.profiles)
    assert lookup.resolve("Sales") == SALES
    assert lookup.used == {"Sales": SALES}


def test_an_offline_lookup_keeps_names_unchecked() -> None:
    assert ProfileLookup(offline=True).resolve("Sales") == "Sales"


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(text, encoding="utf-8")
    return path


def _read(path: Path, kind: Kind, **kwargs: object) -> list[object]:
    """Rows as the loader sees them: the profiles are listed when first asked for."""
    lookup = ProfileLookup()
    out: list[object] = []
    for entry in read_rows(path, kind, names=lookup, **kwargs):  # type: ignore[arg-type]
        if isinstance(entry, NeedProfiles):
            out.append("listed")
            lookup.load(PROFILES.profiles)
        else:
            out.append(entry)
    return out


def test_csv_cells_name_profiles_and_the_profiles_are_listed_once(tmp_path: Path) -> None:
    path = _csv(tmp_path, f"phone_number,messaging_profile_id\n{NUMBER},{SALES}\n"
                          "+13125550102,Customer Support\n+13125550103,sales\n")
    assert _read(path, Kind.ASSIGN) == [
        NumberRow(2, NUMBER, SALES), "listed", NumberRow(3, "+13125550102", SUPPORT),
        NumberRow(4, "+13125550103", SALES),
    ]


def test_an_unknown_or_shared_name_is_an_error_naming_file_line_and_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, "phone_number,messaging_profile_id\n+13125550102,Billing\n"
                          "+13125550103,Alerts\n")
    problems = [e for e in _read(path, Kind.SET) if isinstance(e, Problem)]
    assert [str(p).split(": ")[0] for p in problems] == [
        f"{path}:2:2 (messaging_profile_id)", f"{path}:3:2 (messaging_profile_id)"]
    assert "Billing" in problems[0].message
    assert ALERTS in problems[1].message and TWIN in problems[1].message


def test_a_set_row_with_an_empty_profile_means_unassigned(tmp_path: Path) -> None:
    path = _csv(tmp_path, "phone_number,messaging_profile_id,type\n"
                          f"{NUMBER},,longcode\n+13125550102,{SUPPORT},longcode\n")
    assert _read(path, Kind.SET) == [
        NumberRow(2, NUMBER, UNASSIGNED, (("type", "longcode"),)),
        NumberRow(3, "+13125550102", SUPPORT, (("type", "longcode"),)),
    ]


def test_a_set_file_needs_the_profile_column_and_takes_no_default(tmp_path: Path) -> None:
    path = _csv(tmp_path, f"phone_number\n{NUMBER}\n")
    with pytest.raises(InputError, match="missing column messaging_profile_id"):
        read_rows(path, Kind.SET)
    with pytest.raises(InputError, match="only applies to assign jobs"):
        read_rows(path, Kind.SET, default_profile_id=SALES)


def test_migrate_rows_name_profiles_and_are_checked_as_ids(tmp_path: Path) -> None:
    path = _csv(tmp_path, f"from_profile_id,to_profile_id\nSales,Customer Support\n{SALES},alerts\n")
    rows = _read(path, Kind.MIGRATE)
    assert rows[:2] == ["listed", MigrateRow(2, SALES, SUPPORT)]
    assert isinstance(rows[2], Problem) and "line 2 already moves" in rows[2].message


def test_a_default_profile_by_name_asks_for_the_profiles_first(tmp_path: Path) -> None:
    path = _csv(tmp_path, f"phone_number\n{NUMBER}\n")
    with pytest.raises(NeedProfiles):
        read_rows(path, Kind.ASSIGN, default_profile_id="Sales", names=ProfileLookup())
    lookup = ProfileLookup()
    lookup.load(PROFILES.profiles)
    rows = list(read_rows(path, Kind.ASSIGN, default_profile_id="Sales", names=lookup))
    assert rows == [NumberRow(2, NUMBER, SALES)]

"""CSV reading and validation: the corpus of broken files, a messy valid file, streaming."""

from __future__ import annotations

import gc
import hashlib
import re
import tomllib
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import pytest

from bulkops.input.header import REQUIRED_COLUMNS
from bulkops.input.rows import file_sha256, read_rows
from bulkops.errors import InputError
from bulkops.models import UNASSIGNED, Kind, MigrateRow, NumberRow, Problem, Severity

DATA = Path(__file__).parent / "data"
BROKEN = DATA / "broken"
MANIFEST: dict[str, dict[str, Any]] = tomllib.loads((BROKEN / "expected.toml").read_text())

P1 = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"
P2 = "9a5e2c1b-7d3f-4e8a-b6c0-1f2e3d4c5b6a"
P3 = "0c6b6f8e-2a1d-4f5e-8b7c-3d9e1a2b4c5d"


def write(tmp_path: Path, text: str, name: str = "numbers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def problems(rows: list[Any]) -> list[Problem]:
    return [r for r in rows if isinstance(r, Problem)]


# --- the broken corpus ------------------------------------------------------------------------


def test_corpus_has_a_manifest_entry_for_every_file_and_enough_files() -> None:
    files = {p.name for p in BROKEN.glob("*.csv")}
    assert files == set(MANIFEST)
    assert len(files) >= 15


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_broken_csv_is_refused_at_the_exact_line(name: str) -> None:
    case = MANIFEST[name]
    path = BROKEN / name
    kind = Kind(case["kind"])
    if case["expect"] == "raises":
        with pytest.raises(InputError) as caught:
            list(read_rows(path, kind))
        message = str(caught.value)
        where = f"{path}:{case['line']}:" if case["line"] else f"{path}: "
        assert message.startswith(where), message
        assert case["message_contains"] in message
    else:
        assert case["expect"] == "yields"
        found = [
            p
            for p in problems(list(read_rows(path, kind)))
            if p.severity is Severity.ERROR and case["message_contains"] in p.message
        ]
        assert len(found) == 1, found
        assert found[0].line == case["line"]
        assert found[0].column == case.get("column")
        assert found[0].path == str(path)


def test_problem_text_names_file_line_column_and_field_and_says_what_to_do(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone_number,messaging_profile_id\n+13125550101,{P1}\n312555,{P1}\n")
    [problem] = problems(list(read_rows(path, Kind.ASSIGN)))
    assert str(problem).startswith(
        f'{path}:3:1 (phone_number): "312555" is not a valid phone number'
    )
    assert "E.164 like +13125550101" in str(problem) and "--default-region" in str(problem)


def test_every_bad_row_is_reported_not_only_the_first(tmp_path: Path) -> None:
    lines = ["phone_number"] + ["+13125550101", "nope", "+13125550102", "12", "=1+1"]
    rows = list(read_rows(write(tmp_path, "\n".join(lines) + "\n"), Kind.UNASSIGN))
    assert [p.line for p in problems(rows)] == [3, 5, 6]
    assert [r.line for r in rows if isinstance(r, NumberRow)] == [2, 4]


# --- valid input ------------------------------------------------------------------------------


def test_messy_but_valid_csv_parses_to_the_expected_rows() -> None:
    rows = list(read_rows(DATA / "messy_valid.csv", Kind.ASSIGN, default_profile_id=P3))
    assert rows == [
        NumberRow(2, "+13125550101", P1, (("Note", "first, with a comma"), ("Region", "IL"))),
        NumberRow(4, "+13125550102", P1, (("Note", "plain"), ("Region", "IL"))),
        NumberRow(6, "+13125550103", P3, (("Note", "a note\r\nover two lines"), ("Region", "IL"))),
        NumberRow(8, "+13125550104", P2, (("Note", 'say "hi"'), ("Region", "IL"))),
        NumberRow(10, "+13125550105", P2, (("Note", ""), ("Region", "IL"))),
        NumberRow(11, "+13125550106", P2, (("Note", "last row has no line break"), ("Region", ""))),
    ]


def test_default_profile_fills_rows_when_the_column_is_absent(tmp_path: Path) -> None:
    path = write(tmp_path, "Phone Number,note\n+13125550101,a\n3125550102,b\n")
    rows = list(read_rows(path, Kind.ASSIGN, default_profile_id=P1.upper()))
    assert rows == [
        NumberRow(2, "+13125550101", P1, (("note", "a"),)),
        NumberRow(3, "+13125550102", P1, (("note", "b"),)),
    ]


def test_a_profile_cell_overrides_the_default_and_short_rows_count_as_empty_cells(
    tmp_path: Path,
) -> None:
    text = f"phone_number,messaging_profile_id,note\n+13125550101,{P2}\n+13125550102\n"
    path = write(tmp_path, text)
    rows = list(read_rows(path, Kind.ASSIGN, default_profile_id=P1))
    assert [(r.line, r.profile_id) for r in rows if isinstance(r, NumberRow)] == [(2, P2), (3, P1)]
    assert not problems(rows)


def test_unassign_ignores_a_profile_column_with_one_warning_for_the_file(tmp_path: Path) -> None:
    body = "".join(f"{P1},+1312555010{i}\n" for i in range(5))
    path = write(tmp_path, "messaging_profile_id,phone_number\n" + body)
    rows = list(read_rows(path, Kind.UNASSIGN))
    [warning] = problems(rows)
    assert warning.severity is Severity.WARNING
    assert (warning.line, warning.column, warning.field) == (1, 1, "messaging_profile_id")
    numbers = [r for r in rows if isinstance(r, NumberRow)]
    assert len(numbers) == 5
    assert all(r.profile_id == UNASSIGNED for r in numbers)


def test_unassign_rows_carry_the_unassigned_marker(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone_number,messaging_profile_id\n+13125550101,{P1}\n+13125550102,\n")
    rows = list(read_rows(path, Kind.UNASSIGN))
    assert [(r.phone_number, r.profile_id) for r in rows if isinstance(r, NumberRow)] == [
        ("+13125550101", UNASSIGNED),
        ("+13125550102", UNASSIGNED),
    ]
    assert [p.severity for p in problems(rows)] == [Severity.WARNING]


def test_migrate_rows_are_canonical_and_keep_extras(tmp_path: Path) -> None:
    path = write(tmp_path, f"From_Profile_ID,to-profile-id,why\n{{{P1.upper()}}},{P2},merge\n")
    assert list(read_rows(path, Kind.MIGRATE)) == [MigrateRow(2, P1, P2, (("why", "merge"),))]


def test_migrate_repeated_identical_pair_is_a_warning_and_kept_once(tmp_path: Path) -> None:
    path = write(tmp_path, f"from_profile_id,to_profile_id\n{P1},{P2}\n{P1},{P2}\n")
    rows = list(read_rows(path, Kind.MIGRATE))
    assert rows[0] == MigrateRow(2, P1, P2)
    assert len(rows) == 2 and isinstance(rows[1], Problem)
    assert rows[1].severity is Severity.WARNING and rows[1].line == 3


def test_migrate_into_an_earlier_source_is_a_chain_error_on_the_target(tmp_path: Path) -> None:
    path = write(tmp_path, f"from_profile_id,to_profile_id\n{P2},{P3}\n{P1},{P2}\n")
    rows = list(read_rows(path, Kind.MIGRATE))
    assert rows[0] == MigrateRow(2, P2, P3)
    [problem] = problems(rows)
    assert (problem.line, problem.column, problem.severity) == (3, 2, Severity.ERROR)
    assert "line 2 chain two moves" in problem.message


def test_duplicate_numbers_are_left_to_the_journal(tmp_path: Path) -> None:
    text = f"phone_number,messaging_profile_id\n+13125550101,{P1}\n+13125550101,{P2}\n"
    path = write(tmp_path, text)
    assert len([r for r in read_rows(path, Kind.ASSIGN) if isinstance(r, NumberRow)]) == 2


def test_header_only_file_yields_no_rows_and_one_warning(tmp_path: Path) -> None:
    rows = list(read_rows(write(tmp_path, "phone_number\r\n\r\n"), Kind.UNASSIGN))
    assert len(rows) == 1 and isinstance(rows[0], Problem)
    assert rows[0].severity is Severity.WARNING and "no data rows" in rows[0].message


def test_surplus_empty_cells_from_trailing_commas_are_accepted(tmp_path: Path) -> None:
    rows = list(read_rows(write(tmp_path, "phone_number\n+13125550101,,\n"), Kind.UNASSIGN))
    assert rows == [NumberRow(2, "+13125550101", UNASSIGNED)]


def test_required_columns_are_the_documented_ones() -> None:
    assert REQUIRED_COLUMNS == {
        Kind.ASSIGN: ("phone_number", "messaging_profile_id"),
        Kind.UNASSIGN: ("phone_number",),
        Kind.MIGRATE: ("from_profile_id", "to_profile_id"),
        Kind.SET: ("phone_number", "messaging_profile_id"),
    }


# --- whole-file and argument errors ----------------------------------------------------------


def test_header_problems_raise_when_read_rows_is_called_not_later(tmp_path: Path) -> None:
    path = write(tmp_path, "label\n+13125550101\n")
    with pytest.raises(InputError, match="missing column phone_number"):
        read_rows(path, Kind.UNASSIGN)


def test_missing_file_and_folder_raise_input_errors_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_rows(tmp_path / "nope.csv", Kind.ASSIGN)
    with pytest.raises(InputError, match="is a folder"):
        read_rows(tmp_path, Kind.ASSIGN)
    with pytest.raises(InputError, match="no such file"):
        file_sha256(tmp_path / "nope.csv")


def test_bad_default_profile_region_or_kind_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "phone_number\n+13125550101\n")
    with pytest.raises(InputError, match="--profile-id.*not a messaging profile id"):
        read_rows(path, Kind.ASSIGN, default_profile_id=P1[:-1])
    with pytest.raises(InputError, match="only applies to assign jobs"):
        read_rows(path, Kind.UNASSIGN, default_profile_id=P1)
    with pytest.raises(InputError, match="not a region code"):
        read_rows(path, Kind.UNASSIGN, default_region="XX")
    with pytest.raises(ValueError, match="not read from a CSV"):
        read_rows(path, Kind.ROLLBACK)


def test_missing_profile_column_suggests_a_default_but_never_unassign(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_rows(write(tmp_path, "phone_number,note\n+13125550101,x\n"), Kind.ASSIGN)
    assert "--profile-id" in str(caught.value)
    assert "unassign" not in str(caught.value)


def test_a_line_without_line_breaks_over_1_mib_raises_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "phone_number\n+13125550101\n" + "x" * (1024 * 1024 + 10))
    rows = read_rows(path, Kind.UNASSIGN)
    assert next(rows) == NumberRow(2, "+13125550101", UNASSIGNED)
    with pytest.raises(InputError, match=re.escape(f"{path}:3: the line is longer than 1 MiB")):
        next(rows)


def test_an_abandoned_reader_closes_its_file(tmp_path: Path) -> None:
    rows = read_rows(write(tmp_path, "phone_number\n+13125550101\n"), Kind.UNASSIGN)  # file open
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del rows
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # an unclosed file warns


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = write(tmp_path, "phone_number\n" + "+13125550101\n" * 1000)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# --- streaming ------------------------------------------------------------------------------


def test_reading_200k_rows_keeps_memory_flat(tmp_path: Path) -> None:
    # One column keeps allocations per row (and so tracemalloc's overhead) low; the peak is
    # what matters: a reader that loaded the file would peak above its size.
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("phone_number\n")
        for block in range(200):
            f.writelines(f"+1312{555 + block:03d}{i:04d}\n" for i in range(1000))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for row in read_rows(path, Kind.UNASSIGN) if isinstance(row, NumberRow))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert peak < size / 20, (peak, size)

"""Reading a campaign-link CSV (bulkops.input.campaigns): rows, the US long-code check, the
campaign cell and --campaign-id, duplicates, and the header and file errors."""

from __future__ import annotations

import re
from pathlib import Path

import phonenumbers
import pytest

from bulkops.errors import InputError
from bulkops.input.campaigns import (
    NO_CAMPAIGN, CampaignRow, account_problem, normalize_campaign_id, read_campaign_rows,
    US_REGIONS, us_long_code_problem,
)
from bulkops.models import NumberState, Problem, Severity

C1 = "4b300178-131c-d902-d54e-72d90ba1620j"
C2 = "5cfba30c-5d2f-4a4f-849d-5a11979faf21"
US = "+13125550101"
US2 = "+14155550123"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "links.csv"
    path.write_text(text, encoding="utf-8")
    return path


def read(path: Path, **kwargs: object) -> list[CampaignRow | Problem]:
    return list(read_campaign_rows(path, **kwargs))  # type: ignore[arg-type]


def rows_of(entries: list[CampaignRow | Problem]) -> list[CampaignRow]:
    return [e for e in entries if isinstance(e, CampaignRow)]


def problems_of(entries: list[CampaignRow | Problem], severity: Severity = Severity.ERROR) -> list[Problem]:
    return [e for e in entries if isinstance(e, Problem) and e.severity is severity]


def test_each_row_names_a_number_and_its_campaign_and_an_empty_cell_removes_the_link(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone_number,campaign_id,note\n{US},{C1},a\n(415) 555-0123,,b\n")
    assert read(path) == [
        CampaignRow(2, US, C1, (("note", "a"),)),
        CampaignRow(3, US2, NO_CAMPAIGN, (("note", "b"),)),
    ]


def test_campaign_id_for_every_row_needs_no_column(tmp_path: Path) -> None:
    path = write(tmp_path, f"Phone Number\n{US}\n{US2}\n")
    assert [(r.phone_number, r.campaign_id) for r in rows_of(read(path, default_campaign=C2))] == [
        (US, C2), (US2, C2)]


def test_campaign_id_and_a_campaign_column_together_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone_number,campaign_id\n{US},{C1}\n")
    with pytest.raises(InputError, match="drop --campaign-id to use the column, or remove the column"):
        read_campaign_rows(path, default_campaign=C2)


def test_a_bad_campaign_id_option_is_refused_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone_number\n{US}\n")
    with pytest.raises(InputError, match="--campaign-id: .* is not a 10DLC campaign id"):
        read_campaign_rows(path, default_campaign="not a campaign!")


def test_a_number_named_twice_with_two_campaigns_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone_number,campaign_id\n{US},{C1}\n{US2},{C1}\n+1 312 555 0101,{C2}\n")
    (problem,) = problems_of(read(path))
    assert problem.line == 4 and problem.field == "campaign_id" and problem.column == 2
    assert problem.message == (
        f"line 2 links {US} to campaign {C1} and this line to campaign {C2}; a number takes one "
        "campaign: keep line 2 or line 4")
    assert str(problem).startswith(f"{path}:4:2 (campaign_id): ")


def test_a_removal_and_a_link_of_the_same_number_conflict(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone_number,campaign_id\n{US},\n{US},{C1}\n")
    (problem,) = problems_of(read(path))
    assert "no campaign (an empty cell)" in problem.message and f"campaign {C1}" in problem.message


def test_a_number_named_twice_with_the_same_campaign_is_a_warning_and_read_once(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone_number,campaign_id\n{US},{C1}\n{US},{C1}\n")
    entries = read(path)
    assert [r.line for r in rows_of(entries)] == [2]
    (warning,) = problems_of(entries, Severity.WARNING)
    assert warning.line == 3 and "duplicates line 2" in warning.message


def test_the_duplicate_check_can_be_left_to_the_caller(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone_number,campaign_id\n{US},{C1}\n{US},{C2}\n")
    assert len(rows_of(read(path, check_duplicates=False))) == 2


@pytest.mark.parametrize("number, why", [
    ("+18005550199", "toll-free"),
    ("+14165550123", "a CA number"),
    ("+18765550123", "a JM number"),
    ("+33612345678", "not a US number"),
    ("+19005550123", "premium-rate"),
])
def test_numbers_that_are_not_us_long_codes_are_refused_with_the_reason(
        tmp_path: Path, number: str, why: str) -> None:
    path = write(tmp_path, f"phone_number,campaign_id\n{number},{C1}\n{US},{C1}\n")
    entries = read(path)
    (problem,) = problems_of(entries)
    assert problem.line == 2 and problem.field == "phone_number"
    assert why in problem.message and "10DLC campaigns take US long codes only" in problem.message
    assert [r.phone_number for r in rows_of(entries)] == [US]


def test_the_long_code_check_agrees_with_phonenumbers_across_the_exchange_cache() -> None:
    for number in ("+13125550101", "+13125559999", "+18005550100", "+18335551234", "+16475550100",
                   "+12425550100", "+13125550102", "+17875550123", "+16715550123"):
        parsed = phonenumbers.parse(number)
        expected = (phonenumbers.region_code_for_number(parsed) in US_REGIONS
                    and phonenumbers.number_type(parsed) in (phonenumbers.PhoneNumberType.FIXED_LINE,
                                                             phonenumbers.PhoneNumberType.MOBILE,
                                                             phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE))
        assert (us_long_code_problem(number) is None) == expected, number


@pytest.mark.parametrize("cell, why", [
    ("=HYPERLINK(1)", "spreadsheet formula"),
    ("campaign one", "is not a 10DLC campaign id"),
    ("x" * 65, "is not a 10DLC campaign id"),
])
def test_bad_campaign_cells_are_refused_quoting_the_cell(tmp_path: Path, cell: str, why: str) -> None:
    path = write(tmp_path, f'phone_number,campaign_id\n{US},"{cell}"\n')
    (problem,) = problems_of(read(path))
    assert problem.field == "campaign_id" and why in problem.message


def test_numbers_of_us_territories_count_as_us_long_codes() -> None:
    assert us_long_code_problem("+17875550123") is None  # Puerto Rico
    assert us_long_code_problem("+16715550123") is None  # Guam


def test_campaign_ids_keep_their_case_and_lose_outer_spaces() -> None:
    assert normalize_campaign_id(f"  {C1.upper()} ") == C1.upper()
    assert normalize_campaign_id("CCAMPA1") == "CCAMPA1"


def test_a_row_with_a_bad_number_and_a_bad_campaign_gets_both_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "phone_number,campaign_id\n555-01,bad id\n")
    assert [p.field for p in problems_of(read(path))] == ["phone_number", "campaign_id"]


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty; it needs a header line phone_number,campaign_id"),
    (f"{US},{C1}\n", "this looks like data, not a header"),
    (f"number,campaign_id\n{US},{C1}\n", "missing column phone_number"),
    (f"phone_number\n{US}\n", "missing column campaign_id; the header is \"phone_number\" and needs "
                              "phone_number,campaign_id, or give one campaign for every row with --campaign-id"),
    (f"phone_number,campaign_id,campaignId\n{US},{C1},{C1}\n", "the column campaign_id appears twice"),
])
def test_header_problems_stop_before_any_row(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match="^" + re.escape(f"{tmp_path / 'links.csv'}:")) as refused:
        read_campaign_rows(write(tmp_path, text))
    assert message in str(refused.value)


def test_the_job_readers_csv_handling_applies(tmp_path: Path) -> None:
    path = write(tmp_path, f'phone_number,campaign_id\n{US},"{C1}\n')
    with pytest.raises(InputError, match="never closed; add the closing quote"):
        read(path)
    too_many = write(tmp_path, f"phone_number,campaign_id\n{US},{C1},extra\n")
    (problem,) = problems_of(read(too_many))
    assert "3 cells but the header has 2" in problem.message
    empty = write(tmp_path, "phone_number,campaign_id\n")
    (warning,) = problems_of(read(empty), Severity.WARNING)
    assert "no data rows" in warning.message


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_campaign_rows(tmp_path / "nope.csv")


def test_the_account_view_refuses_numbers_it_lacks_or_that_are_on_no_profile() -> None:
    assert account_problem(US, NumberState(US, "3fa85f64-5717-4562-b3fc-2c963f66afa6")) is None
    assert "not on this Telnyx account" in (account_problem(US, None) or "")
    assert "on no messaging profile" in (account_problem(US, NumberState(US, None)) or "")

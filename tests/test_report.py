"""The per-row CSV report, read back from a real journal file."""

from __future__ import annotations

import csv
from pathlib import Path

from bulkops.journal.store import Journal
from bulkops.models import Kind, NumberRow, Problem
from bulkops.report import REPORT_COLUMNS, rejected_line, write_report

P_A = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"


async def _journal(path: Path, rows: list[NumberRow]) -> Journal:
    journal = await Journal.create(path, kind=Kind.ASSIGN, name="report", job_file=None,
                                   csv_path="/data/in.csv", csv_sha256="ab" * 32,
                                   default_profile_id=None, settings={})
    await journal.stage_rows(1, rows)
    await journal.finish_staging(1)
    return journal


async def test_the_report_keeps_extra_columns_and_defuses_spreadsheet_formulas(tmp_path: Path) -> None:
    rows = [
        NumberRow(2, "+13125550001", P_A, (("ticket", "T-1"), ("note", "not mine"))),
        NumberRow(3, "+13125550002", P_A, (("ticket", "=HYPERLINK(\"x\")"),)),
        NumberRow(4, "+13125550003", P_A),
    ]
    async with await _journal(tmp_path / "j.db", rows) as journal:
        await journal.add_rejected(1, [Problem("/data/in.csv", 5, "not a phone number", column=1)])
        result = await write_report(journal, 1, tmp_path / "report.csv")
    with (tmp_path / "report.csv").open(newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == [*REPORT_COLUMNS, "input_ticket", "input_note"]  # input columns prefixed
    report = [dict(zip(lines[0], line)) for line in lines[1:]]
    assert result.rows == len(report) == 4
    assert [r["input_ticket"] for r in report] == ["T-1", "'=HYPERLINK(\"x\")", "", ""]
    assert report[0]["note"] == "" and report[0]["input_note"] == "not mine"  # neither overwrites
    assert [(r["line"], r["final_state"], r["attempts"]) for r in report] == [
        ("2", "pending", "0"), ("3", "pending", "0"), ("4", "pending", "0"), ("5", "rejected", "0")]
    assert "not a phone number" in report[3]["error_detail"]


async def test_an_empty_job_still_gets_a_header_row(tmp_path: Path) -> None:
    async with await _journal(tmp_path / "j.db", []) as journal:
        result = await write_report(journal, 1, tmp_path / "report.csv")
    assert result.rows == 0
    assert (tmp_path / "report.csv").read_text(encoding="utf-8").splitlines() == [
        ",".join(REPORT_COLUMNS)]


def test_a_rejected_rows_cells_are_written_so_a_spreadsheet_does_not_run_them() -> None:
    problem = Problem("a.csv", 3, "not a phone number", cells=(
        ("phone_number", '=HYPERLINK("x")'), ("messaging_profile_id", "@SUM(A1)"), ("note", "-1")))

    values, extra = rejected_line([problem])

    line = dict(zip(REPORT_COLUMNS, values))
    assert line["phone_number"] == """'=HYPERLINK("x")""" and line["desired_profile_id"] == "'@SUM(A1)"
    assert extra == (("note", "-1"),)  # the input_* cells are made inert where they are written

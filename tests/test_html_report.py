"""The run at a glance: the HTML report, loaded offline in a real headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bulkops import htmlreport
from bulkops.errors import ExitCode
from bulkops.execute import report_path_for
from bulkops.htmlreport import write_html_report
from bulkops.journal.records import SeriesPoint
from bulkops.journal.states import ItemState
from bulkops.journal.store import Journal
from bulkops.models import ApiErrorInfo, Kind
from bulkops.sandbox import Sandbox

from tests.browser_kit import open_page
from tests.harness import cli_env, run_cli
from tests.jobhelpers import other_profile, run, write_csv
from tests.journal_kit import loaded, num, upd

PAGE_FACTS = """JSON.stringify({
  charts: Array.from(document.querySelectorAll('svg.chart')).map(s => s.dataset.chart),
  counts: Object.fromEntries(Array.from(document.querySelectorAll('[data-count]'))
          .map(td => [td.dataset.count, Number(td.textContent)])),
  rows: document.querySelectorAll('#rows tbody tr').length,
  failedRows: Array.from(document.querySelectorAll('#rows tbody tr[data-state=failed]'))
          .map(tr => tr.children[1].textContent),
  groups: Array.from(document.querySelectorAll('tr.failure-group')).map(tr => tr.textContent),
  next: Array.from(document.querySelectorAll('#next code')).map(c => c.textContent),
  capped: document.getElementById('rows-capped') ? document.getElementById('rows-capped').textContent : null,
  facts: document.getElementById('facts').textContent
})"""


async def _facts(path: Path) -> tuple[dict[str, Any], list[str], list[str]]:
    async with open_page(path) as page:
        facts: dict[str, Any] = json.loads(await page.evaluate(PAGE_FACTS))
        return facts, page.errors, page.requests


async def test_a_run_writes_the_html_report_beside_the_csv_and_the_browser_shows_charts_counts_and_failed_lines(
        sandbox: Sandbox, tmp_path: Path) -> None:
    good = sandbox.numbers()[:30]
    missing = [num(9000 + i) for i in range(4)]  # valid E.164, not on this account: failed unsent
    rows = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in good]
    rows += [(n, sandbox.profile_ids()[0]) for n in missing]
    rows.append(("</script><script>alert(1)</script>", sandbox.profile_ids()[0]))  # rejected
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], rows)

    result = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db", skip_invalid=True,
                       concurrency=2)

    assert result.exit_code is ExitCode.FAILED_ROWS
    assert result.html_path == report_path_for(tmp_path / "a.db", 1, "html")
    assert result.report_path is not None and result.html_path.parent == result.report_path.parent
    facts, errors, requests = await _facts(result.html_path)
    assert errors == []
    assert requests == [result.html_path.resolve().as_uri()]  # the file itself, nothing fetched
    assert {"rate", "throttling", "failures"} <= set(facts["charts"])
    assert facts["counts"] == {"done": 30, "failed": 4, "skipped": 0, "pending": 0,
                               "rejected": 1, "total": 34}
    assert sorted(facts["failedRows"]) == sorted(missing)
    group, rejected = facts["groups"]
    assert "not on this account" in group and missing[0] in group and "rejected" in rejected
    assert any(c.startswith("bulkops retry-failed --journal") for c in facts["next"])
    assert "exit code 3" in str(facts["facts"])


async def test_the_report_command_writes_html_to_the_path_asked_for(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:8]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
    await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db")

    done = await run_cli(["report", "--journal", tmp_path / "a.db", "--format", "html",
                          "--output", tmp_path / "page.html"], env=cli_env())

    assert done.returncode == 0, done.stderr
    assert f"report: {tmp_path / 'page.html'}" in done.stdout
    facts, errors, _ = await _facts(tmp_path / "page.html")
    assert errors == [] and facts["counts"]["done"] == 8
    assert any(c.startswith("bulkops rollback --journal") for c in facts["next"])


async def _ten_thousand(path: Path) -> Journal:
    """A journal of 10,000 rows, one in five failed with a Telnyx error, and an hour's series."""
    journal = await loaded(path, 10_000)
    error = ApiErrorInfo(422, "10015", "Invalid messaging profile",
                         "The messaging profile is not usable for this number: " + "x" * 80)
    for i in range(10_000):
        journal.record(upd(i, ItemState.PENDING, ItemState.IN_FLIGHT))
        journal.record(upd(i, ItemState.IN_FLIGHT, ItemState.FAILED if i % 5 == 0 else
                           ItemState.DONE, attempts=1, http_status=422 if i % 5 == 0 else 200,
                           error=error if i % 5 == 0 else None))
    await journal.flush()
    start = 1_800_000_000
    for s in range(0, 3600, 2):
        await journal.add_point(1, SeriesPoint(start + s, 2, requests=6, answers_2xx=5,
                                               answers_4xx=1, done=2, failed=1, rate_limit=3.0))
    return journal


async def test_ten_thousand_rows_make_a_page_of_at_most_3_mb_that_shows_every_failed_line(
        tmp_path: Path) -> None:
    journal = await _ten_thousand(tmp_path / "big.db")
    try:
        page = await write_html_report(journal, 1, tmp_path / "big.html")
    finally:
        await journal.close()

    assert page.rows == page.lines == 10_000
    assert page.size <= 3 * 1024 * 1024, page.size
    facts, errors, _ = await _facts(tmp_path / "big.html")
    assert errors == []
    assert len(facts["failedRows"]) == 2_000 and facts["rows"] == 2_000
    assert facts["capped"] is None


async def test_a_bigger_job_holds_its_failures_and_a_capped_sample_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(htmlreport, "ALL_ROWS", 1_000)
    monkeypatch.setattr(htmlreport, "SAMPLE_CAP", 100)
    journal = await _ten_thousand(tmp_path / "big.db")
    try:
        page = await write_html_report(journal, 1, tmp_path / "big.html")
    finally:
        await journal.close()

    assert page.lines == 10_000 and page.rows == 2_000 + 100
    facts, errors, _ = await _facts(tmp_path / "big.html")
    assert errors == [] and len(facts["failedRows"]) == 2_000
    assert "10000 report lines" in str(facts["capped"]) and "CSV report has every line" in str(
        facts["capped"])

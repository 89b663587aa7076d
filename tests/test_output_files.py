"""Output files (issue #23, "Files"): no output flag destroys a file bulkops did not write.

Every output flag (report --output, plan --output, run --dry-run --plan-output, export
--output, and the report a run writes by itself) refuses a journal, an input of the job and
any file bulkops did not write, before anything is written (exit 2, the file byte-identical);
--force lets it replace the last kind only. A file bulkops wrote is replaced as before.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.outputs import sidecar_of
from bulkops.sandbox import Sandbox
from tests.harness import CliResult, assert_clean_error, cli_env, run_cli
from tests.jobhelpers import other_profile, write_csv

ASSIGN = ["phone_number", "messaging_profile_id"]


def _csv(sandbox: Sandbox, path: Path, count: int = 5) -> Path:
    rows = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in sandbox.numbers()[:count]]
    return write_csv(path, ASSIGN, rows)


async def _cli(sandbox: Sandbox, *args: str | Path) -> CliResult:
    return await run_cli([*args], env=cli_env(sandbox.api_key))


async def _ran_job(sandbox: Sandbox, tmp_path: Path) -> tuple[Path, Path]:
    csv_path, journal = _csv(sandbox, tmp_path / "a.csv"), tmp_path / "a.db"
    done = await _cli(sandbox, "run", "--kind", "assign", "--csv", csv_path, "--journal", journal,
                      "--base-url", sandbox.base_url, "--yes")
    assert done.returncode == 0, done.describe()
    return csv_path, journal


def _bytes(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


async def test_report_output_onto_the_journal_the_csv_or_a_foreign_file_is_refused_byte_identical(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path, journal = await _ran_job(sandbox, tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("my own notes\n", encoding="utf-8")
    wal_like = tmp_path / "a.db.lock"  # the journal's own lock file
    before = _bytes(csv_path, journal, notes, wal_like)

    onto_journal = await _cli(sandbox, "report", "--journal", journal, "--output", journal)
    onto_csv = await _cli(sandbox, "report", "--journal", journal, "--output", csv_path, "--force")
    onto_journal_forced = await _cli(sandbox, "report", "--journal", journal, "--output", journal,
                                     "--force", "--format", "json")
    onto_lock = await _cli(sandbox, "report", "--journal", journal, "--output", wal_like, "--force")
    onto_notes = await _cli(sandbox, "report", "--journal", journal, "--output", notes)
    onto_folder = await _cli(sandbox, "report", "--journal", journal, "--output", tmp_path)

    assert_clean_error(onto_journal, 2, "is the journal", "nothing was written")
    assert_clean_error(onto_csv, 2, "is the job's CSV")
    assert_clean_error(onto_journal_forced, 2, "is the journal")
    assert_clean_error(onto_lock, 2, "belongs to the journal")
    assert_clean_error(onto_notes, 2, "bulkops did not write it", "--force")
    assert_clean_error(onto_folder, 2, "is a folder")
    assert _bytes(csv_path, journal, notes, wal_like) == before
    assert "untouched" not in onto_journal.output  # it never claims what it did not check


async def test_a_copy_of_the_journal_under_another_name_is_refused_as_a_journal(
        sandbox: Sandbox, tmp_path: Path) -> None:
    _, journal = await _ran_job(sandbox, tmp_path)
    copy = tmp_path / "backup-of-a.csv"  # a journal copied under a name that looks like a report
    copy.write_bytes(journal.read_bytes())
    before = copy.read_bytes()

    result = await _cli(sandbox, "report", "--journal", journal, "--output", copy, "--force")

    assert_clean_error(result, 2, "is a bulkops journal")
    assert copy.read_bytes() == before


async def test_force_replaces_a_foreign_file_and_a_report_bulkops_wrote_is_replaced_without_it(
        sandbox: Sandbox, tmp_path: Path) -> None:
    _, journal = await _ran_job(sandbox, tmp_path)
    out = tmp_path / "out.csv"
    out.write_text("not a report\n", encoding="utf-8")

    forced = await _cli(sandbox, "report", "--journal", journal, "--output", out, "--force")
    again = await _cli(sandbox, "report", "--journal", journal, "--output", out)

    assert forced.returncode == 0 and again.returncode == 0, forced.describe() + again.describe()
    assert out.read_text(encoding="utf-8").startswith("line,phone_number")
    assert sidecar_of(out).is_file()


async def test_a_report_edited_after_bulkops_wrote_it_is_no_longer_replaced(
        sandbox: Sandbox, tmp_path: Path) -> None:
    _, journal = await _ran_job(sandbox, tmp_path)
    out = tmp_path / "r.csv"
    first = await _cli(sandbox, "report", "--journal", journal, "--output", out)
    assert first.returncode == 0, first.describe()
    with out.open("a", encoding="utf-8") as handle:
        handle.write("my comment about line 3\n")  # the operator's edit
    edited = out.read_bytes()

    result = await _cli(sandbox, "report", "--journal", journal, "--output", out)

    assert_clean_error(result, 2, "or it was changed since")
    assert out.read_bytes() == edited


async def test_plan_and_dry_run_refuse_the_csv_job_file_and_key_file_before_any_request(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path = _csv(sandbox, tmp_path / "edited.csv")
    job = tmp_path / "job.toml"
    job.write_text(f'kind = "assign"\ncsv = "{csv_path.name}"\n', encoding="utf-8")
    key_file = tmp_path / "key.txt"
    key_file.write_text(sandbox.api_key + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    before = _bytes(csv_path, job, key_file)
    base = ["--base-url", sandbox.base_url]

    results = [
        await _cli(sandbox, "plan", "--kind", "assign", "--csv", csv_path, "--output", csv_path, *base),
        await _cli(sandbox, "plan", job, "--output", csv_path, "--force", *base),
        await _cli(sandbox, "plan", job, "--output", job, *base),
        await _cli(sandbox, "run", "--dry-run", job, "--plan-output", csv_path, *base),
        await _cli(sandbox, "run", "--dry-run", job, "--plan-output", job, "--force", *base),
        await run_cli(["plan", job, "--output", key_file, "--force", "--api-key-file", key_file, *base],
                      env=cli_env()),
    ]

    expected = ["the job's CSV", "the job's CSV", "the job file", "the job's CSV", "the job file",
                "the API key file"]
    for result, what in zip(results, expected, strict=True):
        assert_clean_error(result, 2, what)
    assert _bytes(csv_path, job, key_file) == before
    assert sandbox.stats.total_requests == 0


async def test_a_plan_over_an_earlier_plan_is_replaced_and_over_a_foreign_file_only_with_force(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path = _csv(sandbox, tmp_path / "a.csv")
    default_plan = tmp_path / "a.plan.csv"
    base: list[str | Path] = ["--kind", "assign", "--csv", csv_path, "--base-url", sandbox.base_url]

    first = await _cli(sandbox, "plan", *base)
    second = await _cli(sandbox, "plan", *base)  # its own earlier plan: replaced
    mine = tmp_path / "mine.csv"
    mine.write_text("phone_number\n+15550000000\n", encoding="utf-8")
    refused = await _cli(sandbox, "run", "--dry-run", *base, "--plan-output", mine)
    kept = mine.read_text(encoding="utf-8")
    forced = await _cli(sandbox, "run", "--dry-run", *base, "--plan-output", mine, "--force")

    assert first.returncode == 0 and second.returncode == 0, first.describe() + second.describe()
    assert default_plan.read_text(encoding="utf-8").startswith("line,phone_number,current_profile_id")
    assert_clean_error(refused, 2, "bulkops did not write it")
    assert kept == "phone_number\n+15550000000\n"
    assert forced.returncode == 0, forced.describe()
    assert mine.read_text(encoding="utf-8").startswith("line,phone_number,current_profile_id")


async def test_run_force_without_a_plan_output_is_refused_before_anything(
        sandbox: Sandbox, tmp_path: Path) -> None:
    csv_path = _csv(sandbox, tmp_path / "a.csv")

    result = await _cli(sandbox, "run", "--kind", "assign", "--csv", csv_path, "--yes", "--force",
                        "--base-url", sandbox.base_url)

    assert_clean_error(result, 2, "--force of run goes with --dry-run --plan-output")
    assert sandbox.stats.total_requests == 0


async def test_export_refuses_a_journal_and_an_edited_export_and_replaces_its_own(
        sandbox: Sandbox, tmp_path: Path) -> None:
    _, journal = await _ran_job(sandbox, tmp_path)
    requests_before = sandbox.stats.total_requests
    journal_bytes = journal.read_bytes()
    export = tmp_path / "numbers.csv"
    base = ["--base-url", sandbox.base_url]

    onto_journal = await _cli(sandbox, "export", "--output", journal, "--force", *base)
    assert sandbox.stats.total_requests == requests_before  # refused before any request
    first = await _cli(sandbox, "export", "--output", export, *base)
    again = await _cli(sandbox, "export", "--output", export, *base)  # a nightly export
    lines = export.read_text(encoding="utf-8").splitlines()
    export.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")  # edited into a job CSV
    edited = export.read_bytes()
    onto_edited = await _cli(sandbox, "export", "--output", export, *base)

    assert_clean_error(onto_journal, 2, "is a bulkops journal")
    assert journal.read_bytes() == journal_bytes
    assert first.returncode == 0 and again.returncode == 0, first.describe() + again.describe()
    assert_clean_error(onto_edited, 2, "bulkops did not write it")
    assert export.read_bytes() == edited


@pytest.mark.parametrize("csv_name", ["a.report.csv"])
async def test_a_run_whose_report_path_is_its_own_csv_keeps_the_csv_and_reports_beside_it(
        sandbox: Sandbox, tmp_path: Path, csv_name: str) -> None:
    csv_path = _csv(sandbox, tmp_path / csv_name)  # the report of journal a.db would be a.report.csv
    before = csv_path.read_bytes()

    result = await _cli(sandbox, "run", "--kind", "assign", "--csv", csv_path, "--journal",
                        tmp_path / "a.db", "--base-url", sandbox.base_url, "--yes")
    resumed = await _cli(sandbox, "run", "--kind", "assign", "--csv", csv_path, "--journal",
                         tmp_path / "a.db", "--base-url", sandbox.base_url, "--yes")

    assert result.returncode == 0, result.describe()
    assert csv_path.read_bytes() == before
    assert "a.report-2.csv" in result.stdout
    assert (tmp_path / "a.report-2.csv").read_text(encoding="utf-8").startswith("line,")
    assert resumed.returncode == 0, resumed.describe()  # the CSV is intact: resuming works


async def test_demo_never_replaces_a_csv_of_the_operator_in_its_workdir(tmp_path: Path) -> None:
    mine = tmp_path / "sample_csv" / "assign.csv"
    mine.parent.mkdir()
    mine.write_text("phone_number,messaging_profile_id\n+13125550101,Sales\n", encoding="utf-8")
    before = mine.read_bytes()

    result = await run_cli(["demo", "--workdir", tmp_path], env=cli_env())

    assert_clean_error(result, 2, "bulkops did not write it", "or move the file away")
    assert "--force" not in result.stderr  # demo has none
    assert mine.read_bytes() == before

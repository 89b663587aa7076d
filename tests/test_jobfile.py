"""Job files: the examples load, every mistake names its line and key, {date} rendering."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bulkops.errors import InputError
from bulkops.input.jobfile import JobFile, load_job_file, render_journal_path
from bulkops.models import Kind

REPO = Path(__file__).resolve().parent.parent
JOBS = REPO / "jobs"
P1 = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"


def job(tmp_path: Path, text: str, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        load_job_file(path)
    return str(caught.value)


# --- valid files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "csv"),
    [
        ("assign-example.toml", Kind.ASSIGN, "assign.csv"),
        ("unassign-example.toml", Kind.UNASSIGN, "unassign.csv"),
        ("migrate-example.toml", Kind.MIGRATE, "migrate.csv"),
        ("nightly-reassign.toml", Kind.ASSIGN, "assign.csv"),
    ],
)
def test_example_job_files_load(name: str, kind: Kind, csv: str) -> None:
    loaded = load_job_file(JOBS / name)
    assert loaded.kind is kind
    assert loaded.name == name.removesuffix(".toml")
    assert loaded.csv == REPO / "sample_csv" / csv
    journal = loaded.journal_path(date(2026, 3, 4))
    assert journal is not None and journal.parent == JOBS / "journals"


def test_nightly_example_gets_one_journal_per_day() -> None:
    loaded = load_job_file(JOBS / "nightly-reassign.toml")
    expected = JOBS / "journals" / "nightly-reassign-2026-03-04.db"
    assert loaded.journal_path(date(2026, 3, 4)) == expected
    assert loaded.skip_invalid is True and loaded.default_region == "US"


def test_full_job_file_loads_every_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    path = job(folder, f"""
name = "batch-7"
kind = "ASSIGN"
csv = "../data/numbers.csv"
profile_id = "{{{P1.upper()}}}"
journal = "journals/batch-{{date}}.db"
default_region = "ca"
verify = true
skip_invalid = false

[limits]
rate = 50
concurrency = 16
max_attempts = 5
max_retry_seconds = 300
max_server_wait = 900.5
""")
    monkeypatch.chdir(REPO)  # paths resolve against the job file's folder, not the cwd
    assert load_job_file(path) == JobFile(
        path=path,
        name="batch-7",
        kind=Kind.ASSIGN,
        csv=(tmp_path / "data" / "numbers.csv").resolve(),
        profile_id=P1,
        journal="journals/batch-{date}.db",
        rate=50.0,
        concurrency=16,
        max_attempts=5,
        max_retry_seconds=300.0,
        max_server_wait=900.5,
        default_region="CA",
        verify=True,
        skip_invalid=False,
    )


def test_minimal_job_file_takes_its_name_from_the_file(tmp_path: Path) -> None:
    loaded = load_job_file(job(tmp_path, 'kind = "unassign"\ncsv = "n.csv"\n', "night.toml"))
    assert loaded.name == "night"
    assert loaded.csv == (tmp_path / "n.csv").resolve()
    assert loaded.journal is None and loaded.rate is None and loaded.verify is None
    assert loaded.journal_path(date(2026, 1, 1)) is None


# --- errors name the line and the key ------------------------------------------------------------


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = job(tmp_path, 'kind = "assign"\ncsv = "a.csv"\nrate = 5 per second\n')
    message = refused(path)
    assert message.startswith(f"{path}:3: not valid TOML")


def test_a_key_set_twice_names_the_second_line(tmp_path: Path) -> None:
    path = job(tmp_path, 'kind = "assign"\ncsv = "a.csv"\ncsv = "b.csv"\n')
    assert refused(path).startswith(f"{path}:3: not valid TOML (a key is set twice)")


def test_unknown_key_names_its_line_and_lists_the_valid_ones(tmp_path: Path) -> None:
    path = job(tmp_path, 'kind = "assign"\ncsv = "a.csv"\n\nprofle_id = "x"\n')
    message = refused(path)
    assert message.startswith(f"{path}:4: profle_id: unknown key")
    assert "profile_id" in message and "default_region" in message and "[limits]" in message


def test_unknown_limit_names_its_line(tmp_path: Path) -> None:
    path = job(tmp_path, 'kind = "assign"\ncsv = "a.csv"\n[limits]\nrate = 5\nburst = 10\n')
    message = refused(path)
    assert message.startswith(f"{path}:5: limits.burst: unknown limit")
    assert "max_server_wait" in message


def test_a_limit_at_the_top_level_says_to_move_it_under_limits(tmp_path: Path) -> None:
    path = job(tmp_path, 'kind = "assign"\nrate = 5\ncsv = "a.csv"\n')
    assert refused(path).startswith(f"{path}:2: rate: belongs in the [limits] table")


def test_a_top_level_key_written_after_limits_says_to_move_it_up(tmp_path: Path) -> None:
    path = job(tmp_path, 'kind = "assign"\n[limits]\nrate = 5\ncsv = "a.csv"\n')
    assert refused(path).startswith(f"{path}:4: limits.csv: belongs at the top of the file")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'concurrency = "16"',
            "limits.concurrency: must be a whole number without quotes, got '16' (a string)",
        ),
        ("concurrency = 0", "limits.concurrency: must be a whole number from 1 to 1,000"),
        ("concurrency = true", "limits.concurrency: must be a whole number"),
        ("max_attempts = 2.5", "limits.max_attempts: must be a whole number"),
        ("rate = 0", "limits.rate: must be a number from 0.1 to 10,000"),
        ("rate = 0.001", "limits.rate: must be a number from 0.1 to 10,000"),
        ("timeout = 1", "limits.timeout: unknown limit"),
        ("order_timeout = 0", "limits.order_timeout: must be a number above 0"),
        ("bulk_size = 1e9", "limits.bulk_size: must be a whole number from 1 to 100,000"),
        ("max_server_wait = -inf", "limits.max_server_wait: must be a number from 0 to 86,400"),
        ("rate = inf", "limits.rate: must be a number"),
        ("rate = nan", "limits.rate: must be a number"),
        ("max_retry_seconds = -1", "limits.max_retry_seconds: must be a number from 0 to 86,400"),
        ('max_server_wait = "15m"', "limits.max_server_wait: must be a number"),
    ],
)
def test_wrong_limit_types_and_ranges_name_line_and_key(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = job(tmp_path, f'kind = "assign"\ncsv = "a.csv"\n[limits]\n{line}\n')
    assert refused(path).startswith(f"{path}:4: {expected}")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('verify = "yes"', "verify: must be true or false"),
        ("skip_invalid = 1", "skip_invalid: must be true or false"),
        ("name = 7", "name: must be a non-empty string"),
        ('journal = ""', "journal: must be a non-empty string"),
        ('journal = "j/{user}.db"', "journal: '{user}' is not a placeholder"),
        ('journal = "j/{date.db"', "journal: '{' is not a placeholder"),
        ('default_region = "USA"', 'default_region: "USA" is not a region code'),
        ('profile_id = "4001767e-ce0f-4cae-9d5f"', 'profile_id: "4001767e-ce0f-4cae-9d5f" is not a messaging profile id'),
        ("limits = 5", "limits: must be a table"),
    ],
)
def test_wrong_top_level_values_name_line_and_key(tmp_path: Path, line: str, expected: str) -> None:
    path = job(tmp_path, f'kind = "assign"\ncsv = "a.csv"\n{line}\n')
    assert refused(path).startswith(f"{path}:3: {expected}")


def test_bad_kind_names_the_line_and_the_valid_kinds(tmp_path: Path) -> None:
    path = job(tmp_path, 'csv = "a.csv"\nkind = "move"\n')
    assert refused(path) == (
        f"{path}:2: kind: 'move' is not a job kind; use assign, unassign, migrate or set"
    )


def test_rollback_kind_points_at_the_rollback_command(tmp_path: Path) -> None:
    path = job(tmp_path, 'csv = "a.csv"\nkind = "rollback"\n')
    assert "bulkops rollback" in refused(path)


def test_missing_kind_or_csv_says_what_to_add(tmp_path: Path) -> None:
    assert 'add kind = "assign"' in refused(job(tmp_path, 'csv = "a.csv"\n'))
    assert "add csv = " in refused(job(tmp_path, 'kind = "migrate"\n'))


def test_profile_id_is_refused_outside_assign_jobs(tmp_path: Path) -> None:
    path = job(tmp_path, f'kind = "migrate"\ncsv = "m.csv"\nprofile_id = "{P1}"\n')
    assert refused(path).startswith(f"{path}:3: profile_id: only applies to assign jobs")


@pytest.mark.parametrize(
    ("lines", "line", "key"),
    [
        ('api_key = "sk-secret-value-123"', 3, "api_key"),
        ('Telnyx-Token = "sk-secret-value-123"', 3, "Telnyx-Token"),
        ('[limits]\nrate = 5\nauth_token = "sk-secret-value-123"', 5, "limits.auth_token"),
        ('name = "KEY0123456789ABCDEFGHIJ_abcdefghij"', 3, "name"),
    ],
)
def test_an_api_key_in_the_file_is_refused_without_echoing_it(
    tmp_path: Path, lines: str, line: int, key: str
) -> None:
    path = job(tmp_path, f'kind = "assign"\ncsv = "a.csv"\n{lines}\n')
    message = refused(path)
    assert message.startswith(f"{path}:{line}: {key}: an API key must not be in a job file")
    assert "TELNYX_API_KEY" in message and "--api-key-file" in message
    assert "sk-secret" not in message and "KEY0123" not in message


def test_unreadable_job_files_raise_input_errors(tmp_path: Path) -> None:
    assert "no such job file" in refused(tmp_path / "missing.toml")
    assert "is a folder" in refused(tmp_path)
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'kind = "assign"\nname = "caf\xe9"\n')
    assert refused(path).startswith(f"{path}:2: the job file is not UTF-8")


# --- journal templates ------------------------------------------------------------------------


def test_render_journal_path_fills_date_relative_to_the_base_dir(tmp_path: Path) -> None:
    rendered = render_journal_path("journals/{date}/run-{date}.db", tmp_path, date(2026, 12, 31))
    assert rendered == tmp_path / "journals" / "2026-12-31" / "run-2026-12-31.db"


def test_render_journal_path_keeps_absolute_templates(tmp_path: Path) -> None:
    absolute = str(tmp_path / "j-{date}.db")
    rendered = render_journal_path(absolute, Path("/elsewhere"), date(2026, 1, 2))
    assert rendered == tmp_path / "j-2026-01-02.db"


@pytest.mark.parametrize("template", ["j-{day}.db", "j-{}.db", "j-{{date}}.db", "j-}.db", " "])
def test_render_journal_path_refuses_other_braces_and_empty_templates(template: str) -> None:
    with pytest.raises(InputError, match="journal path"):
        render_journal_path(template, Path("."), date(2026, 1, 2))

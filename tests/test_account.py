"""`bulkops profiles`, `bulkops export`, profile names and `--kind set`, through the CLI.

Every test runs `python -m bulkops.cli` in a child process against a sandbox on loopback and
compares what bulkops wrote or did with the sandbox's own state (``sandbox.dump()``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from bulkops.sandbox import Sandbox, SandboxConfig, running_sandbox
from bulkops.sandbox.seed import TOLL_FREE_CODES
from tests.contract.spec import validate_exchange
from tests.harness import CliResult, assert_clean_error, cli_env, mode_of, read_report, run_cli
from tests.jobhelpers import patches, write_csv
from tests.sandbox.sandbox_http import Api

EXPORT_HEADER = ["phone_number", "messaging_profile_id", "messaging_profile_name", "type",
                 "messaging_product"]


async def cli(sandbox: Sandbox, *args: str | Path) -> CliResult:
    return await run_cli([*args, "--base-url", sandbox.base_url], env=cli_env(sandbox.api_key))


def names_of(sandbox: Sandbox) -> dict[str, str]:
    """Profile id -> name, as the sandbox holds them."""
    return {p.id: p.name for p in sandbox.state.profiles()}


async def export_rows(sandbox: Sandbox, path: Path, *args: str) -> list[dict[str, str]]:
    result = await cli(sandbox, "export", "--output", path, *args)
    assert result.returncode == 0, result.describe()
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == EXPORT_HEADER
        return list(reader)


def as_state(rows: Sequence[dict[str, str]]) -> dict[str, str | None]:
    return {r["phone_number"]: r["messaging_profile_id"] or None for r in rows}


def is_toll_free(number: str) -> bool:
    return int(number[2:5]) in TOLL_FREE_CODES


async def test_profiles_lists_every_profile_with_its_number_count(sandbox: Sandbox) -> None:
    result = await cli(sandbox, "profiles", "--json")
    assert result.returncode == 0, result.describe()
    listed = {p["id"]: (p["name"], p["numbers"]) for p in json.loads(result.stdout)["profiles"]}
    dump, names = sandbox.dump(), names_of(sandbox)
    assert listed == {pid: (name, sum(1 for p in dump.values() if p == pid))
                      for pid, name in names.items()}
    table = await cli(sandbox, "profiles")
    assert table.returncode == 0 and all(name in table.stdout for name in names.values())


async def test_an_export_of_the_whole_account_equals_its_state(tmp_path: Path) -> None:
    # 600 numbers: three pages of 250; 260 profiles: two pages of profiles to name them all
    async with running_sandbox(SandboxConfig(numbers=600, profiles=260, seed=3)) as sandbox:
        out = tmp_path / "account.csv"
        rows = await export_rows(sandbox, out)
        assert as_state(rows) == sandbox.dump()
        assert len(rows) == len(sandbox.dump())  # no number twice
        names = names_of(sandbox)
        assert len(names) == 260
        assert all(r["messaging_profile_name"] == names.get(r["messaging_profile_id"], "")
                   for r in rows)
        assert any(r["messaging_profile_name"] == names[sandbox.profile_ids()[-1]] for r in rows)
        assert {r["type"] for r in rows} == {"longcode", "tollfree"}
        assert all((r["type"] == "tollfree") == is_toll_free(r["phone_number"]) for r in rows)
        assert mode_of(out) == 0o600
        # no temp file left; the sidecar records the export as bulkops' own (issue 23)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".account.csv.bulkops", "account.csv"]


async def test_export_by_profile_id_by_name_unassigned_and_by_type(sandbox: Sandbox, tmp_path: Path) -> None:
    dump = sandbox.dump()
    first, second = sandbox.profile_ids()[:2]
    by_id = await export_rows(sandbox, tmp_path / "a.csv", "--profile", first)
    assert as_state(by_id) == {n: p for n, p in dump.items() if p == first}
    names = names_of(sandbox)
    by_name = await export_rows(sandbox, tmp_path / "b.csv", "--profile", names[first],
                                "--profile", second)
    assert as_state(by_name) == {n: p for n, p in dump.items() if p in (first, second)}
    unassigned = await export_rows(sandbox, tmp_path / "c.csv", "--unassigned")
    assert as_state(unassigned) == {n: None for n, p in dump.items() if p is None}
    assert unassigned and all(r["messaging_profile_id"] == "" for r in unassigned)
    toll_free = await export_rows(sandbox, tmp_path / "d.csv", "--type", "tollfree")
    assert as_state(toll_free) == {n: p for n, p in dump.items() if is_toll_free(n)}
    digits = next(iter(dump))[5:9]
    contains = await export_rows(sandbox, tmp_path / "e.csv", "--contains", digits,
                                 "--unassigned", "--profile", first)
    assert as_state(contains) == {n: p for n, p in dump.items()
                                  if digits in n and p in (None, first)}


async def test_export_to_stdout_as_json(sandbox: Sandbox) -> None:
    result = await cli(sandbox, "export", "--output", "-", "--format", "json", "--type", "tollfree")
    assert result.returncode == 0, result.describe()
    records = json.loads(result.stdout)
    assert {r["phone_number"]: r["messaging_profile_id"] or None for r in records} == {
        n: p for n, p in sandbox.dump().items() if is_toll_free(n)}
    assert all(list(r) == EXPORT_HEADER for r in records)


async def test_export_refuses_unknown_profiles_and_bad_filters_before_writing(
        sandbox: Sandbox, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    assert_clean_error(await cli(sandbox, "export", "--output", out, "--profile", "Nobody"), 2,
                       'named "Nobody"')
    missing = "00000000-0000-4000-8000-000000000000"
    assert_clean_error(await cli(sandbox, "export", "--output", out, "--profile", missing), 2,
                       missing)
    assert_clean_error(await cli(sandbox, "export", "--output", out, "--contains", "12a"), 2)
    assert_clean_error(await cli(sandbox, "export", "--output", tmp_path / "no" / "x.csv"), 2)
    assert list(tmp_path.iterdir()) == []


async def test_export_and_profiles_requests_and_answers_are_in_the_spec(tmp_path: Path) -> None:
    async with running_sandbox(SandboxConfig(numbers=300, profiles=3, seed=5, record=True)) as sandbox:
        first = sandbox.profile_ids()[0]
        for args in (["profiles"], ["export", "--output", tmp_path / "a.csv"],
                     ["export", "--output", tmp_path / "b.csv", "--profile", first, "--type",
                      "longcode", "--contains", "555"]):
            result = await cli(sandbox, *args)
            assert result.returncode == 0, result.describe()
        assert len(sandbox.recorded) > 5
        for exchange in sandbox.recorded:
            validate_exchange(exchange)


async def test_names_in_csv_cells_are_resolved_and_the_report_shows_both(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:3]
    first, second = sandbox.profile_ids()[:2]
    names = names_of(sandbox)
    path = write_csv(tmp_path / "named.csv", ["phone_number", "messaging_profile_id"],
                     [(numbers[0], names[first]), (numbers[1], names[second].upper()),
                      (numbers[2], first)])
    journal = tmp_path / "named.db"
    result = await cli(sandbox, "run", "--kind", "assign", "--csv", path, "--journal", journal, "--yes")
    assert result.returncode == 0, result.describe()
    dump = sandbox.dump()
    assert [dump[n] for n in numbers] == [first, second, first]
    report = read_report(tmp_path / "named.report.csv")
    assert [(r["desired_profile_id"], r["desired_profile_name"]) for r in report] == [
        (first, names[first]), (second, names[second]), (first, names[first])]
    as_json = await run_cli(["report", "--journal", journal, "--format", "json", "--output",
                             tmp_path / "named.json"], env=cli_env())
    assert as_json.returncode == 0, as_json.describe()
    rows = json.loads((tmp_path / "named.json").read_text())["rows"]
    assert [r["desired_profile_name"] for r in rows] == [names[first], names[second], names[first]]


async def test_unknown_and_shared_names_are_refused_naming_file_line_and_ids(
        sandbox: Sandbox, tmp_path: Path) -> None:
    first = sandbox.profile_ids()[0]
    name = names_of(sandbox)[first]
    async with Api.open(sandbox) as api:
        twin = (await api.request("POST", "/messaging_profiles", json={
            "name": name, "whitelisted_destinations": ["US"]})).data["id"]
    numbers = sandbox.numbers()[:2]
    path = write_csv(tmp_path / "bad.csv", ["phone_number", "messaging_profile_id"],
                     [(numbers[0], "No Such Profile"), (numbers[1], name)])
    before = sandbox.dump()
    result = await cli(sandbox, "run", "--kind", "set", "--csv", path, "--yes")
    assert_clean_error(result, 2, f"{path}:2:2 (messaging_profile_id)", '"No Such Profile"',
                       f"{path}:3:2 (messaging_profile_id)", first, twin)
    assert sandbox.dump() == before and patches(sandbox) == 0
    flag = await cli(sandbox, "run", "--kind", "assign", "--csv", path, "--profile-id", "Nobody")
    assert_clean_error(flag, 2, 'named "Nobody"')


async def test_profile_id_option_job_file_and_migrate_rows_take_names(
        sandbox: Sandbox, tmp_path: Path) -> None:
    first, second, third = sandbox.profile_ids()[:3]
    names = names_of(sandbox)
    dump = sandbox.dump()
    unassigned = [n for n, p in dump.items() if p is None][:2]
    csv_path = write_csv(tmp_path / "default.csv", ["phone_number"], [(unassigned[0],)])
    result = await cli(sandbox, "run", "--kind", "assign", "--csv", csv_path, "--profile-id",
                       names[first], "--yes")
    assert result.returncode == 0, result.describe()
    write_csv(tmp_path / "job.csv", ["phone_number"], [(unassigned[1],)])
    job = tmp_path / "job.toml"
    job.write_text(f'kind = "assign"\ncsv = "job.csv"\nprofile_id = "{names[second]}"\n')
    result = await cli(sandbox, "run", job, "--yes")
    assert result.returncode == 0, result.describe()
    moving = [n for n, p in sandbox.dump().items() if p == third]
    migrate = write_csv(tmp_path / "migrate.csv", ["from_profile_id", "to_profile_id"],
                        [(names[third], names[first])])
    result = await cli(sandbox, "run", "--kind", "migrate", "--csv", migrate, "--yes")
    assert result.returncode == 0, result.describe()
    after = sandbox.dump()
    assert (after[unassigned[0]], after[unassigned[1]]) == (first, second)
    assert moving and all(after[n] == first for n in moving) and third not in after.values()


async def test_a_set_job_makes_the_account_equal_its_csv_and_a_second_run_writes_nothing(
        sandbox: Sandbox, tmp_path: Path) -> None:
    profiles = sandbox.profile_ids()
    names = names_of(sandbox)
    numbers = sandbox.numbers()[:40]
    # every row somewhere: a profile by id, by name, or unassigned (empty)
    desired = {n: (None if i % 4 == 0 else profiles[i % len(profiles)]) for i, n in enumerate(numbers)}
    cells = [(n, "" if p is None else (names[p] if i % 2 else p))
             for i, (n, p) in enumerate(desired.items())]
    path = write_csv(tmp_path / "desired.csv", ["phone_number", "messaging_profile_id"], cells)
    result = await cli(sandbox, "run", "--kind", "set", "--csv", path, "--yes", "--json")
    assert result.returncode == 0, result.describe()
    dump = sandbox.dump()
    assert {n: dump[n] for n in numbers} == desired
    writes = patches(sandbox)
    again = await cli(sandbox, "run", "--kind", "set", "--csv", path, "--journal",
                      tmp_path / "again.db", "--yes", "--json")
    assert again.returncode == 0, again.describe()
    assert patches(sandbox) == writes
    assert json.loads(again.stdout)["counts"]["skipped"] == len(numbers)


async def test_round_trip_profiles_export_edit_plan_run_rollback(sandbox: Sandbox, tmp_path: Path) -> None:
    listed = json.loads((await cli(sandbox, "profiles", "--json")).stdout)["profiles"]
    target = listed[1]["name"]
    before = sandbox.dump()
    exported = tmp_path / "account.csv"
    rows = await export_rows(sandbox, exported)
    # edit as in a spreadsheet: five numbers to a profile by name, three unassigned
    edited = tmp_path / "edited.csv"
    moved: list[str] = []
    cleared: list[str] = []
    for row in rows:
        if len(moved) < 5 and row["messaging_profile_name"] != target:
            row["messaging_profile_id"], row["messaging_profile_name"] = target, ""
            moved.append(row["phone_number"])
        elif len(cleared) < 3 and row["messaging_profile_id"]:
            row["messaging_profile_id"] = ""
            cleared.append(row["phone_number"])
    with edited.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, EXPORT_HEADER)
        writer.writeheader()
        writer.writerows(rows)
    journal = tmp_path / "edited.db"
    plan = await cli(sandbox, "plan", "--kind", "set", "--csv", edited, "--output", tmp_path / "plan.csv")
    assert plan.returncode == 0, plan.describe()
    assert patches(sandbox) == 0 and sandbox.dump() == before
    run = await cli(sandbox, "run", "--kind", "set", "--csv", edited, "--journal", journal, "--yes")
    assert run.returncode == 0, run.describe()
    target_id = listed[1]["id"]
    after = sandbox.dump()
    assert all(after[n] == target_id for n in moved) and all(after[n] is None for n in cleared)
    assert {n: p for n, p in after.items() if n not in moved + cleared} == {
        n: p for n, p in before.items() if n not in moved + cleared}
    assert patches(sandbox) == len(moved) + len(cleared)
    back = await cli(sandbox, "rollback", "--journal", journal, "--yes")
    assert back.returncode == 0, back.describe()
    assert sandbox.dump() == before


def test_listing_pages_without_meta_are_read_on_until_an_empty_page() -> None:
    from bulkops.telnyx.answers import account_page, profiles_page

    item = {"phone_number": "+13125550101", "messaging_profile_id": None, "type": "longcode"}
    numbers, pages, total = account_page({"data": [item]})
    assert (numbers[0].profile_id, numbers[0].type, numbers[0].messaging_product) == (None, "longcode", "")
    assert pages > 1 and total == 0  # read on; the empty page ends it
    assert account_page({"data": []})[1:] == (0, 0)
    assert profiles_page({"data": [], "meta": {"total_pages": 0, "total_results": 0, "page_size": 250,
                                               "page_number": 1}}) == ([], 0)

"""Short codes (issue 19): a profile moves whole, short codes named in rows, rollback, report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bulkops.config import Secret
from bulkops.errors import InputError
from bulkops.account import ExportQuery
from bulkops.jobs import (
    JobRequest, export_numbers, list_profiles, plan_job, retry_failed, rollback, run_job,
)
from bulkops.journal.states import ItemState
from bulkops.models import Kind, Resource
from bulkops.plan import PlanSummary
from bulkops.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.harness import CANARY_KEY, assert_no_key_in_files, read_report
from tests.jobhelpers import journal_items, patches, run, settings_for, write_csv

SHORT_CODE_PATCH = "PATCH /v2/short_codes/{id}"
SHORT_CODE_GET = "GET /v2/short_codes/{id}"


def codes_on(sandbox: Sandbox, profile: str | None) -> list[str]:
    return sorted(code for code, owner in sandbox.short_codes().items() if owner == profile)


def numbers_on(sandbox: Sandbox, profile: str | None) -> list[str]:
    return sorted(n for n, owner in sandbox.dump().items() if owner == profile)


async def test_migrate_moves_the_profiles_numbers_and_short_codes_and_nothing_else(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=200, profiles=3, short_codes=12, seed=3,
                               api_key=CANARY_KEY) as sandbox:
        source, target, other = sandbox.profile_ids()
        moving_numbers, moving_codes = numbers_on(sandbox, source), codes_on(sandbox, source)
        assert moving_numbers and len(moving_codes) >= 3
        before_numbers, before_codes = sandbox.dump(), sandbox.short_codes()
        csv_path = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"],
                             [[source, target]])
        result = await run(sandbox, Kind.MIGRATE, csv_path, tmp_path / "m.db", mode="patch")
        assert result.exit_code == 0
        assert result.counts.get(ItemState.DONE) == len(moving_numbers) + len(moving_codes)
        assert codes_on(sandbox, source) == [] and numbers_on(sandbox, source) == []
        assert {c for c, p in sandbox.short_codes().items() if p == target} == \
            set(moving_codes) | {c for c, p in before_codes.items() if p == target}
        # nothing else changed: every other number and short code is where it was
        assert {n: p for n, p in sandbox.dump().items() if n not in moving_numbers} == \
            {n: p for n, p in before_numbers.items() if n not in moving_numbers}
        assert {c: p for c, p in sandbox.short_codes().items() if c not in moving_codes} == \
            {c: p for c, p in before_codes.items() if c not in moving_codes}
        assert sandbox.stats.count(route=SHORT_CODE_PATCH) == len(moving_codes)  # one PATCH each
        # each read before its write (the snapshot) and read back after it
        assert sandbox.stats.count(route=SHORT_CODE_GET) == 2 * len(moving_codes)
        lines = [r for r in read_report(tmp_path / "m.report.csv") if r["resource"] == "short_code"]
        assert sorted(r["phone_number"] for r in lines) == moving_codes  # a report line each
        assert {(r["prior_profile_id"], r["desired_profile_id"], r["final_state"])
                for r in lines} == {(source, target, "done")}
        assert assert_no_key_in_files(tmp_path)  # journal, report: no key anywhere


async def test_rollback_puts_numbers_and_short_codes_back(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=120, profiles=3, short_codes=9, seed=5) as sandbox:
        source, target, _ = sandbox.profile_ids()
        before_numbers, before_codes = sandbox.dump(), sandbox.short_codes()
        csv_path = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"],
                             [[source, target]])
        assert (await run(sandbox, Kind.MIGRATE, csv_path, tmp_path / "m.db")).exit_code == 0
        assert codes_on(sandbox, source) == []
        undone = await rollback(tmp_path / "m.db", settings_for(sandbox), Secret(sandbox.api_key))
        assert undone.exit_code == 0
        assert sandbox.dump() == before_numbers
        assert sandbox.short_codes() == before_codes


async def test_leave_short_codes_moves_the_numbers_alone(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=120, profiles=3, short_codes=9, seed=5) as sandbox:
        source, target, _ = sandbox.profile_ids()
        before_codes = sandbox.short_codes()
        csv_path = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"],
                             [[source, target]])
        result = await run(sandbox, Kind.MIGRATE, csv_path, tmp_path / "m.db",
                           leave_short_codes=True)
        assert result.exit_code == 0
        assert numbers_on(sandbox, source) == []
        assert sandbox.short_codes() == before_codes
        assert sandbox.stats.count(route="GET /v2/messaging_profiles/{id}/short_codes") == 0
        items = await journal_items(tmp_path / "m.db")
        assert all(i.resource is Resource.PHONE_NUMBER for i in items.values())


async def test_the_plan_counts_the_short_codes_it_will_move(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=120, profiles=3, short_codes=9, seed=5) as sandbox:
        source, target, _ = sandbox.profile_ids()
        codes = codes_on(sandbox, source)
        csv_path = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"],
                             [[source, target]])
        request = JobRequest(Kind.MIGRATE, csv_path, tmp_path / "m.db", "m")
        result = await plan_job(request, settings_for(sandbox), Secret(sandbox.api_key))
        assert result.plan is not None
        assert result.plan.short_codes == len(codes)
        assert f"and {len(codes)} short codes" in result.plan.question()
        assert sandbox.stats.count(route=SHORT_CODE_PATCH) == 0
        planned = read_report(tmp_path / "m.plan.csv")
        assert sorted(r["phone_number"] for r in planned if r["resource"] == "short_code") == codes


async def test_assign_and_unassign_rows_name_short_codes_by_typed_digits_or_uuid(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=60, profiles=3, short_codes=6, seed=2) as sandbox:
        profiles = sandbox.profile_ids()
        bound = sorted(c for c, p in sandbox.short_codes().items() if p is not None)
        unbound = sorted(c for c, p in sandbox.short_codes().items() if p is None)
        first, second = bound[0], bound[1]
        target = next(p for p in profiles if p != sandbox.short_codes()[first])
        number = sandbox.numbers()[0]
        rows = [[first, target, "short_code"],
                [sandbox.short_code_id(unbound[0]).upper(), profiles[0], ""],  # a UUID: no type
                [number, profiles[2], "longcode"]]
        csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id", "type"],
                             rows)
        result = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db")
        assert result.exit_code == 0
        assert sandbox.short_codes()[first] == target
        assert sandbox.short_codes()[unbound[0]] == profiles[0]
        assert sandbox.profile_of(number) == profiles[2]
        items = await journal_items(tmp_path / "a.db")
        assert items[unbound[0]].resource is Resource.SHORT_CODE  # keyed by its digits
        unassign = write_csv(tmp_path / "u.csv", ["phone_number", "Type"], [[second, "Short_Code"]])
        result = await run(sandbox, Kind.UNASSIGN, unassign, tmp_path / "u.db")
        assert result.exit_code == 0
        assert sandbox.short_codes()[second] is None


async def test_a_short_code_the_account_lacks_is_an_error_before_anything_is_sent(
        sandbox: Sandbox, tmp_path: Path) -> None:
    profile = sandbox.profile_ids()[0]
    rows = [[sandbox.numbers()[0], profile, ""], ["99999", profile, "short_code"],
            ["1234567", profile, ""], ["12a45", profile, "short_code"]]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id", "type"],
                         rows)
    with pytest.raises(InputError) as caught:
        await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db")
    text = str(caught.value)
    assert f"{csv_path}:3:1 (phone_number): short code 99999 is not on this account" in text
    assert f"{csv_path}:4:1 (phone_number): \"1234567\" is not a valid phone number" in text
    assert ("if it is a short code, write short_code in a `type` column of its row (as "
            "`bulkops export` does) or give its UUID") in text
    assert (f"{csv_path}:5:1 (phone_number): \"12a45\" is not a short code (the row's type is "
            "short_code): write its 3 to 8 digits, or its UUID") in text
    assert patches(sandbox) == 0 and sandbox.stats.count(route=SHORT_CODE_PATCH) == 0
    assert not (tmp_path / "a.db").exists()


async def test_a_refused_short_code_write_is_a_failed_row_with_telnyxs_error_and_retries(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=30, profiles=2, short_codes=4, seed=1) as sandbox:
        source, target = sandbox.profile_ids()
        code = codes_on(sandbox, source)[0]
        csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id", "type"],
                             [[code, target, "short_code"]])
        request = JobRequest(Kind.ASSIGN, csv_path, tmp_path / "a.db", "a")

        deleted = []

        async def confirm(summary: PlanSummary) -> bool:
            # Validated, snapshotted, asked: now the target goes away, and Telnyx refuses.
            assert summary.short_codes == 1
            deleted.append(sandbox.state.delete_profile(target, time.time())[0])
            return True

        result = await run_job(request, settings_for(sandbox, assume_yes=False, confirm_threshold=0),
                               Secret(sandbox.api_key), confirm=confirm)
        assert result.exit_code == 3
        (line,) = read_report(tmp_path / "a.report.csv")
        assert (line["phone_number"], line["resource"], line["final_state"]) == \
            (code, "short_code", "failed")
        assert (line["http_status"], line["error_code"], line["error_title"]) == \
            ("422", "10015", "Invalid value")
        assert f"Messaging profile {target} does not exist" in line["error_detail"]
        assert sandbox.short_codes()[code] == source
        sandbox.state.add_profile(deleted[0])  # the cause fixed: retry-failed sends it again
        retried = await retry_failed(tmp_path / "a.db", settings_for(sandbox),
                                     Secret(sandbox.api_key))
        assert retried.exit_code == 0 and retried.counts.get(ItemState.DONE) == 1
        assert sandbox.short_codes()[code] == target


async def test_export_lists_short_codes_marked_and_a_set_job_reads_it_back_as_is(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=40, profiles=2, short_codes=7, seed=4) as sandbox:
        settings, key = settings_for(sandbox), Secret(sandbox.api_key)
        result = await export_numbers(settings, key, tmp_path / "all.csv", ExportQuery())
        assert (result.numbers, result.short_codes) == (40, 7)
        lines = read_report(tmp_path / "all.csv")
        codes = {r["phone_number"]: r for r in lines if r["type"] == "short_code"}
        assert {c: r["messaging_profile_id"] or None for c, r in codes.items()} == \
            sandbox.short_codes()
        # the export is valid `set` input, and sets what is already there: nothing to send
        run_result = await run(sandbox, Kind.SET, tmp_path / "all.csv", tmp_path / "set.db")
        assert run_result.exit_code == 0
        assert run_result.counts.get(ItemState.SKIPPED) == 47
        assert sandbox.stats.count(route=SHORT_CODE_PATCH) == 0 and patches(sandbox) == 0
        unbound = await export_numbers(settings, key, tmp_path / "u.csv",
                                       ExportQuery(unassigned=True))
        assert unbound.short_codes == sum(p is None for p in sandbox.short_codes().values())
        longcodes = await export_numbers(settings, key, tmp_path / "l.csv",
                                         ExportQuery(type="longcode"))
        assert longcodes.short_codes == 0


async def test_profiles_show_each_profiles_short_codes(
        sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=20, profiles=3, short_codes=8, seed=6) as sandbox:
        listed = await list_profiles(settings_for(sandbox), Secret(sandbox.api_key))
        assert {p.id: set(p.short_codes) for p in listed} == {
            profile: set(codes_on(sandbox, profile)) for profile in sandbox.profile_ids()}


async def test_digits_without_a_short_code_type_stay_a_phone_number_and_ask_nothing(
        sandbox: Sandbox, tmp_path: Path) -> None:
    profile = sandbox.profile_ids()[0]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [["12345", profile]])
    with pytest.raises(InputError, match=r'a.csv:2:1 \(phone_number\): "12345" is not a valid '
                                         r"phone number .*; if it is a short code, write "
                                         "short_code in a `type` column"):
        await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "a.db")
    assert sandbox.stats.total_requests == 0

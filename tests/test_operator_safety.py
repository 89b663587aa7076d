"""Operator safety end to end: refuse bad input before sending, plan, read-back, reports,
retry-failed and rollback, against the sandbox with a real journal."""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import pytest

from bulkops.config import Secret
from bulkops.errors import ExitCode, InputError, Interrupted
from bulkops.jobs import report_job, retry_failed, rollback
from bulkops.jobs import JobRequest, plan_job, run_job
from bulkops.journal.states import ItemState
from bulkops.models import Kind
from bulkops.plan import PlanSummary
from bulkops.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.contract.spec import validate_exchange
from tests.jobhelpers import journal_items, other_profile, patches, run, settings_for, write_csv

BROKEN = Path(__file__).parent / "data" / "broken"
MANIFEST = tomllib.loads((BROKEN / "expected.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(MANIFEST))
async def test_broken_csv_is_refused_naming_its_line_and_nothing_reaches_the_server(
        sandbox: Sandbox, tmp_path: Path, name: str) -> None:
    case = MANIFEST[name]
    journal = tmp_path / "j.db"

    with pytest.raises(InputError) as caught:
        await run(sandbox, Kind(case["kind"]), BROKEN / name, journal)

    message = str(caught.value)
    if case["line"]:
        assert f"{name}:{case['line']}" in message
    assert case["message_contains"] in message
    # Nothing written; with a key, the profiles it names are read in the same pass (issue 23)
    assert all(route.startswith("GET /v2/messaging_profiles") for route, _ in sandbox.stats.requests)
    assert not journal.exists()  # a refused job leaves no half journal behind


def _messy_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    """BOM, CRLF, blank lines, padded cells, mixed number formats, odd header case, extras."""
    lines = ["\ufeff Phone_Number , MESSAGING_PROFILE_ID ,Note"]
    for i, (number, profile) in enumerate(rows):
        national = number[2:]
        written = [f" {number} ", f"1{national}", f"({national[:3]}) {national[3:6]}-{national[6:]}",
                   f"+1 {national[:3]} {national[3:6]} {national[6:]}"][i % 4]
        lines.append(f'"{written}", {profile.upper() if i % 2 else profile} ,"note, {i}"')
        if i % 5 == 0:
            lines.append("")
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


async def test_messy_but_valid_csv_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:12]
    targets = {n: other_profile(sandbox, sandbox.profile_of(n)) for n in numbers}
    csv_path = _messy_csv(tmp_path / "messy.csv", list(targets.items()))

    result = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "j.db")

    assert {n: sandbox.profile_of(n) for n in numbers} == targets
    assert result.counts.get(ItemState.DONE) == 12


async def test_unknown_profile_is_refused_naming_the_lines_before_any_write(
        sandbox: Sandbox, tmp_path: Path) -> None:
    ghost = "0b8f2a64-1111-4c3e-9a8e-5d6f7a8b9c0d"
    rows = [(n, ghost if i in (2, 4) else sandbox.profile_ids()[0])
            for i, n in enumerate(sandbox.numbers()[:6])]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], rows)

    with pytest.raises(InputError, match=f"{ghost} does not exist") as caught:
        await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "j.db")

    assert "line(s) 4, 6" in str(caught.value)
    assert patches(sandbox) == 0


async def test_duplicates_collapse_when_equal_and_refuse_naming_both_lines_when_not(
        sandbox: Sandbox, tmp_path: Path) -> None:
    n1, n2 = sandbox.numbers()[:2]
    p1, p2 = sandbox.profile_ids()[:2]
    same = write_csv(tmp_path / "same.csv", ["phone_number", "messaging_profile_id"],
                     [(n1, p1), (n2, p1), (n1, p1)])
    clash = write_csv(tmp_path / "clash.csv", ["phone_number", "messaging_profile_id"],
                      [(n1, p1), (n2, p1), (n1, p2)])

    with pytest.raises(InputError, match=r"clash.csv:2 and line 4"):
        await run(sandbox, Kind.ASSIGN, clash, tmp_path / "clash.db")
    assert patches(sandbox) == 0
    result = await run(sandbox, Kind.ASSIGN, same, tmp_path / "same.db")
    assert result.counts.total == 2


async def test_skip_invalid_journals_rejected_rows_and_runs_the_rest(
        sandbox: Sandbox, tmp_path: Path) -> None:
    good = sandbox.numbers()[:3]
    rows = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in good]
    rows.insert(1, ("312555", sandbox.profile_ids()[0]))
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], rows)

    result = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "j.db", skip_invalid=True)

    assert result.counts.get(ItemState.DONE) == 3 and result.counts.rejected == 1
    assert result.exit_code is ExitCode.FAILED_ROWS
    assert result.report_path is not None
    report = list(csv.DictReader(result.report_path.read_text(encoding="utf-8").splitlines()))
    rejected = [r for r in report if r["final_state"] == "rejected"]
    assert [r["line"] for r in rejected] == ["3"] and "312555" in rejected[0]["error_detail"]


async def test_plan_classifies_a_mixed_job_and_writes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    assigned = [n for n in sandbox.numbers() if sandbox.profile_of(n)]
    change, in_place = assigned[:4], assigned[4:7]
    rows = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in change]
    rows += [(n, sandbox.profile_of(n) or "") for n in in_place]
    rows += [("+13125550197", sandbox.profile_ids()[0])]  # valid, not on this account
    csv_path = write_csv(tmp_path / "mixed.csv", ["phone_number", "messaging_profile_id"], rows)
    request = JobRequest(Kind.ASSIGN, csv_path, tmp_path / "unused.db", "mixed")

    result = await plan_job(request, settings_for(sandbox), Secret(sandbox.api_key),
                            output=tmp_path / "plan.csv")

    assert result.plan == PlanSummary(change=4, in_place=3, not_on_account=1)
    plan_rows = list(csv.DictReader((tmp_path / "plan.csv").read_text(encoding="utf-8").splitlines()))
    assert {r["phone_number"]: r["action"] for r in plan_rows} == (
        {n: "will change" for n in change} | {n: "already in place" for n in in_place}
        | {"+13125550197": "not on account"})
    assert patches(sandbox) == 0 and not (tmp_path / "unused.db").exists()
    lookups = sandbox.stats.count(route="GET /v2/phone_numbers/messaging")
    assert lookups == 1  # one request per 250 numbers, not one per number


async def test_plan_has_a_line_for_every_input_line_rejected_and_duplicate_ones_included(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:2]
    rows = [(n, other_profile(sandbox, sandbox.profile_of(n)), "keep") for n in numbers]
    rows.insert(1, ("312555", sandbox.profile_ids()[0], "typo"))  # line 3: rejected
    rows.append(rows[0])  # line 5: repeats line 2
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id", "note"], rows)
    request = JobRequest(Kind.ASSIGN, csv_path, tmp_path / "unused.db", "a")

    result = await plan_job(request, settings_for(sandbox, skip_invalid=True),
                            Secret(sandbox.api_key), output=tmp_path / "plan.csv")

    assert result.plan == PlanSummary(change=2)
    plan_rows = list(csv.DictReader((tmp_path / "plan.csv").read_text(encoding="utf-8").splitlines()))
    assert [(r["line"], r["action"]) for r in plan_rows] == [
        ("2", "will change"), ("3", "rejected"), ("4", "will change"), ("5", "duplicate")]
    rejected, duplicate = plan_rows[1], plan_rows[3]
    assert rejected["phone_number"] == "312555" and "312555" in rejected["note"]
    assert rejected["input_note"] == "typo"
    assert duplicate["phone_number"] == numbers[0] and "repeats line 2" in duplicate["note"]
    assert patches(sandbox) == 0


async def test_second_run_into_a_fresh_journal_sends_no_write(sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:20]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
    await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "first.db")
    before = patches(sandbox)

    second = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "second.db")

    assert patches(sandbox) == before
    assert second.counts.get(ItemState.SKIPPED) == 20


async def test_read_back_fails_rows_a_server_silently_ignored(sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:5]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
    sandbox.set_ignore_writes(True)

    result = await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "j.db")

    items = await journal_items(tmp_path / "j.db")
    assert {i.state for i in items.values()} == {ItemState.FAILED}
    assert {i.note for i in items.values()} == {"not applied"}
    assert result.exit_code is ExitCode.FAILED_ROWS


async def test_retry_failed_runs_only_the_failed_rows_after_the_cause_is_fixed(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:6]
    targets = {n: other_profile(sandbox, sandbox.profile_of(n)) for n in numbers}
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], targets.items())
    sandbox.set_ignore_writes(True)
    await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "j.db")
    sandbox.set_ignore_writes(False)
    sandbox.stats.reset()

    result = await retry_failed(tmp_path / "j.db", settings_for(sandbox), Secret(sandbox.api_key))

    assert {n: sandbox.profile_of(n) for n in numbers} == targets
    assert patches(sandbox) == 6 and result.counts.get(ItemState.DONE) == 6


async def test_rollback_restores_every_prior_profile_including_none(
        sandbox: Sandbox, tmp_path: Path) -> None:
    assigned = [n for n in sandbox.numbers() if sandbox.profile_of(n)][:6]
    unassigned = [n for n in sandbox.numbers() if not sandbox.profile_of(n)][:4]
    before = {n: sandbox.profile_of(n) for n in assigned + unassigned}
    rows = [(n, other_profile(sandbox, before[n])) for n in assigned + unassigned]
    rows.append((assigned[0].replace(assigned[0], sandbox.numbers()[-1]),
                 sandbox.profile_of(sandbox.numbers()[-1]) or sandbox.profile_ids()[0]))
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"], rows)
    await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "j.db")
    last_before = sandbox.profile_of(sandbox.numbers()[-1])

    result = await rollback(tmp_path / "j.db", settings_for(sandbox), Secret(sandbox.api_key))

    assert {n: sandbox.profile_of(n) for n in before} == before
    assert sandbox.profile_of(sandbox.numbers()[-1]) == last_before
    assert result.job.kind is Kind.ROLLBACK and result.counts.get(ItemState.DONE) == 10
    report = await report_job(tmp_path / "j.db", tmp_path / "rb.csv")
    assert report.rows == 10


async def test_rollback_leaves_a_number_changed_since_alone_unless_forced(
        sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = [n for n in sandbox.numbers() if sandbox.profile_of(n)][:4]
    before = {n: sandbox.profile_of(n) for n in numbers}
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, before[n])) for n in numbers])
    await run(sandbox, Kind.ASSIGN, csv_path, tmp_path / "j.db")
    meddled = numbers[0]
    someone_elses = next(p for p in sandbox.profile_ids()
                         if p not in (before[meddled], sandbox.profile_of(meddled)))
    sandbox.set_profile(meddled, someone_elses)

    result = await rollback(tmp_path / "j.db", settings_for(sandbox), Secret(sandbox.api_key))

    assert sandbox.profile_of(meddled) == someone_elses
    assert all(sandbox.profile_of(n) == before[n] for n in numbers[1:])
    items = await journal_items(tmp_path / "j.db", result.job.id)
    assert items[meddled].state is ItemState.SKIPPED
    assert items[meddled].note == f"changed since the job: now {someone_elses}"

    sent = patches(sandbox)
    forced = await rollback(tmp_path / "j.db", settings_for(sandbox, force=True),
                            Secret(sandbox.api_key))
    assert sandbox.profile_of(meddled) == before[meddled]
    assert patches(sandbox) == sent + 1  # the other three are already back: read back, not re-sent
    assert forced.counts.get(ItemState.DONE) == 4


async def test_declined_confirmation_sends_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    numbers = sandbox.numbers()[:5]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in numbers])
    asked: list[PlanSummary] = []

    async def decline(summary: PlanSummary) -> bool:
        asked.append(summary)
        return False

    request = JobRequest(Kind.ASSIGN, csv_path, tmp_path / "j.db", "a")
    settings = settings_for(sandbox, assume_yes=False, confirm_threshold=0)
    with pytest.raises(Interrupted, match="not confirmed"):
        await run_job(request, settings, Secret(sandbox.api_key), confirm=decline)

    assert asked and asked[0].change == 5 and patches(sandbox) == 0


async def test_every_request_bulkops_sends_validates_against_the_spec(
        sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    async with sandbox_factory(numbers=120, profiles=3, seed=11, record=True) as sb:
        numbers = sb.numbers()[:30]
        assign = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                           [(n, other_profile(sb, sb.profile_of(n))) for n in numbers])
        unassign = write_csv(tmp_path / "u.csv", ["phone_number"], [(n,) for n in sb.numbers()[30:40]])
        migrate = write_csv(tmp_path / "m.csv", ["from_profile_id", "to_profile_id"],
                            [(sb.profile_ids()[0], sb.profile_ids()[1])])
        await run(sb, Kind.ASSIGN, assign, tmp_path / "a.db", verify=True)
        await run(sb, Kind.UNASSIGN, unassign, tmp_path / "u.db")
        await run(sb, Kind.MIGRATE, migrate, tmp_path / "m.db")
        await rollback(tmp_path / "a.db", settings_for(sb), Secret(sb.api_key))
        await plan_job(JobRequest(Kind.ASSIGN, assign, tmp_path / "p.db", "p"), settings_for(sb),
                       Secret(sb.api_key), output=tmp_path / "p.csv")

        assert len(sb.recorded) > 50
        routes = {e.route for e in sb.recorded}
        assert {"PATCH /v2/phone_numbers/{id}/messaging", "GET /v2/phone_numbers/messaging",
                "GET /v2/messaging_profiles/{id}", "GET /v2/messaging_profiles/{id}/phone_numbers"} <= routes
        for exchange in sb.recorded:
            validate_exchange(exchange)

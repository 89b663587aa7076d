"""Writes nobody asked for (issue #23): a misspelt column never lets a default fill in; unassigns
and each target profile are named on their own in the plan and the question; numbers the
account does not have fail without a request, and a plan where none is on it says what that
likely means."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulkops.errors import ExitCode, InputError
from bulkops.input.rows import read_rows
from bulkops.models import Kind, NumberRow
from bulkops.plan import Action, PlanSummary
from bulkops.sandbox import Sandbox
from tests.harness import assert_clean_error, cli_env, run_cli
from tests.jobhelpers import other_profile, patches, write_csv
from tests.test_operator_trust import _on_terminal

P1 = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"
PHONE = "+13125550101"


def _file(tmp_path: Path, header: str, row: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")
    return path


# --- a column that resembles a known one ----------------------------------------------------

@pytest.mark.parametrize(("kind", "header", "resembles"), [
    (Kind.ASSIGN, "phone_number,messaging_profle_id", "messaging_profile_id"),
    (Kind.ASSIGN, "phone_number,MessagingProfileId", "messaging_profile_id"),
    (Kind.ASSIGN, "phone_number,messaging-profile-idd", "messaging_profile_id"),
    (Kind.ASSIGN, "phone_number,profile_id", "messaging_profile_id"),
    (Kind.ASSIGN, "phone_number,Messaging Profile", "messaging_profile_id"),
    (Kind.ASSIGN, "phone_number,messaging_profile_uuid", "messaging_profile_id"),
    (Kind.ASSIGN, "Phone Numbr,messaging_profile_id", "phone_number"),
    (Kind.ASSIGN, "phonenumber,messaging_profile_id", "phone_number"),
    (Kind.UNASSIGN, "phone_numbers", "phone_number"),
    (Kind.UNASSIGN, "Number", "phone_number"),
    (Kind.UNASSIGN, "TN", "phone_number"),
    (Kind.SET, "phone_number,messaging_profiles_id", "messaging_profile_id"),
    (Kind.MIGRATE, "from_profile,to_profile_id", "from_profile_id"),
    (Kind.MIGRATE, "from_profile_id,to_profle_id", "to_profile_id"),
    (Kind.MIGRATE, "source_profile_id,target_profile_id", "from_profile_id"),
])
def test_a_column_close_to_a_known_one_is_an_error_naming_both(
        tmp_path: Path, kind: Kind, header: str, resembles: str) -> None:
    cells = {Kind.MIGRATE: f"{P1},0b8f2a64-1111-4c3e-9a8e-5d6f7a8b9c0d"}.get(kind, f"{PHONE},{P1}")
    path = _file(tmp_path, header, ",".join(cells.split(",")[:len(header.split(","))]))

    with pytest.raises(InputError) as caught:
        read_rows(path, kind)

    message = str(caught.value)
    assert f"looks like {resembles}; rename it to {resembles}" in message
    known = {"phone_number", "messaging_profile_id", "from_profile_id", "to_profile_id"}
    near = next(h for h in header.split(",") if h.strip().lower() not in known)
    assert f'"{near.strip()}"' in message


@pytest.mark.parametrize("header", ["phone_number,messaging_profle_id", "phone_number,profile",
                                    "phone_number,Messaging_Profile_UUID"])
def test_a_default_profile_never_fills_in_for_a_misspelt_profile_column(
        tmp_path: Path, header: str) -> None:
    path = _file(tmp_path, header, f"{PHONE},0b8f2a64-1111-4c3e-9a8e-5d6f7a8b9c0d")

    with pytest.raises(InputError, match="every row would go to the default profile"):
        read_rows(path, Kind.ASSIGN, default_profile_id=P1)


@pytest.mark.parametrize("header", ["Phone Number,Messaging Profile ID", "phone-number,messaging-profile-id",
                                    " PHONE_NUMBER , messaging_profile_id "])
def test_case_and_separator_variants_are_read_as_the_column_itself(tmp_path: Path, header: str) -> None:
    other = "0b8f2a64-1111-4c3e-9a8e-5d6f7a8b9c0d"
    rows = list(read_rows(_file(tmp_path, header, f"{PHONE},{other}"), Kind.ASSIGN,
                          default_profile_id=P1))

    assert rows == [NumberRow(2, PHONE, other, ())]  # the cell's profile, not the default


@pytest.mark.parametrize("header", [
    "phone_number,messaging_profile_id,messaging_profile_name,type,messaging_product",  # an export
    "phone_number,note", "phone_number,customer_profile_ref,region",
])
def test_unrelated_or_exported_extra_columns_are_not_taken_for_a_known_one(
        tmp_path: Path, header: str) -> None:
    width = len(header.split(","))
    row = ",".join([PHONE, P1, "x", "longcode", "P2P"][:width]) if "messaging_profile_id" in header \
        else ",".join([PHONE] + ["x"] * (width - 1))
    rows = list(read_rows(_file(tmp_path, header, row), Kind.ASSIGN, default_profile_id=P1))

    assert len(rows) == 1 and isinstance(rows[0], NumberRow) and rows[0].profile_id == P1


async def test_a_misspelt_profile_column_with_a_default_name_sends_nothing(
        sandbox: Sandbox, tmp_path: Path) -> None:
    name = sandbox.state.profiles()[0].name
    targets = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in sandbox.numbers()[:5]]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profle_id"], targets)
    before = sandbox.dump()

    result = await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--profile-id", name,
                            "--yes", "--base-url", sandbox.base_url], env=cli_env(sandbox.api_key))

    assert_clean_error(result, 2, '"messaging_profle_id" looks like messaging_profile_id')
    assert patches(sandbox) == 0 and sandbox.dump() == before


# --- unassigns and targets named on their own -------------------------------------------------

def test_the_question_names_each_target_and_the_unassigns_on_their_own() -> None:
    summary = PlanSummary(kind=Kind.SET, names={P1: "Sales"})
    for _ in range(90):
        summary.add(Action.CHANGE, P1)
    for _ in range(50):
        summary.add(Action.CHANGE, "0b8f2a64-1111-4c3e-9a8e-5d6f7a8b9c0d")
    for _ in range(10):
        summary.add(Action.UNASSIGN, "")

    question = summary.question()

    assert question.startswith("Write 150 numbers: ")
    assert f'move 90 to "Sales" ({P1})' in question
    assert "move 50 to 0b8f2a64-1111-4c3e-9a8e-5d6f7a8b9c0d" in question
    assert "unassign 10 numbers (take them off their messaging profile)" in question
    assert "new messaging profiles" not in question


def _set_rows(sandbox: Sandbox) -> tuple[list[tuple[str, str]], str, str]:
    first, second = sandbox.state.profiles()[0], sandbox.state.profiles()[1]
    rows: list[tuple[str, str]] = []
    for n in sandbox.numbers():
        current = sandbox.profile_of(n)
        if len([r for r in rows if r[1] == first.id]) < 90 and current != first.id:
            rows.append((n, first.id))
        elif len([r for r in rows if r[1] == second.id]) < 30 and current != second.id:
            rows.append((n, second.id))
        elif len([r for r in rows if r[1] == ""]) < 12 and current:
            rows.append((n, ""))
    return rows, first.name, second.name


async def test_a_set_plan_counts_unassigns_apart_and_names_each_target_profile(
        sandbox: Sandbox, tmp_path: Path) -> None:
    rows, first, second = _set_rows(sandbox)
    csv_path = write_csv(tmp_path / "s.csv", ["phone_number", "messaging_profile_id"], rows)

    text = await run_cli(["plan", "--kind", "set", "--csv", csv_path, "--base-url", sandbox.base_url],
                         env=cli_env(sandbox.api_key))
    answer = await run_cli(["plan", "--kind", "set", "--csv", csv_path, "--base-url", sandbox.base_url,
                            "--json", "--output", tmp_path / "p2.csv"], env=cli_env(sandbox.api_key))

    assert text.returncode == 0, text.describe()
    assert "will unassign" in text.stderr and f'to "{first}"' in text.stderr
    assert f'to "{second}"' in text.stderr
    data = json.loads(answer.stdout)
    assert data["plan"]["will change"] == 120 and data["plan"]["will unassign"] == 12
    assert [(t["name"], t["numbers"]) for t in data["plan_targets"]] == [(first, 90), (second, 30)]
    actions = (tmp_path / "s.plan.csv").read_text(encoding="utf-8")
    assert actions.count(",will unassign,") == 12
    assert patches(sandbox) == 0


async def test_the_question_before_a_set_job_names_the_unassigns_and_the_targets(
        sandbox: Sandbox, tmp_path: Path) -> None:
    rows, first, _ = _set_rows(sandbox)
    csv_path = write_csv(tmp_path / "s.csv", ["phone_number", "messaging_profile_id"], rows)

    code, screen = await _on_terminal(["run", "--kind", "set", "--csv", csv_path, "--base-url",
                                       sandbox.base_url], env=cli_env(sandbox.api_key), answer="n")

    assert code == ExitCode.INTERRUPTED, screen[-2000:]
    flat = " ".join(screen.split())
    assert "Write 132 numbers: move 90 to" in flat and f'"{first}"' in flat, flat[-2000:]
    assert "unassign 12 numbers (take them off their messaging profile)? [y/N]" in flat
    assert patches(sandbox) == 0


# --- numbers the account does not have ---------------------------------------------------------

async def test_a_plan_where_no_number_is_on_the_account_says_why_and_exits_3(
        sandbox_factory: object, sandbox: Sandbox, tmp_path: Path) -> None:
    # Numbers of another account (another seed): what a sub-account's or another key sees.
    elsewhere = [f"+1415555{n:04d}" for n in range(40)]
    assert not set(elsewhere) & set(sandbox.numbers())
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         [(n, sandbox.profile_ids()[0]) for n in elsewhere])
    base: list[str | Path] = ["--kind", "assign", "--csv", csv_path, "--base-url", sandbox.base_url]

    plan = await run_cli(["plan", *base], env=cli_env(sandbox.api_key))
    run = await run_cli(["run", *base, "--yes", "--journal", tmp_path / "a.db"],
                        env=cli_env(sandbox.api_key))

    assert plan.returncode == ExitCode.FAILED_ROWS, plan.describe()
    assert "none of the 40 numbers is on the account of this API key" in plan.stdout
    assert "sub-account" in plan.stdout and "a run fails them without sending" in plan.stdout
    assert run.returncode == ExitCode.FAILED_ROWS, run.describe()
    assert "none of the 40 numbers is on the account" in run.stdout
    assert "stopped:" not in run.stderr  # no storm: nothing was sent to fail
    assert patches(sandbox) == 0


async def test_some_numbers_not_on_the_account_fail_unsent_and_the_rest_run(
        sandbox: Sandbox, tmp_path: Path) -> None:
    good = [(n, other_profile(sandbox, sandbox.profile_of(n))) for n in sandbox.numbers()[:6]]
    csv_path = write_csv(tmp_path / "a.csv", ["phone_number", "messaging_profile_id"],
                         good + [("+14155550000", sandbox.profile_ids()[0])])

    run = await run_cli(["run", "--kind", "assign", "--csv", csv_path, "--yes", "--mode", "patch",
                         "--base-url", sandbox.base_url], env=cli_env(sandbox.api_key))

    assert run.returncode == ExitCode.FAILED_ROWS, run.describe()
    assert "1 of the 7 numbers are not on the account" in run.stdout
    assert patches(sandbox) == 6
    assert all(sandbox.profile_of(n) == p for n, p in good)

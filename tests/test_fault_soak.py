"""Every sandbox fault at once over 2,000 rows: transient faults converge, permanent ones fail.

One in-process job (``run_job``) against a sandbox injecting 5xx before and after the write,
dropped connections (half of them after the write landed), latency with jitter, and answers
held back longer than the client's timeout. Twenty rows name valid E.164 numbers the account
does not have: those, and only those, must fail, by the read-back and without a request
(issue 23: a PATCH would only be Telnyx's 404 / 10005). Every other row
must end exactly on its target, and the attempts the faults cost must stay retries, not
failures (the retry budget is generous and its backoff short so the soak stays fast).
"""

from __future__ import annotations

from pathlib import Path

from bulkops.config import RunSettings, Secret, WriteMode
from bulkops.errors import ExitCode
from bulkops.jobs import JobRequest, run_job
from bulkops.journal.states import ItemState
from bulkops.models import Kind
from bulkops.telnyx.retry import RetryPolicy
from bulkops.sandbox import FaultKind
from tests.conftest import SandboxFactory
from tests.harness import journal_snapshot, read_report, write_assign_csv
from tests.soak_kit import FAULTS, TIMEOUT, numbers_not_on

VALID_ROWS = 2_000
MISSING_ROWS = 20


async def test_all_faults_at_once_converge_and_only_numbers_not_on_the_account_fail(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    async with sandbox_factory(numbers=2_400, profiles=4, seed=23, faults=FAULTS) as sandbox:
        before = sandbox.dump()
        profiles = sandbox.profile_ids()
        valid = sandbox.numbers()[:VALID_ROWS]
        desired = {n: profiles[1 + i % 2] for i, n in enumerate(valid)}  # two targets, some in place
        missing = numbers_not_on(set(before), MISSING_ROWS)
        rows = list(desired.items()) + [(n, profiles[1]) for n in missing]
        rows = rows[::2] + rows[1::2]  # the missing numbers sit among the valid ones, not at the end
        csv_path = write_assign_csv(tmp_path / "soak.csv", rows)

        settings = RunSettings(
            base_url=sandbox.base_url, assume_yes=True, concurrency=32, timeout=TIMEOUT,
            mode=WriteMode.PATCH,  # the PATCH path; tests/test_bulk_orders.py soaks bulk mode
            policy=RetryPolicy(max_attempts=40, max_elapsed=120, backoff_base=0.02, backoff_max=0.2),
        )
        request = JobRequest(Kind.ASSIGN, csv_path, tmp_path / "soak.journal.db", "soak")
        result = await run_job(request, settings, Secret(sandbox.api_key))

        # Every fault really fired, and the client really saw them.
        injected = sandbox.stats.faults_injected
        for kind in (FaultKind.ERROR, FaultKind.ERROR_AFTER_WRITE, FaultKind.DROP,
                     FaultKind.DROP_AFTER_WRITE, FaultKind.SLOW):
            assert injected[kind.value] > 0, f"no {kind.value} fault was injected: {dict(injected)}"
        assert result.requests["retries"] > 0 and result.requests["transport_errors"] > 0

        # Exact final state: valid rows on their target, every other number untouched.
        after = sandbox.dump()
        assert {n: after[n] for n in valid} == desired
        assert {n: p for n, p in after.items() if n not in desired} == {
            n: p for n, p in before.items() if n not in desired
        }
        assert set(sandbox.stats.writes_by_number) <= set(desired)

        # Failures: exactly the numbers the account does not have, each failed unsent.
        counts = result.counts
        assert counts.get(ItemState.FAILED) == MISSING_ROWS
        assert counts.get(ItemState.DONE) + counts.get(ItemState.SKIPPED) == VALID_ROWS
        assert counts.get(ItemState.PENDING) == counts.get(ItemState.IN_FLIGHT) == 0
        assert result.exit_code is ExitCode.FAILED_ROWS

        assert result.report_path is not None
        report = read_report(result.report_path)
        assert len(report) == VALID_ROWS + MISSING_ROWS
        failed = {r["phone_number"]: (r["attempts"], r["error_title"]) for r in report if r["final_state"] == "failed"}
        assert failed == dict.fromkeys(missing, ("0", "not on this account"))
        assert {r["final_state"] for r in report if r["phone_number"] in desired} <= {"done", "skipped"}

        _, items = await journal_snapshot(request.journal_path)
        assert {n for n, item in items.items() if item.state is ItemState.FAILED} == set(missing)
        assert all(items[n].on_account is False and items[n].attempts == 0 for n in missing)

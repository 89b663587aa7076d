"""Getting a job into its journal: validate every row, check profiles, freeze migrations.

Nothing here writes to the API. Rows stream from the CSV into the journal's
staging table in batches (duplicates are found in SQL, so memory stays flat for
a million rows); a job with any error is refused as a whole unless the operator
asked to skip invalid rows, in which case those are journaled as rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from bulkops.errors import BulkOpsError, InputError
from bulkops.input.names import NeedProfiles, ProfileLookup
from bulkops.input.rows import Row, read_rows
from bulkops.input.short_codes import NeedShortCodes, ShortCodeLookup
from bulkops.journal.records import StagingResult
from bulkops.journal.store import Journal
from bulkops.models import Kind, MigrateRow, NumberRow, Problem, Severity
from bulkops.runner import FatalBox
from bulkops.telnyx.client import TelnyxClient
from bulkops.telnyx.retry import GaveUp

log = logging.getLogger("bulkops")

BATCH = 5_000
SHOWN_PROBLEMS = 50


@dataclass
class LoadReport:
    """What validation found, for the summary and for `bulkops validate`."""

    path: Path
    rows: int = 0
    errors: list[Problem] = field(default_factory=list)
    error_count: int = 0
    warnings: list[Problem] = field(default_factory=list)
    warning_count: int = 0
    rejected: int = 0
    collapsed: int = 0
    migrations: list[MigrateRow] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        if problem.severity is Severity.WARNING:
            self.warning_count += 1
            if len(self.warnings) < SHOWN_PROBLEMS:
                self.warnings.append(problem)
        else:
            self.error_count += 1
            if len(self.errors) < SHOWN_PROBLEMS:
                self.errors.append(problem)


def problems_message(path: Path, problems: Sequence[Problem], total: int) -> str:
    lines = [f"{path} has {total} error{'s' if total != 1 else ''}; nothing was sent."]
    lines += [f"  {p}" for p in problems]
    if total > len(problems):
        lines.append(f"  ... and {total - len(problems)} more; with --skip-invalid every rejected row "
                     "is listed in the report")
    lines.append("Fix the file and run the same command again, or pass --skip-invalid to journal "
                 "these rows as rejected and run the rest.")
    return "\n".join(lines)


async def load_rows(
    journal: Journal,
    job_id: int,
    kind: Kind,
    csv_path: Path,
    *,
    default_profile_id: str | None,
    default_region: str,
    skip_invalid: bool,
    client: TelnyxClient | None = None,
) -> LoadReport:
    """Stream the CSV into the journal; raise InputError if it cannot run as it is.

    Profile names are resolved against one listing of the account's profiles, taken when the
    first name is met; without a ``client`` (an offline check) they are kept unchecked.
    """
    report = LoadReport(path=csv_path)
    batch: list[NumberRow] = []
    rejected: list[Problem] = []
    names = ProfileLookup(offline=client is None)
    codes = ShortCodeLookup(offline=client is None)
    for entry in await _open_rows(csv_path, kind, default_profile_id, default_region, names,
                                  codes, client):
        if isinstance(entry, NeedProfiles):
            await _list_profiles(names, client)
        elif isinstance(entry, NeedShortCodes):
            assert client is not None  # an offline lookup never asks
            listed = await client.list_short_codes()
            codes.load(listed)
            log.info("short codes listed for the rows naming them short_codes=%d", len(listed))
        elif isinstance(entry, Problem):
            report.add(entry)
            if entry.severity is Severity.ERROR and skip_invalid:
                rejected.append(entry)
                if len(rejected) >= BATCH:
                    await journal.add_rejected(job_id, rejected)
                    report.rejected += len(rejected)
                    rejected = []
        elif isinstance(entry, MigrateRow):
            report.migrations.append(entry)
            report.rows += 1
        else:
            batch.append(entry)
            report.rows += 1
            if len(batch) >= BATCH:
                await journal.stage_rows(job_id, batch)
                batch = []
    if batch:
        await journal.stage_rows(job_id, batch)
    if rejected:
        await journal.add_rejected(job_id, rejected)
        report.rejected += len(rejected)
    if names.names is not None:
        await journal.set_profile_names(names.names.id_names())
    if codes.unchecked:
        log.warning("warning %s names short codes; they are checked against the account only "
                    "with an API key (not offline)", csv_path)
    if names.unchecked:
        log.warning("warning %s names profiles by name; names are checked against the account "
                    "only with an API key (not offline)", csv_path)
    for warning in report.warnings:
        log.warning("warning %s", warning)
    if report.error_count and not skip_invalid:
        raise InputError(problems_message(csv_path, report.errors, report.error_count))
    if kind is Kind.MIGRATE:
        await journal.add_migrations(job_id, report.migrations)
        return report
    staged = await journal.finish_staging(job_id)
    _check_duplicates(csv_path, staged)
    report.collapsed = staged.collapsed
    return report


async def _open_rows(csv_path: Path, kind: Kind, default_profile_id: str | None,
                     default_region: str, names: ProfileLookup, codes: ShortCodeLookup,
                     client: TelnyxClient | None) -> Iterator[Row]:
    try:
        return read_rows(csv_path, kind, default_profile_id=default_profile_id,
                         default_region=default_region, names=names, short_codes=codes)
    except NeedProfiles:  # the default profile is given by name
        await _list_profiles(names, client)
        return read_rows(csv_path, kind, default_profile_id=default_profile_id,
                         default_region=default_region, names=names, short_codes=codes)


async def _list_profiles(names: ProfileLookup, client: TelnyxClient | None) -> None:
    assert client is not None  # an offline lookup never asks
    profiles = await client.list_profiles()
    names.load(profiles)
    log.info("profiles listed for names profiles=%d", len(profiles))


def _check_duplicates(csv_path: Path, staged: StagingResult) -> None:
    if staged.conflicts:
        shown = [
            f"  {csv_path}:{c.line_a} and line {c.line_b}: {c.phone_number} is sent to "
            f"{c.desired_a or 'unassigned'} and to {c.desired_b or 'unassigned'}"
            for c in staged.conflicts
        ]
        more = staged.conflict_count - len(staged.conflicts)
        if more > 0:
            shown.append(f"  ... and {more} more")
        raise InputError(
            f"{csv_path} gives {staged.conflict_count} number(s) two different targets; "
            "nothing was sent.\n" + "\n".join(shown)
            + "\nKeep one line for each number and run the same command again."
        )
    if staged.collapsed:
        lines = ", ".join(str(n) for n in staged.collapsed_lines)
        log.warning(
            "warning %s: %d duplicate row(s) with the same target were collapsed (lines %s%s)",
            csv_path, staged.collapsed, lines, ", ..." if staged.collapsed > len(staged.collapsed_lines) else "",
        )


async def check_profiles(
    client: TelnyxClient, csv_path: Path, uses: dict[str, list[int]]
) -> None:
    """Each distinct target profile must exist on the account before any write."""
    found: dict[str, bool] = {}
    fatal = FatalBox()
    limit = anyio.Semaphore(8)

    async def check(profile_id: str, group: anyio.CancelScope) -> None:
        async with limit:
            try:
                found[profile_id] = await client.get_profile(profile_id) is not None
            except (BulkOpsError, GaveUp) as exc:
                fatal.keep(exc, group)

    async with anyio.create_task_group() as tg:  # a few reads at once: they share the limiter
        for profile_id in uses:
            tg.start_soon(check, profile_id, tg.cancel_scope)
    fatal.raise_if_set()
    missing = [
        f"  {csv_path}:{lines[0]}: messaging profile {profile_id} does not exist on this account "
        f"(used on line(s) {', '.join(str(n) for n in lines)})"
        for profile_id, lines in sorted(uses.items()) if not found[profile_id]
    ]
    if missing:
        raise InputError(
            f"{csv_path} names {len(missing)} messaging profile(s) this account does not have; "
            "nothing was sent.\n" + "\n".join(missing)
            + "\nCheck the ids (`bulkops profiles` lists the account's) and run again."
        )


def migration_profiles(migrations: Sequence[MigrateRow]) -> dict[str, list[int]]:
    uses: dict[str, list[int]] = {}
    for row in migrations:
        for profile in (row.from_profile_id, row.to_profile_id):
            lines = uses.setdefault(profile, [])
            if len(lines) < 5:
                lines.append(row.line)
    return uses


async def freeze_migrations(journal: Journal, job_id: int, client: TelnyxClient, *,
                            short_codes: bool = True) -> int:
    """List every number and (unless ``short_codes`` is False: --leave-short-codes) every
    short code of every source profile, all pages, before the first write.

    Paging a profile's list while moving its numbers off it skips numbers (the
    list shrinks under the pages), so the set is frozen into the journal first.
    """
    listed = 0
    for migration in await journal.unlisted_migrations(job_id):
        numbers = await client.list_profile_numbers(migration.from_profile_id)
        codes = (await client.list_short_codes(migration.from_profile_id)) if short_codes else None
        await journal.add_listed_numbers(job_id, migration, numbers, codes)
        log.info("migration listed line=%d from=%s to=%s numbers=%d short_codes=%s",
                 migration.line, migration.from_profile_id, migration.to_profile_id, len(numbers),
                 "left behind" if codes is None else len(codes))
        if not numbers and not codes:
            log.warning("warning migrate CSV line %d: profile %s has 0 numbers%s; nothing moves "
                        "from it", migration.line, migration.from_profile_id,
                        "" if codes is None else " and 0 short codes")
        listed += len(numbers) + len(codes or ())
    return listed


async def profiles_in_use(journal: Journal, job_id: int, kind: Kind,
                          report: LoadReport) -> dict[str, list[int]]:
    """The profiles a loaded job names (with a few lines each), for ``check_profiles``."""
    if kind is Kind.MIGRATE:
        return migration_profiles(report.migrations)
    return await journal.distinct_desired(job_id)



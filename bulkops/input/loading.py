"""Getting a job into its journal: validate every row, check profiles, freeze migrations.

Nothing here writes to the API. Rows stream from the CSV into the journal's
staging table in batches (duplicates are found in SQL, so memory stays flat for
a million rows); a job with any error is refused as a whole unless the operator
asked to skip invalid rows, in which case those are journaled as rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from bulkops.errors import BulkOpsError, InputError
from bulkops.input.header import FROM, PHONE, PROFILE, TO
from bulkops.input.names import NeedProfiles, ProfileLookup
from bulkops.input.phone import is_profile_id, normalize_profile_id
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
    profiles_checked: int = 0  # target profiles checked against the account (0: offline)
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
    if names.names is not None:
        await journal.set_profile_names(names.names.id_names())
    if codes.unchecked:
        log.warning("warning %s names short codes; they are checked against the account only "
                    "with an API key (not offline)", csv_path)
    if names.unchecked:
        # Blame what named them: the CSV's cells, or the default profile's flag.
        flag = None if default_profile_id is None else default_profile_id.strip()
        by_flag = flag is not None and not is_profile_id(flag)
        cells = any(name != flag for name in names.unchecked_names) or not by_flag
        flag_text = "--profile-id (or profile_id in the job file)"
        where = (f"{csv_path} and {flag_text} name profiles" if cells and by_flag else
                 f"{flag_text} names its profile" if by_flag else f"{csv_path} names profiles")
        log.warning("warning %s by name; names are checked against the account only with an "
                    "API key (not offline)", where)
    for warning in report.warnings:
        log.warning("warning %s", warning)
    # One pass: the profiles are checked (with a key) and the duplicates compared even when
    # rows already failed, so every problem of the file is in the one error below.
    if client is not None:
        rejected += await _check_targets(journal, job_id, kind, csv_path, client, report,
                                         skip_invalid, default_id(default_profile_id))
    if rejected:
        await journal.add_rejected(job_id, rejected)
        report.rejected += len(rejected)
    if kind is Kind.MIGRATE:
        if report.error_count and not skip_invalid:
            raise InputError(problems_message(csv_path, report.errors, report.error_count))
        await journal.add_migrations(job_id, report.migrations)
        return report
    staged = await journal.finish_staging(job_id)
    profile_names = {} if names.names is None else names.names.id_names()
    if staged.conflict_count and skip_invalid:
        await _reject_conflicts(journal, job_id, csv_path, report)
        staged = await journal.finish_staging(job_id)
    if report.error_count and not skip_invalid:
        message = problems_message(csv_path, report.errors, report.error_count)
        if staged.conflict_count:
            message += "\n" + _conflicts_message(csv_path, staged, profile_names)
        raise InputError(message)
    _check_duplicates(csv_path, staged, profile_names)
    report.collapsed = staged.collapsed
    return report


async def _check_targets(journal: Journal, job_id: int, kind: Kind, csv_path: Path,
                         client: TelnyxClient, report: LoadReport,
                         skip_invalid: bool, default: str | None) -> list[Problem]:
    """Every target profile checked against the account: a missing one is an error of each
    row naming it, or with --skip-invalid those rows are rejected (returned). ``default``: the
    default profile's id (--profile-id, profile_id in the job file), blamed on the flag, not on
    the CSV rows it fills."""
    uses = (migration_profiles(report.migrations) if kind is Kind.MIGRATE
            else await journal.distinct_desired(job_id))
    missing = await missing_profiles(client, uses)
    report.profiles_checked = len(uses)
    if not missing:
        return []

    def why(profile_id: str) -> str:
        lines = ", ".join(str(n) for n in uses[profile_id])
        if profile_id == default:
            return (f"--profile-id (or profile_id in the job file): messaging profile "
                    f"{profile_id} does not exist on this account (it is the target of line(s) "
                    f"{lines}); `bulkops profiles` lists the account's")
        return (f"messaging profile {profile_id} does not exist on this account (used on "
                f"line(s) {lines}); `bulkops profiles` lists the account's")

    if not skip_invalid:
        for profile_id in missing:
            report.add(Problem(str(csv_path), uses[profile_id][0], why(profile_id)))
        return []
    rejected: list[Problem] = []
    if kind is Kind.MIGRATE:
        kept = []
        for row in report.migrations:
            bad = [p for p in (row.from_profile_id, row.to_profile_id) if p in missing]
            if bad:
                rejected.append(Problem(str(csv_path), row.line, why(bad[0]), cells=(
                    (FROM, row.from_profile_id), (TO, row.to_profile_id), *row.extra)))
            else:
                kept.append(row)
        report.migrations = kept
    else:
        for line, number, desired, extra in await journal.take_staged(job_id, profiles=missing):
            rejected.append(Problem(str(csv_path), line, why(desired), field=PROFILE,
                                    cells=((PHONE, number), (PROFILE, desired), *extra)))
    report.rows -= len(rejected)
    log.warning("warning %s: %d row(s) rejected: they name %d messaging profile(s) this "
                "account does not have", csv_path, len(rejected), len(missing))
    report.error_count += len(rejected)
    return rejected


async def _reject_conflicts(journal: Journal, job_id: int, csv_path: Path,
                            report: LoadReport) -> None:
    """--skip-invalid: a number two lines send to two targets is rejected on every line that
    names it (which target was meant cannot be known), and the rest runs."""
    numbers = await journal.conflicting_numbers(job_id)
    taken = await journal.take_staged(job_id, numbers=numbers)
    targets: dict[str, list[tuple[int, str]]] = {}
    for line, number, desired, _ in taken:
        targets.setdefault(number, []).append((line, desired or "unassigned"))
    problems = []
    for line, number, desired, extra in taken:
        others = "; ".join(f"line {n} to {d}" for n, d in targets[number] if n != line)
        problems.append(Problem(str(csv_path), line, f"{number} is also sent elsewhere ({others}); "
                                "every line naming it is rejected: keep one line for it",
                                field=PHONE, cells=((PHONE, number), (PROFILE, desired), *extra)))
    await journal.add_rejected(job_id, problems)
    report.rejected += len(problems)
    report.error_count += len(problems)
    report.rows -= len(problems)
    log.warning("warning %s: %d line(s) rejected: %d number(s) are sent to two targets",
                csv_path, len(problems), len(numbers))


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


def default_id(profile: str | None) -> str | None:
    """The default profile's id when it is given as one (a name is resolved, so it exists)."""
    if profile is None or not is_profile_id(profile):
        return None
    return normalize_profile_id(profile)


def _label(profile_id: str, names: Mapping[str, str]) -> str:
    """A target as the operator knows it: by name when the job named profiles by name."""
    if not profile_id:
        return "unassigned"
    name = names.get(profile_id)
    return f"{name!r} ({profile_id})" if name else profile_id


def _conflicts_message(csv_path: Path, staged: StagingResult, names: Mapping[str, str]) -> str:
    shown = [
        f"  {csv_path}:{c.line_a} and line {c.line_b}: {c.phone_number} is sent to "
        f"{_label(c.desired_a, names)} and to {_label(c.desired_b, names)}"
        for c in staged.conflicts
    ]
    more = staged.conflict_count - len(staged.conflicts)
    if more > 0:
        shown.append(f"  ... and {more} more")
    return (f"{csv_path} gives {staged.conflict_count} number(s) two different targets; "
            "nothing was sent.\n" + "\n".join(shown)
            + "\nKeep one line for each number and run the same command again, or pass "
            "--skip-invalid to reject every line of such a number and run the rest.")


def _check_duplicates(csv_path: Path, staged: StagingResult, names: Mapping[str, str]) -> None:
    if staged.conflicts:
        raise InputError(_conflicts_message(csv_path, staged, names))
    if staged.collapsed:
        lines = ", ".join(str(n) for n in staged.collapsed_lines)
        log.warning(
            "warning %s: %d duplicate row(s) with the same target were collapsed (lines %s%s)",
            csv_path, staged.collapsed, lines, ", ..." if staged.collapsed > len(staged.collapsed_lines) else "",
        )


async def missing_profiles(client: TelnyxClient, uses: dict[str, list[int]]) -> list[str]:
    """The profiles of ``uses`` the account does not have (a few reads at once)."""
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
    return [profile_id for profile_id in sorted(uses) if not found[profile_id]]


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
    names = await journal.profile_names()  # the CSV named profiles by name: say them so
    for migration in await journal.unlisted_migrations(job_id):
        numbers = await client.list_profile_numbers(migration.from_profile_id)
        codes = (await client.list_short_codes(migration.from_profile_id)) if short_codes else None
        await journal.add_listed_numbers(job_id, migration, numbers, codes)
        log.info("migration listed line=%d from=%s to=%s numbers=%d short_codes=%s",
                 migration.line, migration.from_profile_id, migration.to_profile_id, len(numbers),
                 "left behind" if codes is None else len(codes))
        if not numbers and not codes:
            log.warning("warning migrate CSV line %d: profile %s has 0 numbers%s; nothing moves "
                        "from it", migration.line, _label(migration.from_profile_id, names),
                        "" if codes is None else " and 0 short codes")
        listed += len(numbers) + len(codes or ())
    return listed

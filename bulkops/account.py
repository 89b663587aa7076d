"""The account as it is: its messaging profiles with their sizes, and an export of its numbers
and short codes.

Every job starts from a CSV; ``export`` writes one from the account itself, in the columns a
``set`` or ``assign`` job reads (``phone_number``, ``messaging_profile_id``) plus what helps a
person edit it (``messaging_profile_name``, ``type``, ``messaging_product``). Listings read
every page (the trap of a list cut at its first page) from ``GET /phone_numbers/messaging``,
then ``GET /short_codes``: a short code's line has its digits in ``phone_number`` (what a job
reads as a short code) and ``type`` ``short_code``.

An export file is written under a temporary name in the same folder and renamed only once
complete (mode 0600: it lists every number of the account), so a crash never leaves half a
file that looks whole.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

import anyio

from bulkops.errors import InputError
from bulkops.input.names import ProfileNames
from bulkops.input.phone import is_profile_id, normalize_profile_ref
# The export's type of a short code's line: what marks its digits as a short code for a job.
from bulkops.input.short_codes import SHORT_CODE_TYPE
from bulkops.models import AccountNumber, Profile, ShortCode
from bulkops.outputs import Inputs
from bulkops.progress import Tracker, show_progress
from bulkops.report import AtomicFile, inert
from bulkops.telnyx.client import TelnyxClient

log = logging.getLogger("bulkops")

EXPORT_COLUMNS = (
    "phone_number", "messaging_profile_id", "messaging_profile_name", "type", "messaging_product",
)
NUMBER_TYPES = ("longcode", "tollfree", "shortcode")
FORMATS = ("csv", "json")
COUNT_CONCURRENCY = 8  # profile counts read at once; they share the limiter anyway
_DIGITS = re.compile(r"\+?[0-9]{1,15}")


@dataclass(frozen=True, slots=True)
class ProfileCount:
    """A messaging profile and how many numbers it holds (``meta.total_results``)."""

    id: str
    name: str
    numbers: int
    short_codes: tuple[str, ...] = ()  # the digits of its short codes, ascending


async def profiles_with_counts(client: TelnyxClient) -> list[ProfileCount]:
    """Every profile (all pages), each counted with one small listing request, with its short
    codes (one listing of the account's short codes for all profiles)."""
    profiles = await client.list_profiles()
    codes: dict[str, list[str]] = {}
    for code in await client.list_short_codes():
        if code.profile_id:
            codes.setdefault(code.profile_id, []).append(code.short_code)
    counts: dict[str, int] = {}
    limit = anyio.Semaphore(COUNT_CONCURRENCY)

    async def count(profile: Profile) -> None:
        async with limit:
            counts[profile.id] = await client.count_numbers(profile.id)

    async with anyio.create_task_group() as tg:
        for profile in profiles:
            tg.start_soon(count, profile)
    return [ProfileCount(p.id, p.name, counts[p.id], tuple(sorted(codes.get(p.id, ()))))
            for p in profiles]


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """Which numbers to export; no profile and not ``unassigned``: the whole account."""

    profiles: tuple[str, ...] = ()  # ids or names, as given
    unassigned: bool = False  # also (or only) the numbers on no profile
    type: str | None = None
    contains: str | None = None

    def check(self) -> None:
        """InputError for a value no listing could take; before any request."""
        if self.type is not None and self.type not in NUMBER_TYPES:
            raise InputError(f"--type must be one of {', '.join(NUMBER_TYPES)}, not {self.type!r}")
        if self.contains is not None and not _DIGITS.fullmatch(self.contains.strip()):
            raise InputError(f"--contains takes digits (like 312555), not {self.contains!r}")
        for ref in self.profiles:
            try:
                normalize_profile_ref(ref)
            except ValueError as err:
                raise InputError(f"--profile: {err}") from None


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path | None  # None: written to stdout
    numbers: int  # phone numbers written
    profiles: int  # profiles on the account
    complete: bool = True  # False: the reader of stdout closed it before the end
    short_codes: int = 0  # short codes written, after the numbers


def _filters(query: ExportQuery) -> list[tuple[str, str]]:
    filters = []
    if query.type is not None:
        filters.append(("filter[type]", query.type))
    if query.contains is not None:
        filters.append(("filter[phone_number][contains]", query.contains.strip()))
    return filters


def _profile_ids(query: ExportQuery, names: ProfileNames) -> list[str]:
    """The ids of the profiles asked for; InputError for one the account does not have."""
    ids: list[str] = []
    for ref in query.profiles:
        text = normalize_profile_ref(ref)
        try:
            profile_id = names.resolve(text)
        except ValueError as err:
            raise InputError(f"--profile: {err}") from None
        if is_profile_id(text) and names.name_of(profile_id) is None:
            raise InputError(f"--profile: messaging profile {profile_id} does not exist on this "
                             "account; `bulkops profiles` lists them")
        ids.append(profile_id)
    return list(dict.fromkeys(ids))


class _Writer:
    """CSV or JSON rows into an open text stream."""

    def __init__(self, handle: IO[str], fmt: str, names: ProfileNames) -> None:
        self.handle = handle
        self.json = fmt == "json"
        self.names = names.id_names()
        self.csv = csv.writer(handle, lineterminator="\n")
        self.rows = 0
        self.short_codes = 0
        if self.json:
            handle.write("[")
        else:
            self.csv.writerow(EXPORT_COLUMNS)

    def write(self, numbers: Sequence[AccountNumber]) -> None:
        for n in numbers:
            profile = n.profile_id or ""
            name = self.names.get(profile, "") if profile else ""
            if self.json:
                record = dict(zip(EXPORT_COLUMNS, (n.phone_number, profile, name, n.type,
                                                   n.messaging_product)))
                self.handle.write(("\n" if not self.rows else ",\n") + json.dumps(record))
            else:
                # A name is the account owner's text: keep a spreadsheet from running it.
                self.csv.writerow((n.phone_number, profile, inert(name), n.type,
                                   n.messaging_product))
            self.rows += 1

    def write_short_codes(self, codes: Sequence[ShortCode]) -> None:
        """Short codes as lines a job reads back: their digits where a number goes."""
        self.write([AccountNumber(c.short_code, c.profile_id, SHORT_CODE_TYPE, "")
                    for c in codes])
        self.short_codes += len(codes)

    def close(self) -> None:
        if self.json:
            self.handle.write("\n]\n" if self.rows else "]\n")


async def _list_into(client: TelnyxClient, writer: _Writer, query: ExportQuery,
                     ids: list[str], interactive: bool) -> None:
    """Every page of the listings ``query`` needs into ``writer``, with progress."""
    filters = _filters(query)
    # One listing per profile; "unassigned" has no filter (API-NOTES), so it is the whole
    # listing with the assigned numbers dropped (and those of the profiles asked kept).
    if query.unassigned or not ids:
        listings = [filters]
        keep: set[str | None] | None = {None, *ids} if query.unassigned else None
    else:
        listings = [[("filter[messaging_profile_id]", i), *filters] for i in ids]
        keep = None
    seen: set[str] = set()
    tracker: Tracker | None = None
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        try:
            for listing in listings:
                first = True
                async for page, total in client.account_numbers(listing):
                    if tracker is None:
                        tracker = Tracker("export", 0)
                        tg.start_soon(partial(show_progress, tracker, interactive=interactive))
                    if first:  # each listing's own total, known from its first page
                        tracker.total += total
                        first = False
                    tracker.done += len(page)
                    fresh = [n for n in page if n.phone_number not in seen
                             and (keep is None or n.profile_id in keep)]
                    seen.update(n.phone_number for n in fresh)
                    writer.write(fresh)
        except Exception as exc:  # raised below as itself, never inside an exception group
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    await _short_codes_into(client, writer, query, ids)


async def _short_codes_into(client: TelnyxClient, writer: _Writer, query: ExportQuery,
                            ids: list[str]) -> None:
    """The short codes ``query`` selects, after the numbers: by profile, unbound (the listing's
    ``null`` filter), or all; none when --type asks for long codes or toll-free numbers."""
    if query.type not in (None, "shortcode"):
        return
    if query.unassigned or not ids:
        codes = await client.list_short_codes(unbound=query.unassigned and not ids)
        if query.unassigned and ids:
            codes = [c for c in codes if c.profile_id in {None, *ids}]
    else:
        codes = [c for i in ids for c in await client.list_short_codes(i)]
    needle = (query.contains or "").strip().lstrip("+")
    chosen = sorted((c for c in codes if needle in c.short_code), key=lambda c: c.short_code)
    writer.write_short_codes(chosen)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


async def export(
    client: TelnyxClient,
    output: Path | None,
    query: ExportQuery,
    fmt: str = "csv",
    *,
    interactive: bool = False,
    force: bool = False,
    inputs: Inputs = (),
) -> ExportResult:
    """Write the numbers ``query`` selects to ``output`` (None: stdout), every page read;
    ``output`` is refused as ``AtomicFile`` refuses (``force``, ``inputs``)."""
    query.check()
    if fmt not in FORMATS:
        raise InputError(f"--format must be csv or json, not {fmt!r}")
    target = (None if output is None else  # a bad path fails first
              AtomicFile(output, "export", inputs=inputs, force=force))
    names = ProfileNames(())
    writer: _Writer | None = None
    try:
        names = ProfileNames.of(await client.list_profiles())
        ids = _profile_ids(query, names)  # a wrong --profile fails before a byte is written
        writer = _Writer(target.handle if target else sys.stdout, fmt, names)
        await _list_into(client, writer, query, ids, interactive)
        writer.close()
        if target is not None:
            target.commit()
        else:
            sys.stdout.flush()
    except BrokenPipeError:  # `export --output - | head`: the reader has all it wanted
        if target is not None:
            target.abandon()
            raise
        _silence_stdout()
        log.info("export stopped: stdout was closed")
        return ExportResult(None, writer.rows if writer else 0, len(names.profiles), complete=False)
    except BaseException:
        if target is not None:
            target.abandon()
        raise
    log.info("export done numbers=%d short_codes=%d output=%s", writer.rows - writer.short_codes,
             writer.short_codes, output or "stdout")
    return ExportResult(output, writer.rows - writer.short_codes, len(names.profiles),
                        short_codes=writer.short_codes)

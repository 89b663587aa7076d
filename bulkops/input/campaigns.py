"""Reading a 10DLC campaign-link CSV: ``phone_number,campaign_id``, validated before anything is sent.

A row says which campaign a number must end on; an empty ``campaign_id`` cell means "no
campaign" (its link is removed). ``--campaign-id C`` (``default_campaign``) links every row to
C instead, and then the file must not have a ``campaign_id`` column: an empty cell would be
ambiguous between "remove" and "use C", and guessing wrong removes links.

Checks, each a ``Problem`` naming file, line, column and what to do:
- the number is valid (``input.phone``) and a US long code (``us_long_code_problem``:
  ``phonenumbers`` says region US (or a US territory) and a fixed-line or mobile range, so
  toll-free, Canadian and Caribbean numbers are refused: 10DLC is for US long codes only);
- the campaign id is one (``normalize_campaign_id``; Telnyx ids are not strict UUIDs);
- a number named twice: the same campaign is a warning (the later row is ignored), two
  campaigns are an error naming both lines. The check keeps two ints per distinct number
  (about 100 bytes each); the pipeline may turn it off and find duplicates in its journal.

The CSV handling (bounded lines, bad bytes, cell counts, malformed quotes, empty files) is the
job CSV reader's (``input.rows._Reader``): this module supplies the header and row rules.

What needs the account (the number is on it and on a messaging profile, the campaign exists
and can take numbers) is checked by the caller against its snapshot: ``account_problem`` here,
``bulkops.telnyx.campaigns.check_campaign`` there.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, cast

import phonenumbers
from phonenumbers import PhoneNumberType

from bulkops.errors import InputError
from bulkops.input.header import PHONE, SAVE_AS_UTF8, header_key
from bulkops.input.phone import (
    NANP_BLOCK_DIGITS, NANP_EXCHANGE_DIGITS, SEVEN_DIGIT_NPAS, formula_problem, looks_like_phone,
    normalize_phone, normalize_region, quote_cell,
)
from bulkops.input.rows import _Reader
from bulkops.models import Extra, Kind, NumberState, Problem, Severity

CAMPAIGN = "campaign_id"
NO_CAMPAIGN = ""  # the desired campaign of a row whose link is to be removed
COLUMNS = f"{PHONE},{CAMPAIGN}"
# Header spellings taken for each column (after header_key: trimmed, lower case, "_" for spaces).
_ALIASES = {PHONE: (PHONE, "phonenumber"), CAMPAIGN: (CAMPAIGN, "campaignid", "campaign")}
MAX_CAMPAIGN_CHARS = 64
_CAMPAIGN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
CAMPAIGN_EXAMPLE = "4b300178-131c-d902-d54e-72d90ba1620j"

CampaignEntry: TypeAlias = "CampaignRow | Problem"


@dataclass(frozen=True, slots=True)
class CampaignRow:
    """A valid row: ``phone_number`` must end linked to ``campaign_id`` (NO_CAMPAIGN: no link)."""

    line: int
    phone_number: str  # E.164, a US long code
    campaign_id: str
    extra: Extra = ()


def normalize_campaign_id(text: str) -> str:
    """A campaign id as written (trimmed); ValueError quoting the cell when it cannot be one.

    Telnyx campaign ids are UUID-like but not strict UUIDs (the SDK's own example ends in
    ``j``), and TCR ids are short alphanumerics, so letters, digits, ``-`` and ``_`` are
    accepted as they are, case kept.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("the campaign id is empty")
    formula = formula_problem(stripped)
    if formula:
        raise ValueError(formula)
    if len(stripped) > MAX_CAMPAIGN_CHARS or not _CAMPAIGN_ID.fullmatch(stripped):
        raise ValueError(
            f"{quote_cell(text)} is not a 10DLC campaign id; write the campaign's id like "
            f"{CAMPAIGN_EXAMPLE} (the Telnyx portal's 10DLC Campaigns page lists them)"
        )
    return stripped


# The US and its territories (numbering under US carriers; whether Telnyx's 10DLC takes the
# territories' numbers is unconfirmed: a refusal there is a failed row with Telnyx's reason).
US_REGIONS = frozenset({"US", "PR", "VI", "GU", "AS", "MP"})
_LONG_CODE_TYPES = frozenset({PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE,
                              PhoneNumberType.FIXED_LINE_OR_MOBILE})
_TYPE_NAMES = {
    PhoneNumberType.TOLL_FREE: "a toll-free number (toll-free numbers are verified, not linked to 10DLC campaigns)",
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.PERSONAL_NUMBER: "a personal (5XX) number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.VOIP: "a VoIP number",
    PhoneNumberType.UAN: "a UAN number",
}
_long_code_cache: dict[str, str | None] = {}


def us_long_code_problem(e164: str) -> str | None:
    """Why a valid E.164 number is not a US long code, else None.

    Cached by exchange (6 national digits, 7 in the NPAs split by thousands blocks): region and
    number type depend on no later digit in the phonenumbers metadata, which
    ``tests/test_phone.py`` re-derives on every install (the same fact the validity cache uses).
    """
    if not e164.startswith("+1") or len(e164) != 12:
        return f"{e164} is not a US number; 10DLC campaigns take US long codes only"
    national = e164[2:]
    key = national[:NANP_BLOCK_DIGITS] if national[:3] in SEVEN_DIGIT_NPAS else national[:NANP_EXCHANGE_DIGITS]
    if key in _long_code_cache:
        cached = _long_code_cache[key]
        return None if cached is None else f"{e164} is {cached}"
    number = phonenumbers.parse(e164)
    region = phonenumbers.region_code_for_number(number)
    what: str | None = None
    if region not in US_REGIONS:
        what = f"a {region or 'non-US'} number, not a US one; 10DLC campaigns take US long codes only"
    else:
        kind = phonenumbers.number_type(number)
        if kind not in _LONG_CODE_TYPES:
            name = _TYPE_NAMES.get(kind, "not a long code")
            what = f"{name}; 10DLC campaigns take US long codes only"
    if len(_long_code_cache) < 100_000:
        _long_code_cache[key] = what
    return None if what is None else f"{e164} is {what}"


def account_problem(phone_number: str, state: NumberState | None) -> str | None:
    """Why a row's number cannot be linked, from the account's view of it (None: it can).

    ``state`` is the number in the snapshot (None: the account does not have it). A number
    must be on a messaging profile before it takes a campaign (the notes, "Preconditions").
    """
    if state is None:
        return (f"{phone_number} is not on this Telnyx account; check the number "
                "(`bulkops export` lists the account's)")
    if not state.profile_id:
        return (f"{phone_number} is on no messaging profile, and a number must be on one before "
                "it is linked to a campaign; assign it first (bulkops run --kind assign)")
    return None


class _Duplicates:
    """Which line first named each number, and with which campaign, in two ints per number."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}  # number digits -> line << 20 | campaign index
        self._campaigns: dict[str, int] = {}
        self._names: list[str] = []

    def check(self, row: CampaignRow) -> tuple[int, str] | None:
        """(line, campaign) of an earlier row for the same number, or None (remembers this one)."""
        index = self._campaigns.get(row.campaign_id)
        if index is None:
            index = self._campaigns[row.campaign_id] = len(self._names)
            self._names.append(row.campaign_id)
        key = int(row.phone_number[1:])
        earlier = self._seen.get(key)
        if earlier is None:
            self._seen[key] = row.line << 20 | index
            return None
        return earlier >> 20, self._names[earlier & 0xFFFFF]


def _shown(campaign_id: str) -> str:
    return f"campaign {campaign_id}" if campaign_id else "no campaign (an empty cell)"


class _CampaignReader(_Reader):
    """The job CSV reader with the campaign file's header and row rules."""

    def __init__(self, path: Path, default_campaign: str | None, region: str, check_duplicates: bool) -> None:
        # The base __init__ is not called: its parameters are the job kinds' (and change with
        # them); these are the attributes its CSV handling reads. Kind.SET only keeps its
        # kind-specific branches out of the way.
        self.path = path
        self.name = str(path)
        self.kind = Kind.SET
        self.region = region
        self.line_num = 0
        self.index: dict[str, int] = {}
        self.phone_at = 0
        self.headers: tuple[str, ...] = ()
        self.extra_columns: tuple[tuple[int, str], ...] = ()
        self.column_names: tuple[str, ...] = ()
        self.default_campaign = default_campaign
        self.campaign_at: int | None = None
        self.duplicates = _Duplicates() if check_duplicates else None

    def _expected(self) -> str:
        return PHONE if self.default_campaign is not None else COLUMNS

    def _read_header(self, reader: Iterator[list[str]]) -> tuple[int, int]:
        end = start = 0
        try:
            for cells in reader:
                start, end = end + 1, self.line_num
                if any(c.strip() for c in cells):
                    break
            else:
                raise self._fail(0, f"the file is empty; it needs a header line {self._expected()}")
        except csv.Error as err:
            raise self._csv_error(err, end + 1) from None
        self._check_header(cells, start)
        return len(cells), start

    def _check_header(self, header: list[str], line: int) -> None:
        for column, cell in enumerate(header, 1):
            text = cell.strip()
            if "\x00" in text or any("\udc80" <= c <= "\udcff" for c in text):
                raise self._fail(line, f"the header is not UTF-8 text; {SAVE_AS_UTF8}", column=column)
            if looks_like_phone(text, self.region):
                raise self._fail(
                    line,
                    f"this looks like data, not a header ({quote_cell(text)} is a phone number); "
                    f"add a first line with the column names {self._expected()}",
                    column=column,
                )
        keys = [header_key(c) for c in header]
        self.headers = tuple(c.strip() or f"column{i}" for i, c in enumerate(header, 1))
        for name, spellings in _ALIASES.items():
            places = [i for i, k in enumerate(keys) if k in spellings]
            if len(places) > 1:
                where = " and ".join(str(i + 1) for i in places)
                raise self._fail(line, f"the column {name} appears twice (columns {where}); keep only one")
            if places:
                self.index[name] = places[0]
        found = ",".join(c.strip() for c in header)
        if PHONE not in self.index:
            raise self._fail(line, f"missing column {PHONE}; the header is {quote_cell(found, 80)} "
                                   f"and needs {self._expected()}")
        if self.default_campaign is None and CAMPAIGN not in self.index:
            raise self._fail(line, f"missing column {CAMPAIGN}; the header is {quote_cell(found, 80)} "
                                   f"and needs {COLUMNS}, or give one campaign for every row with --campaign-id")
        if self.default_campaign is not None and CAMPAIGN in self.index:
            raise self._fail(
                line,
                f"the file has a {CAMPAIGN} column and --campaign-id is given, so an empty cell could "
                f"mean either; drop --campaign-id to use the column, or remove the column",
                column=self.index[CAMPAIGN] + 1,
            )
        self.phone_at = self.index[PHONE]
        self.campaign_at = self.index.get(CAMPAIGN)
        used = set(self.index.values())
        self.extra_columns = tuple((i, h) for i, h in enumerate(self.headers) if i not in used)
        names = list(self.headers)
        for name, position in self.index.items():
            names[position] = name
        self.column_names = tuple(names)

    def _number_row(self, cells: list[str], line: int) -> CampaignEntry | list[CampaignEntry]:  # type: ignore[override]
        problems: list[CampaignEntry] = []
        phone = ""
        try:
            phone = normalize_phone(cells[self.phone_at], self.region)
        except ValueError as err:
            problems.append(self._problem(line, PHONE, f"{err}", cells=cells))
        else:
            long_code = us_long_code_problem(phone)
            if long_code is not None:
                problems.append(self._problem(line, PHONE, f"{long_code}; remove the row", cells=cells))
        campaign = self.default_campaign
        if campaign is None:
            assert self.campaign_at is not None
            cell = cells[self.campaign_at]
            campaign = NO_CAMPAIGN
            if cell:
                try:
                    campaign = normalize_campaign_id(cell)
                except ValueError as err:
                    problems.append(self._problem(line, CAMPAIGN, str(err), cells=cells))
        if problems:
            return problems
        row = CampaignRow(line, phone, campaign, self._extra(cells))
        earlier = self.duplicates.check(row) if self.duplicates is not None else None
        if earlier is None:
            return row
        first, first_campaign = earlier
        if first_campaign == campaign:
            return self._problem(line, PHONE, f"duplicates line {first}; this row is ignored", Severity.WARNING)
        return self._problem(
            line,
            CAMPAIGN if self.campaign_at is not None else PHONE,
            f"line {first} links {phone} to {_shown(first_campaign)} and this line to {_shown(campaign)}; "
            f"a number takes one campaign: keep line {first} or line {line}",
            cells=cells,
        )


def read_campaign_rows(
    path: Path,
    *,
    default_campaign: str | None = None,
    default_region: str = "US",
    check_duplicates: bool = True,
) -> Iterator[CampaignEntry]:
    """Validated rows of a campaign-link CSV, in file order, streamed: ``CampaignRow`` or ``Problem``.

    Raises InputError at once for whole-file problems (no such file, a bad header, a bad
    ``default_campaign`` or region), and while iterating if the CSV structure breaks.
    """
    try:
        region = normalize_region(default_region)
    except ValueError as err:
        raise InputError(f"default region: {err}") from None
    default: str | None = None
    if default_campaign is not None:
        try:
            default = normalize_campaign_id(default_campaign)
        except ValueError as err:
            raise InputError(f"--campaign-id: {err}") from None
    rows = _CampaignReader(path, default, region, check_duplicates).rows()
    next(rows)  # runs the header checks, so their InputError raises here
    return cast(Iterator[CampaignEntry], rows)

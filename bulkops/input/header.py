"""Reading and checking the header row of a job CSV.

A wrong header is the most common way a job file is wrong, and it must stop the job before
anything is sent: this module maps the header onto the columns a job kind needs and explains,
in one message, what is missing, duplicated, or why the first line looks like data.

Decisions worth knowing:
- Header names are trimmed, case-folded, and spaces/hyphens count as ``_``
  (``Phone Number`` == ``phone_number``).
- A first line holding a phone number or a profile id is data, not a header: the file lacks one.
- A missing column never suggests an unassign job (see ``_kind_hint``).
- A header separated by ``;``, tabs or ``|`` (a "CSV" saved by a spreadsheet in many locales)
  is named as such, not reported as missing every column.
- A column the job reads that is absent while another column's name resembles it (a letter
  or two off, no separators, or a name people use for it: ``messaging_profle_id``,
  ``MessagingProfileId``, ``profile_id``, ``phone``) is an error naming both: it is never
  ignored while a default (``--profile-id``) fills in (see ``_resembling``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bulkops.errors import InputError
from bulkops.input.phone import looks_like_phone, normalize_profile_id, quote_cell
from bulkops.models import Kind, Problem

PHONE = "phone_number"
PROFILE = "messaging_profile_id"
FROM = "from_profile_id"
TO = "to_profile_id"

REQUIRED_COLUMNS: dict[Kind, tuple[str, ...]] = {
    Kind.ASSIGN: (PHONE, PROFILE),  # PROFILE may be absent when a default profile is given
    Kind.UNASSIGN: (PHONE,),
    Kind.MIGRATE: (FROM, TO),
    Kind.SET: (PHONE, PROFILE),  # an empty PROFILE cell means unassigned
}

SAVE_AS_UTF8 = 'save it as UTF-8 (in Excel: "CSV UTF-8 (Comma delimited)")'

_SEPARATORS = re.compile(r"[\s\-]+")

# Names people give a column bulkops reads, beyond a letter or two off (compared compact:
# lower case, without separators). Never a column bulkops writes itself, like the export's
# messaging_profile_name: that one is a legitimate extra column.
_ALIASES: dict[str, tuple[str, ...]] = {
    PHONE: ("phone", "number", "numbers", "phoneno", "telephone", "telephonenumber", "tn", "did",
            "e164", "msisdn", "mobile", "mobilenumber", "cell", "phonenumbers"),
    PROFILE: ("profile", "profileid", "profileuuid", "messagingprofile", "messagingprofileuuid",
              "msgprofileid"),
    FROM: ("from", "fromprofile", "source", "sourceprofile", "sourceprofileid", "oldprofile",
           "oldprofileid", "fromid"),
    TO: ("to", "toprofile", "target", "targetprofile", "targetprofileid", "newprofile",
         "newprofileid", "toid"),
}


@dataclass(frozen=True, slots=True)
class Header:
    """An accepted header: where each column is, and what to call each position."""

    width: int  # cells in the header row; data rows are padded or trimmed to it
    index: dict[str, int]  # required (or PROFILE) column name -> 0-based position
    headers: tuple[str, ...]  # trimmed header names, ``columnN`` for blank ones
    extra_columns: tuple[tuple[int, str], ...]  # (position, header) of the other columns


def a_kind(kind: Kind) -> str:
    """``an assign`` / ``a migrate``: the kind with its article, for messages."""
    return ("an " if kind.value[0] in "aeiou" else "a ") + kind.value


def header_key(name: str) -> str:
    """The comparable form of a header name (trimmed, lower case, ``_`` for spaces/hyphens)."""
    return _SEPARATORS.sub("_", name.strip().lower())


def expected_columns(kind: Kind, default: str | None) -> str:
    """The columns a ``kind`` job needs, for messages (a default profile drops PROFILE)."""
    columns = REQUIRED_COLUMNS[kind]
    if kind is Kind.ASSIGN and default is not None:
        columns = (PHONE,)
    return f"{','.join(columns)} for {a_kind(kind)} job"


def _fail(name: str, line: int, message: str, column: int | None = None) -> InputError:
    return InputError(str(Problem(name, line, message, column=column)))


def _reject_data_or_bad_text(
    name: str, header: list[str], line: int, kind: Kind, default: str | None, region: str
) -> None:
    """Raise for a header cell with NULs or bad bytes, or that looks like a data value."""
    for column, cell in enumerate(header, 1):
        text = cell.strip()
        if "\x00" in text:
            raise _fail(
                name,
                line,
                f"the header holds NUL bytes (a UTF-16 or binary file?); {SAVE_AS_UTF8}",
                column=column,
            )
        if any("\udc80" <= c <= "\udcff" for c in text):
            raise _fail(
                name, line, f"the header is not UTF-8 text; {SAVE_AS_UTF8}", column=column
            )
        what = None
        if looks_like_phone(text, region):
            what = "a phone number"
        else:
            try:
                normalize_profile_id(text)
                what = "a profile id"
            except ValueError:
                pass
        if what:
            raise _fail(
                name,
                line,
                f"this looks like data, not a header ({quote_cell(text)} is {what}); "
                f"add a first line with the column names {expected_columns(kind, default)}",
                column=column,
            )


def _compact(key: str) -> str:
    return re.sub(r"[^0-9a-z]", "", key.lower())


def _distance(a: str, b: str, limit: int) -> int:
    """Edit distance (insert, delete, substitute, swap two neighbours), stopped past ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] | None = None
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + (ca != cb))
            if before is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], before[j - 2] + 1)
        before, row = row, current
    return row[-1]


def _resembling(column: str, headers: list[str]) -> tuple[int, str] | None:
    """(position, header) of the header cell that looks like the absent ``column``."""
    target = _compact(column)
    best: tuple[int, int, str] | None = None
    for i, header in enumerate(headers):
        name = _compact(header)
        if not name:
            continue
        if name == target or name in _ALIASES[column]:
            score = 0
        else:
            score = _distance(name, target, 2)
            if score > (2 if len(target) >= 8 else 1):
                continue
        if best is None or score < best[0]:
            best = (score, i, header.strip())
    return None if best is None else (best[1], best[2])


def _reject_resembling(name: str, header: list[str], line: int, kind: Kind,
                       index: dict[str, int], default: str | None) -> None:
    """An error for each column the job reads that is absent while another looks like it."""
    reads = REQUIRED_COLUMNS[kind]  # an assign job's PROFILE is among them, default or not
    taken = set(index.values())
    found = []
    for column in reads:
        if column in index:
            continue
        near = _resembling(column, [h if i not in taken else "" for i, h in enumerate(header)])
        if near is not None:
            found.append((column, *near))
    if not found:
        return
    parts = [f"column {i + 1} {quote_cell(h)} looks like {c}; rename it to {c}" for c, i, h in found]
    if kind is Kind.ASSIGN and default is not None and any(c == PROFILE for c, _, _ in found):
        parts.append("as it is, every row would go to the default profile (--profile-id, or "
                     "profile_id in the job file) and this column would be ignored; if it is "
                     "not a profile column, rename it to something unlike messaging_profile_id")
    raise _fail(name, line, "; ".join(parts) + "; nothing was sent")


def _kind_hint(kind: Kind, keys: list[str]) -> str:
    """A hint naming the job kind whose columns the header does have, if any."""
    # Never suggest unassign: "run it as an unassign job" on an assign file whose profile
    # column is misspelt would take every number off its profile.
    fits = [a_kind(other) for other, cols in REQUIRED_COLUMNS.items()
            if other not in (kind, Kind.UNASSIGN) and all(c in keys for c in cols)]
    if not fits:
        return ""
    return f"; this looks like {' or '.join(fits)} file: run it as {' or '.join(fits)} job"


# What spreadsheets in other locales separate cells with, named for the message.
_OTHER_SEPARATORS = ((";", "semicolons (;)"), ("\t", "tabs"), ("|", "vertical bars (|)"))


def _reject_other_separator(name: str, header: list[str], line: int, kind: Kind,
                            default: str | None) -> None:
    """A header written with another separator (Excel in many locales saves "CSV" with ``;``)
    reads as one cell: name the separator instead of calling every column missing."""
    for char, what in _OTHER_SEPARATORS:
        cells = [c for c in header if char in c]
        if not cells:
            continue
        parts = [header_key(part) for cell in cells for part in cell.split(char)]
        known = {c for cols in REQUIRED_COLUMNS.values() for c in cols} | {PROFILE}
        if len(header) == 1 or any(part in known for part in parts):
            raise _fail(
                name, line,
                f"the header {quote_cell(char.join(header) if len(header) > 1 else header[0], 80)}"
                f" is separated by {what}, but bulkops reads comma-separated CSV; export it again "
                f"as CSV with commas (in Excel: \"CSV UTF-8 (Comma delimited)\"), with the "
                f"columns {expected_columns(kind, default)}",
            )


def check_header(
    name: str, header: list[str], line: int, kind: Kind, default: str | None, region: str
) -> Header:
    """Map the columns of ``header`` (line ``line`` of file ``name``) for a ``kind`` job.

    Raises InputError for a data row, bad text, another separator than the comma, a missing
    or a duplicated column.
    """
    _reject_other_separator(name, header, line, kind, default)
    _reject_data_or_bad_text(name, header, line, kind, default, region)
    keys = [header_key(c) for c in header]
    headers = tuple(c.strip() or f"column{i}" for i, c in enumerate(header, 1))
    wanted = REQUIRED_COLUMNS[kind]
    index: dict[str, int] = {}
    for column in (*wanted, PROFILE):
        places = [i for i, k in enumerate(keys) if k == column]
        if len(places) > 1:
            where = " and ".join(str(i + 1) for i in places)
            raise _fail(
                name, line, f"the column {column} appears twice (columns {where}); keep only one"
            )
        if places:
            index[column] = places[0]
    _reject_resembling(name, header, line, kind, index, default)
    missing = [c for c in wanted if c not in index]
    if kind is Kind.ASSIGN and default is not None and PROFILE in missing:
        missing.remove(PROFILE)
    if missing:
        found = ",".join(c.strip() for c in header)
        hint = _kind_hint(kind, keys)
        if kind is Kind.ASSIGN and missing == [PROFILE]:
            hint += "; or give a default profile (--profile-id, or profile_id in the job file)"
        raise _fail(
            name,
            line,
            f"missing column {', '.join(missing)}; the header is {quote_cell(found, 80)} "
            f"and needs {expected_columns(kind, default)}{hint}",
        )
    used = {index[c] for c in wanted if c in index}
    extra = tuple((i, h) for i, h in enumerate(headers) if i not in used)
    return Header(len(header), index, headers, extra)

"""Short codes named in a job's rows: telling one from a phone number, and finding its id.

Where a phone number goes (the ``phone_number`` column) a row may name a short code instead
(docs/short-codes.md): by its UUID as the account lists it (a UUID is never a phone number),
or by its digits (3 to 8, nothing else) on a row whose ``type`` column says ``short_code``, as
``bulkops export`` writes it. Digits alone stay a phone number (``312555`` is a number written
wrong, not a short code), so every file read before reads the same, and a file with no short
code never makes a request for them. The journal keys a short code by its digits (a phone
number always starts with "+", so the two never meet) and writes it through its UUID; both
come from one listing of the account's short codes (``GET /short_codes``), taken when the
first short code is met. A short code that listing does not have is an error of its row
before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from bulkops.input.phone import quote_cell
from bulkops.models import ShortCode

SHORT_CODE_TYPE = "short_code"  # the ``type`` cell that marks a row's digits as a short code
TYPE_COLUMN = "type"
_DIGITS = re.compile(r"[0-9]{3,8}")
_UUID = re.compile(r"\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?")
WRITE_ONE = ("if it is a short code, write short_code in a `type` column of its row (as "
             "`bulkops export` does) or give its UUID")


class NeedShortCodes(Exception):
    """A short code was met before the account's short codes were listed: list them, read on."""


def short_code_ref(text: str, *, marked: bool) -> str | None:
    """The short code a phone-number cell names: its UUID lower-cased, or (on a row ``marked``
    by its type) its digits; else None."""
    text = text.strip()
    if marked and _DIGITS.fullmatch(text):
        return text
    match = _UUID.fullmatch(text)
    return match.group(1).lower() if match else None


@dataclass
class ShortCodeLookup:
    """Short codes met while reading one job's input, resolved against one listing.

    ``resolve`` raises ``NeedShortCodes`` for the first one met before the listing; without a
    connection to the account (``offline``) they are kept as written, unchecked."""

    offline: bool = False
    by_digits: dict[str, ShortCode] | None = None
    by_id: dict[str, ShortCode] = field(default_factory=dict)
    unchecked: bool = False  # offline, and a short code was met

    def load(self, codes: Iterable[ShortCode]) -> None:
        listed = list(codes)
        self.by_digits = {c.short_code: c for c in listed}
        self.by_id = {c.id.lower(): c for c in listed}

    def resolve(self, ref: str) -> tuple[str, str | None]:
        """(digits, UUID) of the short code ``ref`` names; ValueError if the account has none."""
        if self.by_digits is None:
            if self.offline:
                self.unchecked = True
                return ref, None
            raise NeedShortCodes(ref)
        found = self.by_id.get(ref) if "-" in ref else self.by_digits.get(ref)
        if found is None:
            what = (f"short code {ref}" if "-" not in ref else
                    f"{quote_cell(ref)} (a UUID in the phone_number column names a short code)")
            raise ValueError(f"{what} is not on this account: no short code the account lists "
                             "has it; check it against `bulkops export` (it lists the account's "
                             "short codes), or remove the row")
        return found.short_code, found.id

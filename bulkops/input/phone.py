"""Phone number and profile id normalisation for CSV cells.

Every number is checked with ``phonenumbers`` (parse + ``is_valid_number``), but that costs
~60 us a call, too slow for million-row files. The common NANP shapes (``+13125550101``,
``(312) 555-0101``, ``13125550101``) take a fast path: the digits are pulled out with
``str.translate`` and validity is looked up per exchange (NPA-NXX, 6 national digits) in a
fixed 1 MB table. That cache is exact, not a heuristic: in the ``phonenumbers`` metadata no
NANP pattern looks past the 6th national digit, except in a few area codes that are split by
thousands blocks (7th digit), which get a 7-digit key. ``tests/test_phone.py`` re-derives both
facts from the installed metadata, so an upgrade that breaks them fails CI instead of letting
a bad number through.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

# National digits that decide NANP validity; see the module docstring and the guard test.
NANP_EXCHANGE_DIGITS = 6
NANP_BLOCK_DIGITS = 7
SEVEN_DIGIT_NPAS = frozenset({"246", "876"})  # Barbados, Jamaica: split by thousands blocks
# Validity of every NPA-NXX, filled as met. A fixed 1 MB whatever the file holds, so memory
# stays flat on a million scattered numbers.
_UNKNOWN, _VALID, _INVALID, _BY_BLOCK = 0, 1, 2, 3
_EXCHANGE_STATE = bytearray(10**NANP_EXCHANGE_DIGITS)

NANP_REGIONS: frozenset[str] = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1])
E164_EXAMPLE = "+13125550101"

# Formatting people and spreadsheets put in numbers; deleted before the fast-path shape test.
_PUNCTUATION = str.maketrans("", "", " ()-.\t")
# After a leading "+": a letter (a function name, a cell) or an operator makes it a formula.
_PLUS_FORMULA = re.compile(r"\+\s*[^\W\d_]|\+.*[+*/^=&<>]", re.DOTALL)
# 1.31255E+10: Excel turned a long number into a float and lost digits.
_SCIENTIFIC = re.compile(r"\d(?:[.,]\d+)?[eE]\+?\d+")
# 12015553641.0: a spreadsheet read the column as numbers and wrote them back as floats.
_FLOAT = re.compile(r"\+?\d{6,}[.,]0+")
_E164_NANP = re.compile(r"\+1[2-9][0-9]{9}")
_UUID = re.compile(
    r"\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?"
)

_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "no area code",
    ValidationResult.IS_POSSIBLE: "not a number range in use",
}


def quote_cell(text: str, limit: int = 40) -> str:
    """Quote a cell for a message: shortened, control chars and undecodable bytes escaped.

    Cells may hold lone surrogates (bytes that were not UTF-8); printing those raw would
    crash the terminal writer, so they come out as ``\\xNN``.
    """
    short = text if len(text) <= limit else text[:limit] + "..."
    raw = short.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in raw)
    return '"' + out.replace('"', '\\"') + '"'


def formula_problem(text: str) -> str | None:
    """Why ``text`` is a spreadsheet formula, or None.

    ``=`` and ``@`` always start a formula. ``+`` starts one when a letter follows it or an
    operator appears later (``+SUM(A1)``, ``+A1``, ``+1+2``); ``+1 (312) 555-0101`` is a number
    and ``+13125550101 ext 5`` is refused later for its letters.
    ``-`` always counts: no phone number or UUID starts with it, and a spreadsheet evaluates
    ``-1+2``; refusing it also stops CSV injection when the report is opened in a spreadsheet.
    """
    if not text:
        return None
    first = text[0]
    if first in "=@-" or (first == "+" and _PLUS_FORMULA.match(text)):
        return (
            f"{quote_cell(text)} looks like a spreadsheet formula; "
            "remove the formula; export values only"
        )
    return None


def _prefix_is_valid(prefix: str) -> bool:
    """Whether +1 numbers starting with these national digits are valid (all are, or none)."""
    national = int(prefix + "0" * (10 - len(prefix)))
    number = phonenumbers.PhoneNumber(country_code=1, national_number=national)
    return bool(phonenumbers.is_valid_number(number))


_block_is_valid = lru_cache(maxsize=4096)(_prefix_is_valid)  # at most 2 x 10,000 blocks exist


def nanp_is_valid(national: str) -> bool:
    """``phonenumbers.is_valid_number`` for +1 and 10 national digits, cached per exchange."""
    key = int(national[:NANP_EXCHANGE_DIGITS])
    state = _EXCHANGE_STATE[key]
    if state == _UNKNOWN:
        if national[:3] in SEVEN_DIGIT_NPAS:
            state = _BY_BLOCK
        else:
            state = _VALID if _prefix_is_valid(national[:NANP_EXCHANGE_DIGITS]) else _INVALID
        _EXCHANGE_STATE[key] = state
    if state == _BY_BLOCK:
        return _block_is_valid(national[:NANP_BLOCK_DIGITS])
    return state == _VALID


def _nanp_fast(text: str, region: str) -> str | None:
    """E.164 for a plainly written, valid NANP number; None means "ask phonenumbers"."""
    if text.startswith("-"):
        return None  # a formula; the punctuation strip below would hide the sign
    digits = text.translate(_PUNCTUATION)
    if digits.startswith("+1"):
        national = digits[2:]
    elif region in NANP_REGIONS and not digits.startswith("+"):
        national = digits[1:] if len(digits) == 11 and digits[0] == "1" else digits
    else:
        return None
    if (
        len(national) == 10
        and national.isascii()
        and national.isdigit()
        and national[0] in "23456789"
        and nanp_is_valid(national)
    ):
        return "+1" + national
    return None


def normalize_phone(text: str, region: str = "US") -> str:
    """``text`` as E.164, or ValueError with a message that quotes it and says what to do."""
    text = text.strip()
    # The million-row case, already E.164 NANP, in as few operations as possible; validity is
    # still checked (the exchange table read is inlined; a first sight goes the long way).
    if _E164_NANP.fullmatch(text) and _EXCHANGE_STATE[int(text[2:8])] == _VALID:
        return text
    fast = _nanp_fast(text, region)
    if fast is not None:
        return fast
    return _normalize_slow(text, region)


def _normalize_slow(text: str, region: str) -> str:
    hint = f"write it in E.164 like {E164_EXAMPLE}"
    if not text.startswith("+"):
        hint += " or set --default-region"
    if not text:
        raise ValueError(f"the phone number is empty; {hint}")
    formula = formula_problem(text)
    if formula:
        raise ValueError(formula)
    if _FLOAT.fullmatch(text):
        digits = text.split(".")[0].split(",")[0]
        try:
            likely = f" (it was probably {normalize_phone(digits, region)})"
        except ValueError:
            likely = ""
        added = text[len(digits):]
        raise ValueError(
            f"{quote_cell(text)} was turned into a number by a spreadsheet, which added "
            f"\"{added}\"{likely}; format the column as Text and export again, or remove the "
            f"trailing \"{added}\""
        )
    if _SCIENTIFIC.fullmatch(text):
        raise ValueError(
            f"{quote_cell(text)} is a number in scientific notation (a spreadsheet rounded it); "
            "format the column as Text and export again"
        )
    if any(c.isalpha() for c in text):
        # phonenumbers would read letters as a vanity number (1-800-FLOWERS) or an extension;
        # in a bulk file letters mean a wrong column or a typo, so refuse them.
        raise ValueError(f"{quote_cell(text)} contains letters; {hint}")
    try:
        number = phonenumbers.parse(text, region.upper())
    except NumberParseException:
        raise ValueError(f"{quote_cell(text)} is not a phone number; {hint}") from None
    if not phonenumbers.is_valid_number(number):
        reason = _REASONS.get(phonenumbers.is_possible_number_with_reason(number))
        why = f" ({reason})" if reason else ""
        raise ValueError(f"{quote_cell(text)} is not a valid phone number{why}; {hint}")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def looks_like_phone(text: str, region: str = "US") -> bool:
    """True when ``text`` is a valid number: used to spot a data row where a header belongs."""
    try:
        normalize_phone(text, region)
    except ValueError:
        return False
    return True


def normalize_region(text: str) -> str:
    """A phonenumbers region code (``US``, ``GB``), upper-cased; ValueError if unknown."""
    region = text.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(
            f"{quote_cell(text)} is not a region code; use a two-letter ISO code like US, CA or GB"
        )
    return region


_profile_cache: dict[str, str] = {}  # the same few ids repeat on every row


def normalize_profile_id(text: str) -> str:
    """Canonical lowercase UUID; ValueError quoting the cell if it is not one.

    Accepted: any letter case, surrounding spaces, and ``{braces}`` (how Windows tools write
    GUIDs). Not accepted: the 32-hex form without hyphens, ``urn:uuid:`` or anything else,
    because Telnyx ids are always written 8-4-4-4-12 and anything else is likely a wrong column.
    """
    cached = _profile_cache.get(text)
    if cached is not None:
        return cached
    stripped = text.strip()
    match = _UUID.fullmatch(stripped)
    if match is None or (stripped.startswith("{") != stripped.endswith("}")):
        if not stripped:
            raise ValueError("the profile id is empty; write the messaging profile's UUID")
        formula = formula_problem(stripped)
        if formula:
            raise ValueError(formula)
        raise ValueError(
            f"{quote_cell(text)} is not a messaging profile id; write the profile's UUID "
            "like 4001767e-ce0f-4cae-9d5f-0d5e636e7809 (see the Telnyx portal)"
        )
    canonical = match.group(1).lower()
    if len(_profile_cache) >= 1024:
        _profile_cache.clear()
    _profile_cache[text] = canonical
    return canonical


MAX_NAME_CHARS = 255
# Hex digits, hyphens and braces only, with most of a UUID's digits: an id typed wrong, not a name.
_BROKEN_UUID = re.compile(r"[{}\-]*(?:[0-9a-fA-F][{}\-]*){16,}")


def is_profile_id(text: str) -> bool:
    """Whether ``text`` is written as a profile id (a UUID, any case, optional braces)."""
    try:
        normalize_profile_id(text)
    except ValueError:
        return False
    return True


def normalize_profile_ref(text: str) -> str:
    """A profile as written in a cell or an option: its canonical UUID, or a name to resolve.

    Names are trimmed and kept as they are; refused: an empty cell, a spreadsheet formula,
    control characters, over 255 characters, and what is plainly a mistyped UUID (only hex
    digits and hyphens), which gets the UUID message.
    """
    try:
        return normalize_profile_id(text)
    except ValueError as err:
        stripped = text.strip()
        if not stripped or _BROKEN_UUID.fullmatch(stripped) or formula_problem(stripped):
            raise err from None
    if len(stripped) > MAX_NAME_CHARS or not stripped.isprintable():
        raise ValueError(
            f"{quote_cell(text)} is not a messaging profile id or name; write the profile's "
            "UUID or its name as `bulkops profiles` shows it"
        )
    return stripped

"""Phone number and profile id normalisation (bulkops/input/phone.py), and why its per-exchange
validity cache is exact for the installed phonenumbers metadata."""

from __future__ import annotations

import importlib
import itertools
import random
from typing import Any

import phonenumbers
import pytest

from bulkops.input import phone
from bulkops.input.phone import normalize_phone, normalize_profile_id

# The regex parser behind `re`, to read phonenumbers' patterns (sre_parse is deprecated).
sre_parse: Any = importlib.import_module("re._parser")
sre_c: Any = importlib.import_module("re._constants")

P1 = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"


# --- phone numbers and profile ids ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["+13125550101", "+1 (312) 555-0101", "13125550101", " +13125550101 ", "312-555-0101",
     "(312) 555-0101", "312.555.0101", "1 312 555 0101", "+1-312-555-0101"],
)
def test_common_us_spellings_normalise_to_e164(text: str) -> None:
    assert normalize_phone(text, "US") == "+13125550101"


def test_national_numbers_use_the_default_region() -> None:
    assert normalize_phone("020 7946 0000", "GB") == "+442079460000"
    assert normalize_phone("+44 20 7946 0000", "US") == "+442079460000"
    with pytest.raises(ValueError, match="--default-region"):
        normalize_phone("020 7946 0000", "US")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("312555", "too short"),
        ("+15555550100", "not a valid phone number"),
        ("=1+1", "formula"),
        ("@SUM(A1)", "formula"),
        ("+SUM(A1)", "formula"),
        ("+1+2", "formula"),
        ("-1+2", "formula"),
        ("-3125550101", "formula"),
        ("1-800-FLOWERS", "contains letters"),
        ("+13125550101 ext 5", "contains letters"),
        ("1.31256E+10", "scientific notation"),
        ("+1312555010", "too short"),
    ],
)
def test_bad_numbers_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_phone(text)


def test_messages_escape_undecodable_bytes_and_control_characters() -> None:
    with pytest.raises(ValueError) as caught:
        normalize_phone("312\udce9\x07")
    assert "\\xe9" in str(caught.value) and "\\x07" in str(caught.value)
    str(caught.value).encode("utf-8")  # printable: no lone surrogates left


def test_fast_path_agrees_with_phonenumbers_on_random_nanp_numbers() -> None:
    rng = random.Random(1234)
    samples = [f"+1{rng.randint(2000000000, 9999999999)}" for _ in range(3000)]
    samples += [f"+1246{rng.randint(2000000, 9999999)}" for _ in range(300)]  # Barbados blocks
    samples += [f"+1876{rng.randint(2000000, 9999999)}" for _ in range(300)]  # Jamaica blocks
    for text in samples:
        expected = phonenumbers.is_valid_number(phonenumbers.parse(text, None))
        try:
            assert normalize_phone(text) == text
            got = True
        except ValueError:
            got = False
        assert got == expected, text


def _digit_paths(pattern: str) -> list[tuple[frozenset[str], ...]]:
    """Every way ``pattern`` matches, as a sequence of digit sets (metadata regexes only)."""
    digits = frozenset("0123456789")

    def char_class(op: Any, av: Any) -> frozenset[str] | None:
        if op is sre_c.LITERAL:
            return frozenset(chr(av))
        if op is sre_c.IN:
            chars: set[str] = set()
            for item_op, item in av:
                if item_op is sre_c.LITERAL:
                    chars.add(chr(item))
                elif item_op is sre_c.RANGE:
                    chars.update(chr(c) for c in range(item[0], item[1] + 1))
                elif item_op is sre_c.CATEGORY and item is sre_c.CATEGORY_DIGIT:
                    chars.update(digits)
                else:
                    raise AssertionError(f"unexpected regex item {item_op} in {pattern}")
            return frozenset(chars) & digits
        return None

    def expand(seq: Any) -> list[tuple[frozenset[str], ...]]:
        paths: list[tuple[frozenset[str], ...]] = [()]
        for op, av in seq:
            single = char_class(op, av)
            alternatives: list[tuple[frozenset[str], ...]]
            if single is not None:
                alternatives = [(single,)]
            elif op is sre_c.SUBPATTERN:
                alternatives = expand(av[3])
            elif op is sre_c.BRANCH:
                alternatives = [p for branch in av[1] for p in expand(branch)]
            elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
                low, high, sub = av
                inner = expand(sub)
                alternatives = []
                for count in range(low, min(high, 12) + 1):
                    current: list[tuple[frozenset[str], ...]] = [()]
                    for _ in range(count):
                        current = [a + b for a in current for b in inner if len(a + b) <= 12]
                    alternatives += current
            else:
                raise AssertionError(f"unexpected regex op {op} in {pattern}")
            paths = [p + a for p in paths for a in alternatives if len(p + a) <= 12]
        return paths

    return expand(sre_parse.parse(pattern))


def test_nanp_validity_depends_only_on_the_digits_the_cache_keys_on() -> None:
    """Re-derives from the installed metadata why the per-exchange cache in phone.py is exact."""
    descs = ("general_desc", "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost",
             "personal_number", "voip", "pager", "uan", "voicemail")
    any_digit = frozenset("0123456789")
    seven_digit_npas: set[str] = set()
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        assert metadata is not None
        if metadata.leading_digits:
            depth = max(len(p) for p in _digit_paths(metadata.leading_digits))
            assert depth <= phone.NANP_EXCHANGE_DIGITS, region
        for name in descs:
            desc = getattr(metadata, name)
            if desc is None or desc.national_number_pattern is None:
                continue
            for path in _digit_paths(desc.national_number_pattern):
                if len(path) != 10:
                    continue
                decided = len(path)
                while decided and path[decided - 1] == any_digit:
                    decided -= 1
                assert decided <= phone.NANP_BLOCK_DIGITS, (region, name)
                if decided > phone.NANP_EXCHANGE_DIGITS:
                    seven_digit_npas.update("".join(p) for p in itertools.product(*path[:3]))
    assert seven_digit_npas <= phone.SEVEN_DIGIT_NPAS


@pytest.mark.parametrize(
    "text", [P1, P1.upper(), f" {P1} ", "{" + P1 + "}", "{" + P1.upper() + "}"]
)
def test_profile_ids_normalise_to_lowercase_uuid(text: str) -> None:
    assert normalize_profile_id(text) == P1


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (P1.replace("-", ""), "not a messaging profile id"),
        ("{" + P1, "not a messaging profile id"),
        (P1[:-1], "not a messaging profile id"),
        ("", "empty"),
        ("=A1", "formula"),
        ("profile-name", "not a messaging profile id"),
    ],
)
def test_bad_profile_ids_are_refused_quoting_the_cell(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_profile_id(text)

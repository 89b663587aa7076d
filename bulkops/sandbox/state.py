"""The sandbox account in memory: numbers, short codes, profiles, and the indexes that keep
handlers cheap.

Every handler touches O(1) numbers (or one page of them): lookups are dicts, and
each profile keeps a list of its numbers sorted by phone number, updated with
``bisect`` on every assignment change, so profile listings page without sorting.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

from .records import (
    NumberQuery, NumberRecord, NumberType, NumberView, ProfileRecord, ShortCodeRecord, ShortCodeView,
)
from .seed import SeedData, index_of_id, number_record

DEFAULT_PRODUCT = "A2P"


class SandboxState:
    """Numbers and profiles; the only place assignments change."""

    def __init__(self, seed: SeedData) -> None:
        numbers = seed.numbers
        self._numbers: tuple[str, ...] = numbers
        self._index: dict[str, int] = {n: i for i, n in enumerate(numbers)}
        self._toll_free: frozenset[int] = seed.toll_free
        self._profile_of: dict[str, str | None] = dict(zip(numbers, seed.assignment))
        self._sorted_all: list[str] = sorted(numbers)
        toll_free = sorted(numbers[i] for i in seed.toll_free)
        toll_free_set = set(toll_free)
        self._sorted_by_type: dict[str, list[str]] = {
            NumberType.TOLLFREE.value: toll_free,
            NumberType.LONGCODE.value: [n for n in self._sorted_all if n not in toll_free_set],
        }
        self._profiles: dict[str, ProfileRecord] = {p.id: p for p in seed.profiles}
        self._members: dict[str, list[str]] = {p.id: [] for p in seed.profiles}
        profile_of = self._profile_of
        for e164 in self._sorted_all:  # sorted input keeps each member list sorted
            owner = profile_of[e164]
            if owner is not None:
                self._members[owner].append(e164)
        # Short codes: few (a handful per profile), so plain dicts in seed order, no indexes.
        self._short_codes: dict[str, ShortCodeRecord] = {r.id: r for r in seed.short_codes}
        self._short_code_profile: dict[str, str | None] = {
            r.id: p for r, p in zip(seed.short_codes, seed.short_code_profiles)}
        self._short_code_tags: dict[str, tuple[str, ...]] = {}
        self._short_code_updated: dict[str, float] = {}
        # Sparse per-number settings: only numbers a write touched have an entry.
        self._product: dict[str, str] = {}
        self._tags: dict[str, tuple[str, ...]] = {}
        self._updated: dict[str, float] = {}

    # -- numbers -------------------------------------------------------------

    def _record(self, index: int) -> NumberRecord:
        return number_record(index, self._numbers[index], index in self._toll_free)

    def resolve(self, id_or_number: str) -> NumberRecord | None:
        """The number a path ``{id}`` names: E.164 with its "+", or the numeric id.

        Bare digits are only ever a numeric id, as on Telnyx: "13125550101" is not
        read as "+13125550101".
        """
        if id_or_number.startswith("+"):
            return self.get(id_or_number)
        index = index_of_id(id_or_number, len(self._numbers))
        return None if index is None else self._record(index)

    def get(self, phone_number: str) -> NumberRecord | None:
        index = self._index.get(phone_number)
        return None if index is None else self._record(index)

    def profile_of(self, phone_number: str) -> str | None:
        """Current profile of a number on the account; KeyError for an unknown number."""
        if phone_number not in self._profile_of:
            raise KeyError(f"{phone_number!r} is not on the sandbox account")
        return self._profile_of[phone_number]

    def view(self, record: NumberRecord) -> NumberView:
        e164 = record.phone_number
        return NumberView(
            record=record,
            profile_id=self._profile_of[e164],
            messaging_product=self._product.get(e164, DEFAULT_PRODUCT),
            tags=self._tags.get(e164, ()),
            updated_ts=self._updated.get(e164, float(record.created_ts)),
        )

    def assign(self, phone_number: str, profile_id: str | None, now: float) -> None:
        """Move a number to ``profile_id`` (None unassigns), keeping the indexes in step."""
        if phone_number not in self._profile_of:
            raise KeyError(f"{phone_number!r} is not on the sandbox account")
        if profile_id is not None and profile_id not in self._profiles:
            raise KeyError(f"profile {profile_id!r} does not exist")
        old = self._profile_of[phone_number]
        if old != profile_id:
            if old is not None:
                members = self._members[old]
                del members[bisect.bisect_left(members, phone_number)]
            if profile_id is not None:
                bisect.insort(self._members[profile_id], phone_number)
            self._profile_of[phone_number] = profile_id
        self._updated[phone_number] = now

    def update_settings(
        self, phone_number: str, product: str | None, tags: tuple[str, ...] | None, now: float
    ) -> None:
        if product is not None:
            self._product[phone_number] = product
        if tags is not None:
            self._tags[phone_number] = tags
        self._updated[phone_number] = now

    def numbers(self) -> list[str]:
        """Every number in seed order."""
        return list(self._numbers)

    def dump(self) -> dict[str, str | None]:
        """Every number (seed order) -> its profile id or None."""
        return dict(self._profile_of)

    def __len__(self) -> int:
        return len(self._numbers)

    def query(self, q: NumberQuery) -> Sequence[str]:
        """Numbers matching every filter, ascending by phone number (reversed if asked).

        Starts from the narrowest index available, so a phone-number list or a
        profile filter never scans the whole account.
        """
        base: Sequence[str]
        if q.phone_numbers is not None:
            base = sorted({n for n in q.phone_numbers if n in self._index})
        elif q.profile_id is not None:
            base = self._members.get(q.profile_id, [])
        elif q.type is not None:
            base = self._sorted_by_type.get(q.type, [])
        else:
            base = self._sorted_all
        result: Sequence[str] = base
        if q.phone_numbers is not None and q.profile_id is not None:
            result = [n for n in result if self._profile_of[n] == q.profile_id]
        if q.type is not None and (q.phone_numbers is not None or q.profile_id is not None):
            toll_free = q.type == NumberType.TOLLFREE.value
            if q.type not in self._sorted_by_type:
                result = []
            else:
                result = [n for n in result if (self._index[n] in self._toll_free) == toll_free]
        if q.contains:
            needle = q.contains
            result = [n for n in result if needle in n]
        if q.descending:
            result = result[::-1]
        return result

    # -- short codes ---------------------------------------------------------

    def short_code(self, short_code_id: str) -> ShortCodeRecord | None:
        return self._short_codes.get(short_code_id)

    def short_code_view(self, record: ShortCodeRecord) -> ShortCodeView:
        return ShortCodeView(record, self._short_code_profile[record.id],
                             self._short_code_tags.get(record.id, ()),
                             self._short_code_updated.get(record.id, record.created_ts))

    def short_codes(self, profile_id: str | None = None, *, unbound: bool = False,
                    ) -> list[ShortCodeRecord]:
        """Short codes ascending by their digits: all, those on ``profile_id``, or (``unbound``)
        those on no profile."""
        if unbound:
            chosen = [r for r in self._short_codes.values() if self._short_code_profile[r.id] is None]
        elif profile_id is not None:
            chosen = [r for r in self._short_codes.values()
                      if self._short_code_profile[r.id] == profile_id]
        else:
            chosen = list(self._short_codes.values())
        return sorted(chosen, key=lambda r: r.short_code)

    def bind_short_code(self, short_code_id: str, profile_id: str | None,
                        tags: tuple[str, ...] | None, now: float) -> None:
        """Bind a short code to ``profile_id`` (None: to no profile)."""
        if short_code_id not in self._short_codes:
            raise KeyError(f"short code {short_code_id!r} is not on the sandbox account")
        if profile_id is not None and profile_id not in self._profiles:
            raise KeyError(f"profile {profile_id!r} does not exist")
        self._short_code_profile[short_code_id] = profile_id
        if tags is not None:
            self._short_code_tags[short_code_id] = tags
        self._short_code_updated[short_code_id] = now

    def short_code_dump(self) -> dict[str, str | None]:
        """Every short code's digits -> its profile id or None."""
        return {r.short_code: self._short_code_profile[r.id] for r in self._short_codes.values()}

    # -- profiles ------------------------------------------------------------

    def profile(self, profile_id: str) -> ProfileRecord | None:
        return self._profiles.get(profile_id)

    def has_profile(self, profile_id: str) -> bool:
        return profile_id in self._profiles

    def profiles(self) -> list[ProfileRecord]:
        """All profiles, oldest first (seed order, then creation order)."""
        return list(self._profiles.values())

    def profile_ids(self) -> list[str]:
        return list(self._profiles)

    def members(self, profile_id: str) -> Sequence[str]:
        """Numbers on a profile, ascending by phone number (a live list: do not mutate)."""
        return self._members.get(profile_id, [])

    def add_profile(self, profile: ProfileRecord) -> None:
        if profile.id in self._profiles:
            raise KeyError(f"profile {profile.id!r} already exists")
        self._profiles[profile.id] = profile
        self._members[profile.id] = []

    def replace_profile(self, profile: ProfileRecord) -> None:
        if profile.id not in self._profiles:
            raise KeyError(f"profile {profile.id!r} does not exist")
        self._profiles[profile.id] = profile

    def delete_profile(self, profile_id: str, now: float) -> tuple[ProfileRecord, list[str]]:
        """Remove a profile; its numbers become unassigned (returned, ascending)."""
        profile = self._profiles.pop(profile_id)
        freed = self._members.pop(profile_id)
        for code_id, owner in self._short_code_profile.items():  # its short codes are unbound too
            if owner == profile_id:
                self._short_code_profile[code_id] = None
                self._short_code_updated[code_id] = now
        for e164 in freed:
            self._profile_of[e164] = None
            self._updated[e164] = now
        return dataclasses.replace(profile, updated_ts=now), freed


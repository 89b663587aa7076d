"""Messaging profiles named by name: turning what people write into the UUIDs the API needs.

People know their profiles by name; the API knows only ids. Wherever an id goes (CSV cells,
``--profile-id``, ``profile_id`` in a job file, migrate rows, ``export --profile``) a name is
accepted too, and resolved once per job against one listing of the account's profiles.

Matching, decided here once: a cell that is a UUID is an id, never a name. A name matches a
profile whose name is exactly the same (case and inner spaces included, outer spaces trimmed);
when none does, a case-insensitive match is used if exactly one profile has it. Two profiles
that match at the same step make the name ambiguous: an error that lists both ids, because
picking one would move numbers to a profile the operator may not have meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from bulkops.input.phone import is_profile_id, quote_cell
from bulkops.models import Profile

SHOWN_SUGGESTIONS = 3


class NeedProfiles(Exception):
    """A name was met before the account's profiles were listed: list them, then read on."""


class NameProblem(ValueError):
    """A name that matches no profile, or more than one."""


@dataclass(frozen=True)
class ProfileNames:
    """The account's profiles, searchable by name."""

    profiles: tuple[Profile, ...]
    _exact: dict[str, list[Profile]] = field(init=False, repr=False, compare=False)
    _folded: dict[str, list[Profile]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact: dict[str, list[Profile]] = {}
        folded: dict[str, list[Profile]] = {}
        for profile in self.profiles:
            exact.setdefault(profile.name.strip(), []).append(profile)
            folded.setdefault(profile.name.strip().casefold(), []).append(profile)
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_folded", folded)

    @classmethod
    def of(cls, profiles: Iterable[Profile]) -> ProfileNames:
        return cls(tuple(profiles))

    def name_of(self, profile_id: str) -> str | None:
        return next((p.name for p in self.profiles if p.id == profile_id), None)

    def id_names(self) -> dict[str, str]:
        """Every profile id -> its name (for the report)."""
        return {p.id: p.name for p in self.profiles}

    def resolve(self, ref: str) -> str:
        """The profile id ``ref`` names: itself when it is an id; NameProblem when no single
        profile has that name."""
        text = ref.strip()
        if is_profile_id(text):
            return text.lower()
        for matches in (self._exact.get(text), self._folded.get(text.casefold())):
            if matches and len(matches) == 1:
                return matches[0].id
            if matches:
                ids = ", ".join(p.id for p in matches)
                raise NameProblem(
                    f"{len(matches)} messaging profiles are named {quote_cell(text)} ({ids}); "
                    "write the UUID of the one you mean, or rename one of them"
                )
        close = difflib.get_close_matches(text, list(self._exact), n=SHOWN_SUGGESTIONS)
        hint = f" (did you mean {', '.join(quote_cell(c) for c in close)}?)" if close else ""
        raise NameProblem(
            f"no messaging profile of this account is named {quote_cell(text)}{hint}; "
            "`bulkops profiles` lists their names and ids"
        )


@dataclass
class ProfileLookup:
    """Names met while reading one job's input, resolved against one listing of the profiles.

    The reader asks ``resolve``; the first name it meets before the profiles are known raises
    ``NeedProfiles``, the loader lists them once (``load``) and the reader carries on. Without
    a connection to the account (``offline``) names are kept as written, unchecked.
    """

    offline: bool = False
    names: ProfileNames | None = None
    used: dict[str, str] = field(default_factory=dict)  # name as written -> id
    unchecked: bool = False  # offline, and a name was met
    unchecked_names: set[str] = field(default_factory=set)  # the first few of them

    def load(self, profiles: Iterable[Profile]) -> None:
        self.names = ProfileNames.of(profiles)

    def resolve(self, ref: str) -> str:
        """The id of a name (``ref`` is not a UUID); raises NeedProfiles or NameProblem."""
        known = self.used.get(ref)
        if known is not None:
            return known
        if self.names is None:
            if self.offline:
                self.unchecked = True
                if len(self.unchecked_names) < 100:
                    self.unchecked_names.add(ref)
                return ref
            raise NeedProfiles(ref)
        profile_id = self.names.resolve(ref)
        if len(self.used) < 10_000:  # a job names a handful of profiles
            self.used[ref] = profile_id
        return profile_id

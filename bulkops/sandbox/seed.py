"""Deterministic seed data: the numbers and profiles of a fresh sandbox account.

Generation must stay cheap (100,000 numbers in well under 2 s), so numbers are
drawn from a space known to be valid instead of being checked one by one with
``phonenumbers``: every US area code below combined with the 555 exchange is a
valid number for ``phonenumbers`` (the test suite proves it on every area code
and on a large random sample), and 555 numbers belong to no real subscriber.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass

from .config import SandboxConfig
from .records import NumberRecord, NumberType, ProfileRecord, Settings, ShortCodeRecord

# US geographic area codes (no Canadian or Caribbean NANP members, no 555 specials).
AREA_CODES: tuple[int, ...] = (
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224,
    225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270,
    276, 281, 301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313, 314, 315, 316, 317, 318,
    319, 320, 321, 323, 325, 330, 331, 334, 336, 337, 339, 347, 351, 352, 360, 361, 385, 386,
    401, 402, 404, 405, 406, 407, 408, 409, 410, 412, 413, 414, 415, 417, 419, 423, 424, 425,
    430, 432, 434, 435, 440, 442, 443, 469, 470, 475, 478, 479, 480, 484, 501, 502, 503, 504,
    505, 507, 508, 509, 510, 512, 513, 515, 516, 517, 518, 520, 530, 540, 541, 551, 559, 561,
    562, 563, 567, 570, 571, 573, 574, 575, 580, 585, 586, 601, 602, 603, 605, 606, 607, 608,
    609, 610, 612, 614, 615, 616, 617, 618, 619, 620, 623, 626, 630, 631, 636, 641, 646, 650,
    651, 657, 660, 661, 662, 678, 682, 701, 702, 703, 704, 706, 707, 708, 712, 713, 714, 715,
    716, 717, 718, 719, 720, 724, 727, 731, 732, 734, 740, 747, 754, 757, 760, 762, 763, 765,
    769, 770, 772, 773, 774, 775, 779, 781, 785, 786, 801, 802, 803, 804, 805, 806, 808, 810,
    812, 813, 814, 815, 816, 817, 818, 828, 830, 831, 832, 843, 845, 847, 848, 850, 856, 857,
    858, 859, 860, 862, 863, 864, 865, 870, 872, 878, 901, 903, 904, 906, 907, 908, 909, 910,
    912, 913, 914, 915, 916, 917, 918, 919, 920, 925, 928, 929, 931, 936, 937, 940, 941, 947,
    949, 951, 952, 954, 956, 970, 971, 972, 973, 978, 979, 980, 985, 989,
)  # fmt: skip
TOLL_FREE_CODES: tuple[int, ...] = (800, 833, 844, 855, 866, 877, 888)
EXCHANGE = 555
TOLL_FREE_SHARE = 0.05
ID_BASE = 1_293_384_261_075_700_000  # numeric ids look like Telnyx's 19-digit ids
NUMBERS_EPOCH = 1_672_531_200  # 2023-01-01T00:00:00Z
PROFILES_EPOCH = 1_640_995_200.0  # 2022-01-01T00:00:00Z

_PROFILE_NAMES = (
    "Marketing",
    "Customer Support",
    "Notifications",
    "Sales",
    "Alerts",
    "Billing",
    "Operations",
    "Appointments",
    "Two-Factor Auth",
    "Surveys",
)


@dataclass(frozen=True, slots=True)
class SeedData:
    """A fresh account: numbers in seed order, profiles, and each number's profile.

    Numbers are kept as plain strings (building 100,000 records up front is the
    slow part of a start); ``number_record`` derives a record from an index.
    """

    numbers: tuple[str, ...]  # E.164, seed order
    toll_free: frozenset[int]  # indexes of the toll-free numbers
    profiles: tuple[ProfileRecord, ...]
    assignment: tuple[str | None, ...]  # parallel to ``numbers``
    short_codes: tuple[ShortCodeRecord, ...] = ()
    short_code_profiles: tuple[str | None, ...] = ()  # parallel to ``short_codes``

    def record(self, index: int) -> NumberRecord:
        return number_record(index, self.numbers[index], index in self.toll_free)


_YEAR = 365 * 86_400
_LINES = tuple(f"{line:04d}" for line in range(10_000))


def number_record(index: int, phone_number: str, toll_free: bool) -> NumberRecord:
    """The record of the number at ``index`` in seed order (id and dates derive from it)."""
    return NumberRecord(
        index=index,
        phone_number=phone_number,
        number_id=str(ID_BASE + index),
        type=NumberType.TOLLFREE if toll_free else NumberType.LONGCODE,
        created_ts=NUMBERS_EPOCH + (index * 7_919) % _YEAR,
    )


def index_of_id(number_id: str, count: int) -> int | None:
    """The seed index a numeric id names, or None (exact digits only: no "+", no leading zeros)."""
    if not (number_id.isascii() and number_id.isdigit()) or len(number_id) != len(str(ID_BASE)):
        return None
    index = int(number_id) - ID_BASE
    return index if 0 <= index < count else None


def _rng(config: SandboxConfig, purpose: str) -> random.Random:
    # String seeds are hashed with SHA-512 by random.seed: stable across runs and
    # independent of PYTHONHASHSEED.
    return random.Random(f"bulkops-sandbox/{purpose}/{config.seed}")


def _numbers(config: SandboxConfig) -> tuple[tuple[str, ...], frozenset[int]]:
    """Unique numbers in seed order and which of them are toll-free (~5%, spread out)."""
    rng = _rng(config, "numbers")
    count = config.numbers
    toll_free_count = round(count * TOLL_FREE_SHARE)
    long_prefixes = [f"+1{area}{EXCHANGE}" for area in AREA_CODES]
    free_prefixes = [f"+1{area}{EXCHANGE}" for area in TOLL_FREE_CODES]
    lines = _LINES
    long_codes = [
        long_prefixes[slot // 10_000] + lines[slot % 10_000]
        for slot in rng.sample(range(len(AREA_CODES) * 10_000), count - toll_free_count)
    ]
    free = [
        free_prefixes[slot // 10_000] + lines[slot % 10_000]
        for slot in rng.sample(range(len(TOLL_FREE_CODES) * 10_000), toll_free_count)
    ]
    positions = frozenset(rng.sample(range(count), toll_free_count))
    long_iter, free_iter = iter(long_codes), iter(free)
    numbers = tuple(next(free_iter) if i in positions else next(long_iter) for i in range(count))
    return numbers, positions


def _profiles(config: SandboxConfig) -> tuple[ProfileRecord, ...]:
    rng = _rng(config, "profiles")
    secret_chars = string.ascii_letters + string.digits
    profiles: list[ProfileRecord] = []
    for k in range(config.profiles):
        base = _PROFILE_NAMES[k % len(_PROFILE_NAMES)]
        name = base if k < len(_PROFILE_NAMES) else f"{base} {k // len(_PROFILE_NAMES) + 1}"
        slug = name.lower().replace(" ", "-")
        created = PROFILES_EPOCH + k * 86_400 * 7 + rng.randrange(86_400)
        pool: Settings | None = None
        if k % 2 == 1:
            pool = (
                ("geomatch", False),
                ("long_code_weight", 1),
                ("skip_unhealthy", True),
                ("sticky_sender", k % 4 == 1),
                ("toll_free_weight", 10),
            )
        profiles.append(
            ProfileRecord(
                id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                name=name,
                created_ts=created,
                updated_ts=created + rng.randrange(86_400 * 30),
                v1_secret="".join(rng.choice(secret_chars) for _ in range(24)),
                whitelisted_destinations=("US", "CA") if k % 3 == 0 else ("US",),
                webhook_url=f"https://hooks.example.com/telnyx/{slug}",
                webhook_failover_url=f"https://backup.example.com/telnyx/{slug}" if k % 2 == 0 else None,
                daily_spend_limit=f"{(k + 1) * 50}.00" if k % 3 == 1 else None,
                daily_spend_limit_enabled=k % 3 == 1,
                number_pool_settings=pool,
            )
        )
    return tuple(profiles)


def _assignment(config: SandboxConfig, profiles: tuple[ProfileRecord, ...]) -> tuple[str | None, ...]:
    """Round-robin over profiles in seed order, leaving ``unassigned_share`` unassigned."""
    rng = _rng(config, "assignment")
    count = config.numbers
    if not profiles:
        return (None,) * count
    unassigned = set(rng.sample(range(count), round(count * config.unassigned_share)))
    result: list[str | None] = []
    turn = 0
    for i in range(count):
        if i in unassigned:
            result.append(None)
        else:
            result.append(profiles[turn % len(profiles)].id)
            turn += 1
    return tuple(result)


SHORT_CODE_UNBOUND_EVERY = 6  # every 6th short code is bound to no profile


def _short_codes(config: SandboxConfig, profiles: tuple[ProfileRecord, ...],
                 ) -> tuple[tuple[ShortCodeRecord, ...], tuple[str | None, ...]]:
    """Distinct 5- and 6-digit codes with seeded UUIDs, round-robin over the profiles; every
    ``SHORT_CODE_UNBOUND_EVERY``-th (and all, without profiles) bound to none."""
    rng = _rng(config, "short_codes")
    codes = [str(n) for n in rng.sample(range(20_000, 1_000_000), config.short_codes)]
    records: list[ShortCodeRecord] = []
    bound: list[str | None] = []
    turn = 0
    for k, code in enumerate(codes):
        created = PROFILES_EPOCH + k * 86_400 * 3 + rng.randrange(86_400)
        records.append(ShortCodeRecord(str(uuid.UUID(int=rng.getrandbits(128), version=4)), code,
                                       "US", created))
        if not profiles or k % SHORT_CODE_UNBOUND_EVERY == SHORT_CODE_UNBOUND_EVERY - 1:
            bound.append(None)
        else:
            bound.append(profiles[turn % len(profiles)].id)
            turn += 1
    return tuple(records), tuple(bound)


def generate(config: SandboxConfig) -> SeedData:
    """The seed account for ``config`` (numbers, profiles, short_codes, seed, unassigned_share)."""
    profiles = _profiles(config)
    numbers, toll_free = _numbers(config)
    short_codes, bound = _short_codes(config, profiles)
    return SeedData(
        numbers=numbers, toll_free=toll_free, profiles=profiles, assignment=_assignment(config, profiles),
        short_codes=short_codes, short_code_profiles=bound,
    )

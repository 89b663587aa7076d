"""Seed data: valid numbers, deterministic per seed, realistic mix, cheap at 100k."""

from __future__ import annotations

import random
import uuid

import phonenumbers
import pytest

from bulkops.errors import ConfigError
from bulkops.sandbox import FaultConfig, SandboxConfig
from bulkops.sandbox.seed import AREA_CODES, EXCHANGE, TOLL_FREE_CODES, generate
from tests.conftest import SandboxFactory
from tests.sandbox.sandbox_http import Api, enc


def is_valid_us(number: str) -> bool:
    parsed = phonenumbers.parse(number)
    return phonenumbers.is_valid_number(parsed) and phonenumbers.region_code_for_number(parsed) == "US"


def test_every_area_code_of_the_number_space_gives_valid_us_numbers() -> None:
    for code in (*AREA_CODES, *TOLL_FREE_CODES):
        for line in ("0000", "0101", "5000", "9999"):
            number = f"+1{code}{EXCHANGE}{line}"
            assert is_valid_us(number), number


def test_a_sample_of_a_large_seed_is_valid_e164_and_unique() -> None:
    seed = generate(SandboxConfig(numbers=100_000, seed=11))
    assert len(set(seed.numbers)) == 100_000
    for number in random.Random(0).sample(seed.numbers, 500):
        assert phonenumbers.format_number(phonenumbers.parse(number), phonenumbers.PhoneNumberFormat.E164) == number
        assert is_valid_us(number), number


def test_toll_free_share_is_about_five_percent_and_typed_so() -> None:
    seed = generate(SandboxConfig(numbers=2000))
    toll_free = [seed.numbers[i] for i in seed.toll_free]
    assert len(toll_free) == 100
    assert all(int(n[2:5]) in TOLL_FREE_CODES for n in toll_free)
    assert all(phonenumbers.number_type(phonenumbers.parse(n)) == phonenumbers.PhoneNumberType.TOLL_FREE for n in toll_free)
    assert seed.record(min(seed.toll_free)).type.value == "tollfree"


def test_assignment_leaves_the_unassigned_share_and_spreads_the_rest_over_profiles() -> None:
    seed = generate(SandboxConfig(numbers=1000, profiles=5, unassigned_share=0.2))
    assert seed.assignment.count(None) == 200
    counts = [seed.assignment.count(p.id) for p in seed.profiles]
    assert counts == [160] * 5


def test_profiles_have_deterministic_uuids_and_realistic_fields() -> None:
    seed = generate(SandboxConfig(profiles=12, seed=3))
    ids = [p.id for p in seed.profiles]
    assert len(set(ids)) == 12
    assert all(uuid.UUID(i).version == 4 for i in ids)
    assert len({p.name for p in seed.profiles}) == 12
    assert all(p.whitelisted_destinations and p.webhook_url for p in seed.profiles)


def test_same_seed_same_account_and_other_seed_other_account() -> None:
    a, b = generate(SandboxConfig(seed=42)), generate(SandboxConfig(seed=42))
    c = generate(SandboxConfig(seed=43))
    assert a == b
    assert a.numbers != c.numbers and [p.id for p in a.profiles] != [p.id for p in c.profiles]


def test_zero_profiles_leaves_every_number_unassigned() -> None:
    seed = generate(SandboxConfig(numbers=10, profiles=0))
    assert seed.assignment == (None,) * 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"numbers": -1},
        {"numbers": 2_000_000},
        {"window": 0},
        {"bulk_speed": 0},
        {"bulk_max": 0},
        {"retry_after": "never"},
        {"unassigned_share": 1.5},
        {"api_key": "has space"},
        {"api_key": ""},
        {"port": 70_000},
    ],
)
def test_invalid_settings_raise_config_error_naming_the_setting(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        SandboxConfig(**kwargs)  # type: ignore[arg-type]
    assert next(iter(kwargs)) in str(info.value)


def test_fault_probabilities_must_be_within_zero_and_one() -> None:
    with pytest.raises(ConfigError, match="error_rate"):
        FaultConfig(error_rate=1.5)
    with pytest.raises(ConfigError, match="latency_ms"):
        FaultConfig(latency_ms=-1)
    with pytest.raises(ConfigError, match="unknown fault setting"):
        FaultConfig().merged({"eror_rate": 0.1})
    assert FaultConfig().merged({"drop_rate": 0.5}).drop_rate == 0.5


def test_the_api_key_is_never_in_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        SandboxConfig(api_key="secret key")
    assert "secret" not in str(info.value)


async def test_two_sandboxes_with_one_seed_answer_identically(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=100, seed=9) as first, sandbox_factory(numbers=100, seed=9) as second:
        assert first.dump() == second.dump()
        async with Api.open(first) as api_a, Api.open(second) as api_b:
            number = first.numbers()[17]
            a = await api_a.get(f"/phone_numbers/{enc(number)}/messaging")
            b = await api_b.get(f"/phone_numbers/{enc(number)}/messaging")
            assert a.body == b.body
            pa = await api_a.get("/messaging_profiles?page[size]=250")
            pb = await api_b.get("/messaging_profiles?page[size]=250")
            assert pa.body == pb.body


async def test_a_100k_sandbox_starts_and_serves_its_numbers(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=100_000) as sandbox, Api.open(sandbox) as api:
        numbers = sandbox.numbers()
        assert len(numbers) == 100_000
        last = await api.get(f"/phone_numbers/{enc(numbers[-1])}/messaging")
        assert last.status == 200 and last.data["phone_number"] == numbers[-1]
        listing = await api.get("/phone_numbers/messaging?page[size]=250&page[number]=400")
        assert len(listing.data) == 250
        assert listing.body["meta"]["total_pages"] == 400

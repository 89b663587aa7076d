"""Messaging-profile routes and server-side bulk orders."""

from __future__ import annotations

from bulkops.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.sandbox.sandbox_http import Api, enc, wait_for_order

ZERO_UUID = "00000000-0000-4000-8000-000000000000"


async def test_list_profiles_paginates_in_seed_order(sandbox: Sandbox, api: Api) -> None:
    first = await api.get("/messaging_profiles?page[size]=3")
    second = await api.get("/messaging_profiles?page[size]=3&page[number]=2")
    ids = [p["id"] for p in first.data + second.data]
    assert ids == sandbox.profile_ids()
    assert first.body["meta"] == {"page_number": 1, "page_size": 3, "total_pages": 2, "total_results": 4}


async def test_list_profiles_filters_by_name(sandbox: Sandbox, api: Api) -> None:
    name = (await api.get(f"/messaging_profiles/{sandbox.profile_ids()[1]}")).data["name"]
    exact = await api.get(f"/messaging_profiles?filter[name][eq]={name.replace(' ', '%20')}")
    assert [p["name"] for p in exact.data] == [name]
    contains = await api.get(f"/messaging_profiles?filter[name][contains]={name[:3].lower()}")
    assert name in [p["name"] for p in contains.data]


async def test_create_profile_needs_name_and_whitelisted_destinations(sandbox: Sandbox, api: Api) -> None:
    missing = await api.post("/messaging_profiles", json={"name": "New"})
    assert missing.status == 422
    assert missing.error["source"] == {"pointer": "/whitelisted_destinations"}
    bad_country = await api.post("/messaging_profiles", json={"name": "New", "whitelisted_destinations": ["usa"]})
    assert bad_country.status == 422
    assert bad_country.error["source"] == {"pointer": "/whitelisted_destinations/0"}
    created = await api.post("/messaging_profiles", json={"name": "New", "whitelisted_destinations": ["US"]})
    assert created.status == 200
    assert created.data["record_type"] == "messaging_profile"
    assert created.data["id"] in sandbox.profile_ids()
    fetched = await api.get(f"/messaging_profiles/{created.data['id']}")
    assert fetched.data["name"] == "New"


async def test_update_profile_changes_only_the_given_fields(sandbox: Sandbox, api: Api) -> None:
    profile_id = sandbox.profile_ids()[0]
    before = (await api.get(f"/messaging_profiles/{profile_id}")).data
    reply = await api.patch(f"/messaging_profiles/{profile_id}", json={"name": "Renamed", "enabled": False})
    assert reply.status == 200
    assert reply.data["name"] == "Renamed" and reply.data["enabled"] is False
    assert reply.data["whitelisted_destinations"] == before["whitelisted_destinations"]
    wrong_type = await api.patch(f"/messaging_profiles/{profile_id}", json={"enabled": "yes"})
    assert wrong_type.status == 422
    assert wrong_type.error["source"] == {"pointer": "/enabled"}


async def test_profile_ids_unknown_is_404_and_not_a_uuid_is_422(sandbox: Sandbox, api: Api) -> None:
    unknown = await api.get(f"/messaging_profiles/{ZERO_UUID}")
    assert unknown.status == 404 and unknown.error["code"] == "10005"
    not_uuid = await api.get("/messaging_profiles/marketing")
    assert not_uuid.status == 422 and not_uuid.error["code"] == "10015"
    numbers = await api.get(f"/messaging_profiles/{ZERO_UUID}/phone_numbers")
    assert numbers.status == 404


async def test_delete_profile_unassigns_its_numbers(sandbox: Sandbox, api: Api) -> None:
    profile_id = sandbox.profile_ids()[0]
    members = [n for n, p in sandbox.dump().items() if p == profile_id]
    assert members
    reply = await api.delete(f"/messaging_profiles/{profile_id}")
    assert reply.status == 200 and reply.data["id"] == profile_id
    assert profile_id not in sandbox.profile_ids()
    assert all(sandbox.profile_of(n) is None for n in members)
    again = await api.delete(f"/messaging_profiles/{profile_id}")
    assert again.status == 404


async def test_profile_phone_numbers_pages_are_sorted_and_follow_writes(sandbox: Sandbox, api: Api) -> None:
    profile_id = sandbox.profile_ids()[1]
    expected = sorted(n for n, p in sandbox.dump().items() if p == profile_id)
    first = await api.get(f"/messaging_profiles/{profile_id}/phone_numbers?page[size]=50")
    rest = await api.get(f"/messaging_profiles/{profile_id}/phone_numbers?page[size]=50&page[number]=2")
    assert [d["phone_number"] for d in first.data + rest.data] == expected
    assert first.body["meta"]["total_results"] == len(expected)
    moved = expected[0]
    await api.patch(f"/phone_numbers/{enc(moved)}/messaging", json={"messaging_profile_id": ""})
    after = await api.get(f"/messaging_profiles/{profile_id}/phone_numbers?page[size]=250")
    assert [d["phone_number"] for d in after.data] == expected[1:]
    newcomer = next(n for n, p in sandbox.dump().items() if p is None)
    await api.patch(f"/phone_numbers/{enc(newcomer)}/messaging", json={"messaging_profile_id": profile_id})
    final = await api.get(f"/messaging_profiles/{profile_id}/phone_numbers?page[size]=250")
    assert [d["phone_number"] for d in final.data] == sorted([*expected[1:], newcomer])


async def test_bulk_order_starts_pending_then_applies_and_fails_unknown_numbers(
    sandbox_factory: SandboxFactory,
) -> None:
    async with sandbox_factory(numbers=200, bulk_speed=2000) as sandbox, Api.open(sandbox) as api:
        target = sandbox.profile_ids()[2]
        numbers = sandbox.numbers()[:40]
        reply = await api.post(
            "/messaging_numbers_bulk_updates",
            json={"messaging_profile_id": target, "numbers": [*numbers, "+19999999999"], "assign_only": True},
        )
        assert reply.status == 200
        assert reply.data["record_type"] == "messaging_numbers_bulk_update"
        assert reply.data["pending"] == [*numbers, "+19999999999"]
        result = await wait_for_order(api, reply.data["order_id"])
        assert result["success"] == numbers
        assert result["failed"] == ["+19999999999"]
        assert all(sandbox.profile_of(n) == target for n in numbers)
        assert sandbox.stats.bulk_numbers_applied == 40


async def test_bulk_order_with_empty_string_unassigns(sandbox: Sandbox, api: Api) -> None:
    numbers = [n for n, p in sandbox.dump().items() if p is not None][:5]
    reply = await api.post("/messaging_numbers_bulk_updates", json={"messaging_profile_id": "", "numbers": numbers})
    result = await wait_for_order(api, reply.data["order_id"])
    assert result["success"] == numbers
    assert all(sandbox.profile_of(n) is None for n in numbers)


async def test_bulk_order_over_bulk_max_is_422(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=50, bulk_max=10) as sandbox, Api.open(sandbox) as api:
        reply = await api.post(
            "/messaging_numbers_bulk_updates",
            json={"messaging_profile_id": sandbox.profile_ids()[0], "numbers": sandbox.numbers()[:11]},
        )
        assert reply.status == 422
        assert reply.error["code"] == "10015"
        assert reply.error["source"] == {"pointer": "/numbers"}


async def test_bulk_order_validation_and_unknown_order(sandbox: Sandbox, api: Api) -> None:
    path = "/messaging_numbers_bulk_updates"
    no_numbers = await api.post(path, json={"messaging_profile_id": ""})
    bad_profile = await api.post(path, json={"messaging_profile_id": ZERO_UUID, "numbers": ["+13125550101"]})
    bad_item = await api.post(path, json={"messaging_profile_id": "", "numbers": [1]})
    for reply, pointer in ((no_numbers, "/numbers"), (bad_profile, "/messaging_profile_id"), (bad_item, "/numbers/0")):
        assert reply.status == 422
        assert reply.error["source"] == {"pointer": pointer}
    unknown = await api.get(f"/messaging_numbers_bulk_updates/{ZERO_UUID}")
    assert unknown.status == 404 and unknown.error["code"] == "10005"


async def test_bulk_order_ignored_when_writes_are_ignored(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_ignore_writes(True)
    numbers = [n for n, p in sandbox.dump().items() if p is None][:3]
    reply = await api.post(
        "/messaging_numbers_bulk_updates",
        json={"messaging_profile_id": sandbox.profile_ids()[0], "numbers": numbers},
    )
    result = await wait_for_order(api, reply.data["order_id"])
    assert result["success"] == numbers
    assert all(sandbox.profile_of(n) is None for n in numbers)

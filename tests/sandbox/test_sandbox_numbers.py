"""Number routes: the unassign quirk, id forms, error shapes, listing filters and pages."""

from __future__ import annotations

import io

from bulkops.sandbox import Sandbox
from tests.sandbox.sandbox_http import Api, enc

ZERO_UUID = "00000000-0000-4000-8000-000000000000"


def assigned_number(sandbox: Sandbox) -> str:
    return next(n for n in sandbox.numbers() if sandbox.profile_of(n) is not None)


def unassigned_number(sandbox: Sandbox) -> str:
    return next(n for n in sandbox.numbers() if sandbox.profile_of(n) is None)


def other_profile(sandbox: Sandbox, than: str | None) -> str:
    return next(p for p in sandbox.profile_ids() if p != than)


async def test_patch_with_uuid_assigns_and_answers_the_new_state(sandbox: Sandbox, api: Api) -> None:
    number = unassigned_number(sandbox)
    target = sandbox.profile_ids()[1]
    reply = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": target})
    assert reply.status == 200
    assert reply.data["messaging_profile_id"] == target
    assert reply.data["phone_number"] == number
    assert reply.data["record_type"] == "messaging_settings"
    assert sandbox.profile_of(number) == target
    assert sandbox.stats.writes_applied == 1
    assert sandbox.stats.writes_by_number[number] == 1


async def test_patch_with_empty_string_unassigns(sandbox: Sandbox, api: Api) -> None:
    number = assigned_number(sandbox)
    reply = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": ""})
    assert reply.status == 200
    assert reply.data["messaging_profile_id"] is None
    assert sandbox.profile_of(number) is None


async def test_patch_with_null_keeps_the_profile_and_still_answers_200(sandbox: Sandbox, api: Api) -> None:
    number = assigned_number(sandbox)
    before = sandbox.profile_of(number)
    reply = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": None})
    assert reply.status == 200
    assert reply.data["messaging_profile_id"] == before
    assert sandbox.profile_of(number) == before
    assert sandbox.stats.writes_applied == 0


async def test_patch_without_the_field_keeps_the_profile(sandbox: Sandbox, api: Api) -> None:
    number = assigned_number(sandbox)
    before = sandbox.profile_of(number)
    reply = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_product": "P2P"})
    assert reply.status == 200
    assert reply.data["messaging_profile_id"] == before
    assert reply.data["messaging_product"] == "P2P"
    assert sandbox.profile_of(number) == before


async def test_number_is_found_with_encoded_plus_raw_plus_and_numeric_id(sandbox: Sandbox, api: Api) -> None:
    number = sandbox.numbers()[5]
    encoded = await api.get(f"/phone_numbers/{enc(number)}/messaging")
    raw = await api.get(f"/phone_numbers/{number}/messaging")
    assert encoded.status == raw.status == 200
    assert encoded.data == raw.data
    by_id = await api.get(f"/phone_numbers/{encoded.data['id']}/messaging")
    assert by_id.status == 200
    assert by_id.data["phone_number"] == number


async def test_patch_by_numeric_id_writes_that_number(sandbox: Sandbox, api: Api) -> None:
    number = assigned_number(sandbox)
    number_id = (await api.get(f"/phone_numbers/{enc(number)}/messaging")).data["id"]
    reply = await api.patch(f"/phone_numbers/{number_id}/messaging", json={"messaging_profile_id": ""})
    assert reply.status == 200
    assert sandbox.profile_of(number) is None


async def test_bare_digits_are_an_id_not_a_number(sandbox: Sandbox, api: Api) -> None:
    number = sandbox.numbers()[0]
    reply = await api.get(f"/phone_numbers/{number[1:]}/messaging")
    assert reply.status == 404
    assert reply.error["code"] == "10005"


async def test_unknown_number_is_404_10005_and_nothing_is_written(sandbox: Sandbox, api: Api) -> None:
    before = sandbox.dump()
    reply = await api.patch(
        f"/phone_numbers/{enc('+19999999999')}/messaging", json={"messaging_profile_id": sandbox.profile_ids()[0]}
    )
    assert reply.status == 404
    assert reply.error["code"] == "10005"
    assert reply.error["title"] and reply.error["detail"]
    assert sandbox.dump() == before


async def test_unknown_profile_is_422_10015_pointing_at_the_field(sandbox: Sandbox, api: Api) -> None:
    number = unassigned_number(sandbox)
    reply = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": ZERO_UUID})
    assert reply.status == 422
    assert reply.error["code"] == "10015"
    assert reply.error["source"] == {"pointer": "/messaging_profile_id"}
    assert sandbox.profile_of(number) is None


async def test_profile_that_is_not_a_uuid_is_422(sandbox: Sandbox, api: Api) -> None:
    number = unassigned_number(sandbox)
    reply = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": "marketing"})
    assert reply.status == 422
    assert reply.error["code"] == "10015"
    assert reply.error["source"]["pointer"] == "/messaging_profile_id"


async def test_profile_of_the_wrong_type_is_422_not_500(sandbox: Sandbox, api: Api) -> None:
    number = unassigned_number(sandbox)
    for value in (5, True, ["x"], {"id": "x"}):
        reply = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": value})
        assert reply.status == 422, value
        assert reply.error["code"] == "10015"


async def test_malformed_json_empty_body_and_non_object_body_are_telnyx_shaped(sandbox: Sandbox, api: Api) -> None:
    path = f"/phone_numbers/{enc(sandbox.numbers()[0])}/messaging"
    bad_json = await api.patch(path, data=b'{"messaging_profile_id": ', headers={"Content-Type": "application/json"})
    empty = await api.patch(path, data=b"", headers={"Content-Type": "application/json"})
    not_object = await api.patch(path, json=["x"])
    assert (bad_json.status, empty.status, not_object.status) == (400, 400, 422)
    for reply in (bad_json, empty, not_object):
        assert reply.error["code"] == "10015"
        assert reply.error["source"]["pointer"] == "/"


async def test_uppercase_profile_uuid_is_accepted_and_stored_lower_case(sandbox: Sandbox, api: Api) -> None:
    number = unassigned_number(sandbox)
    target = sandbox.profile_ids()[0]
    reply = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": target.upper()})
    assert reply.status == 200
    assert sandbox.profile_of(number) == target


async def test_number_body_has_realistic_fields(sandbox: Sandbox, api: Api) -> None:
    data = (await api.get(f"/phone_numbers/{enc(sandbox.numbers()[0])}/messaging")).data
    assert data["id"].isdigit()
    assert data["country_code"] == "US"
    assert data["type"] in {"longcode", "tollfree"}
    assert data["created_at"].endswith("Z") and "T" in data["created_at"]
    assert data["updated_at"].endswith("Z")
    assert set(data["features"]) == {"sms", "mms"}
    assert set(data["health"]) == {"message_count", "inbound_outbound_ratio", "success_ratio", "spam_ratio"}
    assert data["messaging_product"] in data["eligible_messaging_products"]


async def test_filter_phone_number_list_returns_only_numbers_on_the_account(sandbox: Sandbox, api: Api) -> None:
    wanted = sandbox.numbers()[:3]
    listed = ",".join(enc(n) for n in [*wanted, "+19999999999"])
    reply = await api.get(f"/phone_numbers/messaging?filter[phone_number]={listed}&page[size]=250")
    assert reply.status == 200
    assert sorted(d["phone_number"] for d in reply.data) == sorted(wanted)
    assert reply.body["meta"]["total_results"] == 3


async def test_filter_tolerates_a_plus_decoded_as_a_space(sandbox: Sandbox, api: Api) -> None:
    wanted = sandbox.numbers()[:2]
    reply = await api.get(f"/phone_numbers/messaging?filter[phone_number]={','.join(wanted)}")
    assert reply.status == 200
    assert sorted(d["phone_number"] for d in reply.data) == sorted(wanted)


async def test_filter_by_profile_lists_exactly_its_numbers(sandbox: Sandbox, api: Api) -> None:
    profile = sandbox.profile_ids()[0]
    expected = sorted(n for n, p in sandbox.dump().items() if p == profile)
    reply = await api.get(f"/phone_numbers/messaging?filter[messaging_profile_id]={profile}&page[size]=250")
    assert [d["phone_number"] for d in reply.data] == expected
    assert all(d["messaging_profile_id"] == profile for d in reply.data)


async def test_filter_contains_type_and_descending_sort(sandbox: Sandbox, api: Api) -> None:
    toll_free = await api.get("/phone_numbers/messaging?filter[type]=tollfree&page[size]=250")
    assert toll_free.data and all(d["type"] == "tollfree" for d in toll_free.data)
    needle = sandbox.numbers()[0][2:5]  # an area code
    contains = await api.get(f"/phone_numbers/messaging?filter[phone_number][contains]={needle}&page[size]=250")
    assert contains.data and all(needle in d["phone_number"] for d in contains.data)
    desc = await api.get("/phone_numbers/messaging?sort[phone_number]=desc&page[size]=5")
    numbers = [d["phone_number"] for d in desc.data]
    assert numbers == sorted(sandbox.numbers(), reverse=True)[:5]


async def test_pagination_last_partial_page_and_beyond_the_end(sandbox: Sandbox, api: Api) -> None:
    total = len(sandbox.numbers())  # 300
    last = await api.get("/phone_numbers/messaging?page[size]=250&page[number]=2")
    assert len(last.data) == total - 250
    assert last.body["meta"] == {"page_number": 2, "page_size": 250, "total_pages": 2, "total_results": total}
    beyond = await api.get("/phone_numbers/messaging?page[size]=250&page[number]=3")
    assert beyond.status == 200 and beyond.data == []
    assert beyond.body["meta"]["total_pages"] == 2


async def test_pages_cover_every_number_once_in_order(sandbox: Sandbox, api: Api) -> None:
    seen: list[str] = []
    for page in (1, 2, 3, 4):
        reply = await api.get(f"/phone_numbers/messaging?page[size]=100&page[number]={page}")
        seen.extend(d["phone_number"] for d in reply.data)
    assert seen == sorted(sandbox.numbers())


async def test_default_page_size_is_20(sandbox: Sandbox, api: Api) -> None:
    reply = await api.get("/phone_numbers/messaging")
    assert len(reply.data) == 20
    assert reply.body["meta"]["page_size"] == 20


async def test_page_size_251_zero_and_non_integers_are_400_naming_the_parameter(sandbox: Sandbox, api: Api) -> None:
    for query, parameter in (
        ("page[size]=251", "page[size]"),
        ("page[size]=0", "page[size]"),
        ("page[size]=ten", "page[size]"),
        ("page[number]=0", "page[number]"),
        ("page[number]=1.5", "page[number]"),
        ("filter[messaging_profile_id]=nope", "filter[messaging_profile_id]"),
        ("filter[type]=pager", "filter[type]"),
        ("sort[phone_number]=up", "sort[phone_number]"),
    ):
        reply = await api.get(f"/phone_numbers/messaging?{query}")
        assert reply.status == 400, query
        assert reply.error["code"] == "10015"
        assert reply.error["source"] == {"parameter": parameter}


async def test_unknown_route_is_404_in_the_telnyx_shape(sandbox: Sandbox, api: Api) -> None:
    reply = await api.get("/phone_numbers")
    assert reply.status == 404
    assert reply.error["code"] == "10005"
    wrong_method = await api.request("PUT", f"/phone_numbers/{enc(sandbox.numbers()[0])}/messaging", json={})
    assert wrong_method.status == 405
    assert wrong_method.error["code"] == "10015"


async def test_missing_or_wrong_key_is_401_10009_without_echoing_the_key(sandbox: Sandbox, api: Api) -> None:
    path = f"/phone_numbers/{enc(sandbox.numbers()[0])}/messaging"
    missing = await api.get(path, auth=False)
    wrong = await api.get(path, key="not-the-key-secret-123")
    basic = await api.get(path, auth=False, headers={"Authorization": f"Basic {sandbox.api_key}"})
    for reply in (missing, wrong, basic):
        assert reply.status == 401
        assert reply.error["code"] == "10009"
    assert "not-the-key-secret-123" not in wrong.text
    unknown_route = await api.get("/nowhere", auth=False)
    assert unknown_route.status == 401


async def test_ignore_writes_answers_200_with_the_unchanged_profile(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_ignore_writes(True)
    number = assigned_number(sandbox)
    before = sandbox.profile_of(number)
    reply = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": ""})
    assert reply.status == 200
    assert reply.data["messaging_profile_id"] == before
    assert sandbox.profile_of(number) == before
    assert sandbox.stats.writes_applied == 0
    assert sandbox.stats.faults_injected["ignored_write"] == 1
    sandbox.set_ignore_writes(False)
    applied = await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": ""})
    assert applied.data["messaging_profile_id"] is None


async def test_set_profile_changes_a_number_behind_the_clients_back_without_counting_a_write(
    sandbox: Sandbox, api: Api
) -> None:
    number = unassigned_number(sandbox)
    target = other_profile(sandbox, None)
    sandbox.set_profile(number, target)
    reply = await api.get(f"/phone_numbers/{enc(number)}/messaging")
    assert reply.data["messaging_profile_id"] == target
    assert sandbox.stats.writes_applied == 0
    sandbox.set_profile(number, "")
    assert sandbox.profile_of(number) is None


async def test_every_request_is_counted_by_route_template_and_status(sandbox: Sandbox, api: Api) -> None:
    number = sandbox.numbers()[0]
    await api.get(f"/phone_numbers/{enc(number)}/messaging")
    await api.get(f"/phone_numbers/{enc('+19999999999')}/messaging")
    stats = sandbox.stats
    assert stats.count("GET /v2/phone_numbers/{id}/messaging", 200) == 1
    assert stats.count("GET /v2/phone_numbers/{id}/messaging", 404) == 1
    assert stats.peak_in_flight >= 1 and stats.in_flight == 0
    as_dict = stats.as_dict()
    assert as_dict["requests"] == {"GET /v2/phone_numbers/{id}/messaging": {"200": 1, "404": 1}}
    stats.reset()
    assert stats.total_requests == 0


async def test_an_oversized_body_is_refused_in_the_telnyx_shape(sandbox: Sandbox, api: Api) -> None:
    path = f"/phone_numbers/{enc(sandbox.numbers()[0])}/messaging"
    body = io.BytesIO(b'{"tags": ["' + b"x" * 2_000_000 + b'"]}')  # aiohttp warns on large raw bytes
    reply = await api.patch(path, data=body, headers={"Content-Type": "application/json"})
    assert reply.status == 413
    assert reply.error["code"] == "10015"

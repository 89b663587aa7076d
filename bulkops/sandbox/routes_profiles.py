"""Messaging-profile routes, plus the bulk-order routes (thin wrappers over bulk.py).

Deleting a profile unassigns its numbers (their ``messaging_profile_id`` becomes
null), unbinds its short codes the same way, and fails the not-yet-processed numbers
of bulk orders targeting it; Telnyx does not document this case, and unassigning is
the outcome a migration tool must be ready for.
"""

from __future__ import annotations

import dataclasses
import string
import time
import uuid

from aiohttp import web

from .bulk import create_order, get_order
from .context import CTX, SandboxContext
from .params import as_uuid, parse_page, read_object
from .problems import INVALID, ApiProblem, dumps, invalid, not_found
from .records import ProfileRecord
from .shapes import number_json, page_meta, profile_json
from .validation import CREATE_RULES, UPDATE_RULES, check_fields, require

_SECRET_CHARS = string.ascii_letters + string.digits


def _profile_id(request: web.Request) -> str:
    raw = request.match_info["id"]
    profile_id = as_uuid(raw)
    if profile_id is None:
        raise invalid(f"The profile id must be a UUID; got {raw[:40]!r}.", parameter="id")
    return profile_id


def _profile(ctx: SandboxContext, request: web.Request) -> ProfileRecord:
    profile_id = _profile_id(request)
    profile = ctx.state.profile(profile_id)
    if profile is None:
        raise not_found(
            f"Messaging profile {profile_id} does not exist on this account; "
            "list them with GET /v2/messaging_profiles.",
            parameter="id",
        )
    return profile


def _data(profile: ProfileRecord) -> web.Response:
    return web.json_response({"data": profile_json(profile)}, dumps=dumps)


async def list_profiles(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    q = request.query
    page = parse_page(q)
    profiles = ctx.state.profiles()
    exact = q.get("filter[name][eq]", q.get("filter[name]"))
    if exact is not None:
        profiles = [p for p in profiles if p.name == exact]
    contains = q.get("filter[name][contains]")
    if contains:
        needle = contains.lower()
        profiles = [p for p in profiles if needle in p.name.lower()]
    start = (page.number - 1) * page.size
    chunk = profiles[start : start + page.size]
    return web.json_response(
        {"data": [profile_json(p) for p in chunk], "meta": page_meta(len(profiles), page.number, page.size)},
        dumps=dumps,
    )


async def create_profile(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_object(request)
    require(body, "name", "whitelisted_destinations")
    fields = check_fields(body, CREATE_RULES)
    now = time.time()
    profile = ProfileRecord(
        id=_new_uuid(ctx),
        name="",
        created_ts=now,
        updated_ts=now,
        v1_secret="".join(ctx.ids.choice(_SECRET_CHARS) for _ in range(24)),
    )
    profile = dataclasses.replace(profile, **fields)
    ctx.state.add_profile(profile)
    return _data(profile)


def _new_uuid(ctx: SandboxContext) -> str:
    while True:
        candidate = str(uuid.UUID(int=ctx.ids.getrandbits(128), version=4))
        if not ctx.state.has_profile(candidate):
            return candidate


async def get_profile(request: web.Request) -> web.Response:
    return _data(_profile(request.app[CTX], request))


async def update_profile(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_object(request)
    profile = _profile(ctx, request)
    fields = check_fields(body, UPDATE_RULES)
    updated = dataclasses.replace(profile, **fields, updated_ts=time.time())
    ctx.state.replace_profile(updated)
    return _data(updated)


async def delete_profile(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    profile = _profile(ctx, request)
    deleted, _freed = ctx.state.delete_profile(profile.id, time.time())
    return _data(deleted)


async def list_profile_numbers(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    profile = _profile(ctx, request)
    page = parse_page(request.query)
    members = ctx.state.members(profile.id)
    start = (page.number - 1) * page.size
    data = []
    for e164 in members[start : start + page.size]:
        record = ctx.state.get(e164)
        assert record is not None
        data.append(number_json(ctx.state.view(record), record_type="messaging_phone_number"))
    return web.json_response(
        {"data": data, "meta": page_meta(len(members), page.number, page.size)}, dumps=dumps
    )


def _refuse_orders(ctx: SandboxContext) -> None:
    """--orders-refused: an account (or a Telnyx-like server) without bulk orders."""
    status = ctx.config.orders_refused
    if status == 404:
        raise not_found("No route for bulk updates on this account.")
    if status in (403, 405):
        title = "Forbidden" if status == 403 else "Method not allowed"
        raise ApiProblem(status, "10010" if status == 403 else INVALID, title,
                         "Bulk updates are not enabled for this account.")


async def post_bulk(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    _refuse_orders(ctx)
    return await create_order(request, ctx.state, ctx.bulk, ctx.config.bulk_max)


async def get_bulk(request: web.Request) -> web.Response:
    _refuse_orders(request.app[CTX])
    return get_order(request.match_info["order_id"], request.app[CTX].bulk)


ROUTES = (
    web.get("/v2/messaging_profiles", list_profiles, allow_head=False),
    web.post("/v2/messaging_profiles", create_profile),
    web.get("/v2/messaging_profiles/{id}", get_profile, allow_head=False),
    web.patch("/v2/messaging_profiles/{id}", update_profile),
    web.delete("/v2/messaging_profiles/{id}", delete_profile),
    web.get("/v2/messaging_profiles/{id}/phone_numbers", list_profile_numbers, allow_head=False),
    web.post("/v2/messaging_numbers_bulk_updates", post_bulk),
    web.get("/v2/messaging_numbers_bulk_updates/{order_id}", get_bulk, allow_head=False),
    # Telnyx's docs also spell the path this way (API-NOTES); both reach the same orders.
    web.post("/v2/messaging_numbers/bulk_updates", post_bulk),
    web.get("/v2/messaging_numbers/bulk_updates/{order_id}", get_bulk, allow_head=False),
)

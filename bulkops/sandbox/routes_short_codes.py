"""Short-code routes: list (all, by profile, unbound), read and (un)bind short codes.

docs/telnyx/short-codes-10dlc.openapi.yml and SHORT-CODES-10DLC-NOTES.md: the path ``{id}`` is
the short code's UUID, never its digits; ``messaging_profile_id`` is required on every PATCH
(``""`` unbinds; the docs also allow null, which unbinds here too); in
``filter[messaging_profile_id]`` the string ``null`` means "bound to no profile".
"""

from __future__ import annotations

import time

from aiohttp import web

from .context import CTX, SandboxContext
from .faults import FaultKind
from .params import as_uuid, parse_page, read_object
from .problems import bad_parameter, dumps, invalid, not_found
from .records import ShortCodeRecord
from .shapes import page_meta, short_code_json
from .validation import profile_target


def _short_code(ctx: SandboxContext, raw: str) -> ShortCodeRecord:
    code_id = as_uuid(raw)
    record = None if code_id is None else ctx.state.short_code(code_id)
    if record is None:
        hint = (" (that is a short code's digits: the path takes its id, a UUID, as "
                "GET /v2/short_codes lists it)" if raw.isascii() and raw.isdigit() else "")
        raise not_found(f"Short code {raw[:40]!r} is not on this account{hint}.", parameter="id")
    return record


def _page(ctx: SandboxContext, request: web.Request, records: list[ShortCodeRecord]) -> web.Response:
    page = parse_page(request.query)
    start = (page.number - 1) * page.size
    data = [short_code_json(ctx.state.short_code_view(r)) for r in records[start:start + page.size]]
    return web.json_response({"data": data, "meta": page_meta(len(records), page.number, page.size)},
                             dumps=dumps)


async def list_short_codes(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    raw = request.query.get("filter[messaging_profile_id]")
    if raw is None or raw == "":
        records = ctx.state.short_codes()
    elif raw == "null":
        records = ctx.state.short_codes(unbound=True)
    else:
        profile_id = as_uuid(raw)
        if profile_id is None:
            raise bad_parameter("filter[messaging_profile_id]", "filter[messaging_profile_id] must "
                                f"be a profile UUID or the string null; got {raw[:40]!r}.")
        records = ctx.state.short_codes(profile_id)
    return _page(ctx, request, records)


async def list_profile_short_codes(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    raw = request.match_info["id"]
    profile_id = as_uuid(raw)
    if profile_id is None:
        raise invalid(f"The profile id must be a UUID; got {raw[:40]!r}.", parameter="id")
    if not ctx.state.has_profile(profile_id):
        raise not_found(f"Messaging profile {profile_id} does not exist on this account; list "
                        "them with GET /v2/messaging_profiles.", parameter="id")
    return _page(ctx, request, ctx.state.short_codes(profile_id))


async def get_short_code(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    record = _short_code(ctx, request.match_info["id"])
    return web.json_response({"data": short_code_json(ctx.state.short_code_view(record))},
                             dumps=dumps)


async def patch_short_code(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = dict(await read_object(request))  # 400 for bad JSON comes before 404
    record = _short_code(ctx, request.match_info["id"])
    if "messaging_profile_id" not in body:
        raise invalid("/messaging_profile_id is required on every short-code update: send the "
                      "profile UUID, or \"\" to unbind (resend the current value to change tags "
                      "alone).", pointer="/messaging_profile_id")
    value = body["messaging_profile_id"]
    target = None if value is None else profile_target(ctx.state, value)
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise invalid("/tags must be an array of strings.", pointer="/tags")
    if ctx.ignore_writes:
        ctx.stats.faults_injected[FaultKind.IGNORED_WRITE.value] += 1
    else:
        ctx.state.bind_short_code(record.id, target, None if tags is None else tuple(tags),
                                  time.time())
        ctx.stats.record_write(record.short_code)  # digits: never an E.164 key
    return web.json_response({"data": short_code_json(ctx.state.short_code_view(record))},
                             dumps=dumps)


ROUTES = (
    web.get("/v2/short_codes", list_short_codes, allow_head=False),
    web.get("/v2/short_codes/{id}", get_short_code, allow_head=False),
    web.patch("/v2/short_codes/{id}", patch_short_code),
    web.get("/v2/messaging_profiles/{id}/short_codes", list_profile_short_codes, allow_head=False),
)

"""Number routes: read, list and PATCH the messaging settings of phone numbers.

The Telnyx quirk this exists to reproduce (docs/telnyx/API-NOTES.md): on PATCH
``/phone_numbers/{id}/messaging`` the empty string unassigns, while ``null`` or an
absent ``messaging_profile_id`` keeps the current profile and still answers 200.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from .context import CTX, SandboxContext
from .faults import FaultKind
from .params import choice, parse_page, phone_list, read_object, restore_plus, uuid_param
from .problems import dumps, invalid, not_found
from .records import NumberQuery, NumberRecord
from .shapes import eligible_products, number_json, page_meta, page_slice
from .validation import profile_target

_KEEP = object()  # the field was absent or null: leave the value as it is


@dataclass(frozen=True, slots=True)
class NumberChange:
    """A validated PATCH body; ``assign`` is False when the profile is kept."""

    assign: bool
    profile_id: str | None  # None = unassign (only meaningful when assign)
    product: str | None
    tags: tuple[str, ...] | None

    @property
    def writes(self) -> bool:
        return self.assign or self.product is not None or self.tags is not None


def resolve(ctx: SandboxContext, raw_id: str) -> NumberRecord:
    record = ctx.state.resolve(raw_id)
    if record is None:
        raise not_found(
            f"Phone number {raw_id[:40]!r} is not on this account; give it in E.164 "
            "(e.g. +13125550101, percent-encoded as %2B13125550101) or as its numeric id.",
            parameter="id",
        )
    return record


def _profile_change(ctx: SandboxContext, value: object) -> object:
    # Telnyx quirk (docs/telnyx/API-NOTES.md): null, like an absent field, keeps the current profile.
    return _KEEP if value is None else profile_target(ctx.state, value)


def parse_change(ctx: SandboxContext, record: NumberRecord, body: dict[str, object]) -> NumberChange:
    target = _profile_change(ctx, body.get("messaging_profile_id"))
    product = body.get("messaging_product")
    if product is not None:
        allowed = eligible_products(record.type)
        if not isinstance(product, str) or product not in allowed:
            raise invalid(
                f"/messaging_product must be one of {', '.join(allowed)} for this number.",
                pointer="/messaging_product",
            )
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise invalid("/tags must be an array of strings.", pointer="/tags")
    return NumberChange(
        assign=target is not _KEEP,
        profile_id=target if isinstance(target, str) else None,
        product=product if isinstance(product, str) else None,
        tags=tuple(tags) if isinstance(tags, list) else None,
    )


async def get_number(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    record = resolve(ctx, request.match_info["id"])
    return web.json_response({"data": number_json(ctx.state.view(record))}, dumps=dumps)


async def patch_number(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = dict(await read_object(request))  # 400 for bad JSON comes before 404
    record = resolve(ctx, request.match_info["id"])
    change = parse_change(ctx, record, body)
    if change.writes:
        if ctx.ignore_writes:
            ctx.stats.faults_injected[FaultKind.IGNORED_WRITE.value] += 1
        else:
            now = time.time()
            e164 = record.phone_number
            if change.assign:
                ctx.state.assign(e164, change.profile_id, now)
                ctx.stats.record_write(e164)
            if change.product is not None or change.tags is not None:
                ctx.state.update_settings(e164, change.product, change.tags, now)
    return web.json_response({"data": number_json(ctx.state.view(record))}, dumps=dumps)


def _number_query(request: web.Request) -> NumberQuery:
    q = request.query
    raw_numbers = q.get("filter[phone_number]")
    contains = q.get("filter[phone_number][contains]")
    return NumberQuery(
        # A blank filter is no filter; a "+" that arrived as a space is restored.
        phone_numbers=phone_list(raw_numbers) if raw_numbers and raw_numbers.strip() else None,
        profile_id=uuid_param(q, "filter[messaging_profile_id]"),
        contains=restore_plus(contains) if contains else None,
        type=choice(q, "filter[type]", ("tollfree", "longcode", "shortcode")),
        descending=choice(q, "sort[phone_number]", ("asc", "desc")) == "desc",
    )


async def list_numbers(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    page = parse_page(request.query)
    matches = ctx.state.query(_number_query(request))
    state = ctx.state
    data = []
    for e164 in page_slice(matches, page.number, page.size):
        record = state.get(e164)
        assert record is not None  # query() only yields numbers on the account
        data.append(number_json(state.view(record)))
    return web.json_response(
        {"data": data, "meta": page_meta(len(matches), page.number, page.size)}, dumps=dumps
    )


ROUTES = (
    web.get("/v2/phone_numbers/messaging", list_numbers, allow_head=False),
    web.get("/v2/phone_numbers/{id}/messaging", get_number, allow_head=False),
    web.patch("/v2/phone_numbers/{id}/messaging", patch_number),
)

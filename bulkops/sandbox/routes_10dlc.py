"""10DLC routes: campaigns, phone-number campaign links, and the bulk-by-profile task.

The state and its rules are in ``tendlc.py``; this module parses requests and shapes answers
as ``docs/telnyx/short-codes-10dlc.openapi.yml`` has them. 10DLC bodies are camelCase and
unwrapped (no ``data``), lists answer ``records``/``page``/``totalRecords``, and a page past the
end answers ``records: []`` (SHORT-CODES-10DLC-NOTES.md, "totalRecords quirk"). A path's
``{phoneNumber}`` may carry its ``+`` raw or as ``%2B``: aiohttp decodes the path before matching.
Same middlewares as every route: rate limits, auth and faults apply unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from .context import CTX
from .params import _int_param, as_uuid, choice, json_type, read_object
from .problems import bad_parameter, dumps, invalid, not_found
from .shapes import iso
from .tendlc import CampaignRecord, LinkQuery, LinkRecord, ProfileTask, TenDlcState, page_of, plain_timestamp

DEFAULT_RECORDS = 20  # docs: the 10DLC assignment lists default to 20
MAX_RECORDS = 500  # unconfirmed for these lists; /10dlc/campaign documents 1..500
CAMPAIGN_DEFAULT_RECORDS = 10
LINK_SORTS = ("assignmentStatus", "-assignmentStatus", "createdAt", "-createdAt", "phoneNumber", "-phoneNumber")
CAMPAIGN_SORTS = ("assignedPhoneNumbersCount", "-assignedPhoneNumbersCount", "campaignId", "-campaignId",
                  "createdAt", "-createdAt", "status", "-status", "tcrCampaignId", "-tcrCampaignId")


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def _state(request: web.Request) -> TenDlcState:
    state = request.app[CTX].tendlc
    state.settle()
    return state


def link_json(link: LinkRecord, campaigns: Mapping[str, CampaignRecord]) -> dict[str, object]:
    """A ``PhoneNumberCampaign``."""
    campaign = campaigns.get(link.campaign_id)
    out: dict[str, object] = {
        "phoneNumber": link.phone_number,
        "campaignId": link.campaign_id,
        "brandId": campaign.brand_id if campaign else "",
        "telnyxCampaignId": link.campaign_id,
        "tcrCampaignId": campaign.tcr_campaign_id if campaign else "",
        "tcrBrandId": campaign.tcr_brand_id if campaign else "",
        "assignmentStatus": link.status.value,
        "createdAt": plain_timestamp(link.created_ts),
        "updatedAt": plain_timestamp(link.updated_ts),
    }
    if link.failure_reasons is not None:
        out["failureReasons"] = link.failure_reasons
    return out


def campaign_json(campaign: CampaignRecord, assigned: int | None = None) -> dict[str, object]:
    """A ``TelnyxCampaignCsp`` (with ``assigned``: a ``CampaignListResponse``)."""
    out: dict[str, object] = {
        "campaignId": campaign.campaign_id,
        "brandId": campaign.brand_id,
        "tcrCampaignId": campaign.tcr_campaign_id,
        "tcrBrandId": campaign.tcr_brand_id,
        "cspId": "SANDBOXCSP",
        "brandDisplayName": "Sandbox Brand",
        "description": campaign.description,
        "usecase": campaign.usecase,
        "subUsecases": [],
        "mock": False,
        "termsAndConditions": True,
        "numberPool": False,
        "status": campaign.status,
        "campaignStatus": campaign.campaign_status,
        "submissionStatus": "CREATED",
        "isTMobileRegistered": True,
        "isTMobileSuspended": campaign.t_mobile_suspended,
        "isTMobileNumberPoolingEnabled": False,
        "createDate": iso(campaign.created_ts),
        "nextRenewalOrExpirationDate": iso(campaign.created_ts + 365 * 86_400),
    }
    if campaign.failure_reasons is not None:
        out["failureReasons"] = campaign.failure_reasons
    if assigned is not None:
        out["assignedPhoneNumbersCount"] = assigned
    return out


def _page(request: web.Request, default: int) -> tuple[int, int]:
    q = request.query
    return (_int_param(q, "page", 1, 1, None), _int_param(q, "recordsPerPage", default, 1, MAX_RECORDS))


def _path_number(request: web.Request) -> str:
    number = request.match_info["phoneNumber"].strip()
    if not number.startswith("+"):
        # Without "+" is unconfirmed on Telnyx (the notes): the sandbox asks for E.164.
        raise not_found(
            f"No phone number {number[:40]!r}: give it in E.164 with its + "
            "(raw, or percent-encoded as %2B).",
            parameter="phoneNumber",
        )
    return number


def _text(body: Mapping[str, object], name: str) -> str:
    value = body.get(name)
    pointer = f"/{name}"
    if value is None:
        raise invalid(f"{pointer} is required.", pointer=pointer)
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{pointer} must be a non-empty string, not {json_type(value)}.", pointer=pointer)
    return value.strip()


# -- campaigns -------------------------------------------------------------------------------------

async def get_campaign(request: web.Request) -> web.Response:
    state = _state(request)
    campaign_id = request.match_info["campaignId"]
    campaign = state.campaign(campaign_id)
    if campaign is None:
        raise not_found(
            f"Campaign {campaign_id[:60]!r} does not exist on this account; "
            "list them with GET /10dlc/campaign?brandId=<brand>.",
            parameter="campaignId",
        )
    return _json(campaign_json(campaign))


async def list_campaigns(request: web.Request) -> web.Response:
    state = _state(request)
    brand = request.query.get("brandId")
    if not brand:
        raise bad_parameter("brandId", "brandId is required: the brand whose campaigns to list.")
    page, size = _page(request, CAMPAIGN_DEFAULT_RECORDS)
    sort = choice(request.query, "sort", CAMPAIGN_SORTS) or "-createdAt"
    counts = {c: state.assigned_count(c) for c in state.campaigns}
    found = [c for c in state.campaigns.values() if c.brand_id == brand]
    name = sort.lstrip("-")

    def key(c: CampaignRecord) -> tuple[object, str]:
        if name == "assignedPhoneNumbersCount":
            return counts[c.campaign_id], c.campaign_id
        if name == "createdAt":
            return c.created_ts, c.campaign_id
        return {"campaignId": "", "status": c.status, "tcrCampaignId": c.tcr_campaign_id}[name], c.campaign_id

    found.sort(key=key, reverse=sort.startswith("-"))
    records = [campaign_json(c, counts[c.campaign_id]) for c in page_of(found, page, size)]
    return _json({"records": records, "page": page, "totalRecords": len(found)})


# -- links -----------------------------------------------------------------------------------------

async def get_link(request: web.Request) -> web.Response:
    state = _state(request)
    number = _path_number(request)
    link = state.link(number)
    if link is None:
        known = request.app[CTX].state.get(number) is not None
        raise not_found(
            f"{number} has no campaign assignment." if known
            else f"Phone number {number[:40]!r} is not on this account.",
            parameter="phoneNumber",
        )
    return _json(link_json(link, state.campaigns))


async def create_link(request: web.Request) -> web.Response:
    body = await read_object(request)
    state = _state(request)
    link = state.create(_text(body, "phoneNumber"), _text(body, "campaignId"))
    return _json(link_json(link, state.campaigns))


async def put_link(request: web.Request) -> web.Response:
    body = await read_object(request)
    state = _state(request)
    number = _path_number(request)
    campaign_id = _text(body, "campaignId")
    given = _text(body, "phoneNumber")
    if given != number:
        raise invalid(
            f"/phoneNumber {given[:40]!r} is not the number in the path ({number}); send the same number.",
            pointer="/phoneNumber",
        )
    link = state.replace(number, campaign_id)
    return _json(link_json(link, state.campaigns))


async def delete_link(request: web.Request) -> web.Response:
    state = _state(request)
    link = state.remove(_path_number(request))
    return _json(link_json(link, state.campaigns))


async def list_links(request: web.Request) -> web.Response:
    state = _state(request)
    q = request.query
    page, size = _page(request, DEFAULT_RECORDS)
    query = LinkQuery(
        campaign_id=q.get("filter[telnyx_campaign_id]") or None,
        brand_id=q.get("filter[telnyx_brand_id]") or None,
        tcr_campaign_id=q.get("filter[tcr_campaign_id]") or None,
        tcr_brand_id=q.get("filter[tcr_brand_id]") or None,
        sort=choice(q, "sort", LINK_SORTS) or "-createdAt",
    )
    links = state.query(query)
    records = [link_json(link, state.campaigns) for link in page_of(links, page, size)]
    return _json({"records": records, "page": page, "totalRecords": len(links)})


# -- bulk by profile -------------------------------------------------------------------------------

def task_json(task: ProfileTask) -> dict[str, object]:
    """An ``AssignmentTaskStatusResponse``."""
    return {"taskId": task.task_id, "status": task.status, "createdAt": iso(task.created_ts),
            "updatedAt": iso(task.updated_ts)}


async def assign_profile(request: web.Request) -> web.Response:
    body = await read_object(request)
    ctx = request.app[CTX]
    state = _state(request)
    raw_profile = _text(body, "messagingProfileId")
    profile_id = as_uuid(raw_profile)
    if profile_id is None or not ctx.state.has_profile(profile_id):
        raise invalid(
            f"/messagingProfileId {raw_profile[:40]!r} is not a messaging profile of this account; "
            "list them with GET /messaging_profiles.",
            pointer="/messagingProfileId",
        )
    has_id, has_tcr = body.get("campaignId") is not None, body.get("tcrCampaignId") is not None
    if has_id == has_tcr:
        raise invalid(
            "Give exactly one of /campaignId (a campaign created with Telnyx) or /tcrCampaignId "
            "(a campaign shared with Telnyx).",
            pointer="/campaignId",
        )
    answer: dict[str, object] = {"messagingProfileId": profile_id}
    if has_tcr:
        tcr = _text(body, "tcrCampaignId")
        own = next((c for c in state.campaigns.values() if c.tcr_campaign_id == tcr), None)
        detail = (f"Campaign {tcr} was created with Telnyx: give its campaignId ({own.campaign_id})."
                  if own else f"No campaign {tcr[:40]!r} is shared with this account.")
        raise invalid(detail, pointer="/tcrCampaignId")
    campaign_id = _text(body, "campaignId")
    state.assignable(campaign_id)
    task = state.start_task(profile_id, campaign_id)
    answer.update(taskId=task.task_id, campaignId=campaign_id)
    return _json(answer, status=202)


def _task(request: web.Request, state: TenDlcState) -> ProfileTask:
    task_id = request.match_info["taskId"]
    task = state.task(task_id.lower())
    if task is None:
        raise not_found(
            f"No assignment task {task_id[:40]!r}; use the taskId that "
            "POST /10dlc/phoneNumberAssignmentByProfile answered.",
            parameter="taskId",
        )
    return task


async def get_task(request: web.Request) -> web.Response:
    state = _state(request)
    return _json(task_json(_task(request, state)))


async def get_task_numbers(request: web.Request) -> web.Response:
    state = _state(request)
    task = _task(request, state)
    page, size = _page(request, DEFAULT_RECORDS)
    start = (page - 1) * size
    records = [
        {"phoneNumber": number, "status": task.number_status(start + i), "taskId": task.task_id}
        for i, number in enumerate(page_of(task.numbers, page, size))
    ]
    return _json({"records": records})


# -- control (only with control=True) -------------------------------------------------------------

async def control_links(request: web.Request) -> web.Response:
    state = request.app[CTX].tendlc
    state.settle()
    return _json({
        "links": {n: {"campaignId": link.campaign_id, "assignmentStatus": link.status.value}
                  for n, link in state.links().items()},
        "writes_by_number": dict(state.writes_by_number),
    })


async def control_link(request: web.Request) -> web.Response:
    """``{"phoneNumber": "+1...", "campaignId": "<id>" or null}``: a link changed behind a job's back."""
    state = request.app[CTX].tendlc
    body = await read_object(request)
    number, campaign_id = body.get("phoneNumber"), body.get("campaignId")
    if not isinstance(number, str) or not (campaign_id is None or isinstance(campaign_id, str)):
        raise invalid('Send {"phoneNumber": "+1...", "campaignId": "<campaign id>" or null}.',
                      pointer="/", status=400)
    state.settle()
    try:
        state.force(number, campaign_id)
    except KeyError as exc:
        raise not_found(str(exc.args[0])) from None
    link = state.link(number)
    return _json(None if link is None else link_json(link, state.campaigns))


async def control_settle(request: web.Request) -> web.Response:
    return _json({"settled": request.app[CTX].tendlc.settle_all()})


ROUTES = (
    web.get("/v2/10dlc/campaign", list_campaigns, allow_head=False),
    web.get("/v2/10dlc/campaign/{campaignId}", get_campaign, allow_head=False),
    web.get("/v2/10dlc/phone_number_campaigns", list_links, allow_head=False),
    web.post("/v2/10dlc/phone_number_campaigns", create_link),
    web.get("/v2/10dlc/phone_number_campaigns/{phoneNumber}", get_link, allow_head=False),
    web.put("/v2/10dlc/phone_number_campaigns/{phoneNumber}", put_link),
    web.delete("/v2/10dlc/phone_number_campaigns/{phoneNumber}", delete_link),
    web.post("/v2/10dlc/phoneNumberAssignmentByProfile", assign_profile),
    web.get("/v2/10dlc/phoneNumberAssignmentByProfile/{taskId}", get_task, allow_head=False),
    web.get("/v2/10dlc/phoneNumberAssignmentByProfile/{taskId}/phoneNumbers", get_task_numbers,
            allow_head=False),
)
CONTROL_ROUTES = (
    web.get("/_control/10dlc", control_links, allow_head=False),
    web.post("/_control/10dlc/settle", control_settle),
    web.post("/_control/10dlc/link", control_link),
)


def register(app: web.Application, control: bool) -> None:
    """Add the 10DLC routes (and their control routes when ``control``) to the sandbox app."""
    app.router.add_routes(ROUTES)
    if control:
        app.router.add_routes(CONTROL_ROUTES)

"""The request pipeline: observe -> rate limit -> auth -> faults -> errors -> handler.

Order matters and mirrors Telnyx: a rate-limited request is refused before
anything else (and a 429 never counts as a write), authentication comes next,
and injected faults only hit requests that would otherwise have been served.
Every response, errors included, carries the ``x-ratelimit-*`` headers (junk ones, as
proxies send them, for the ``odd_header_rate`` share of answers).
Control routes (``/_control/*``) bypass all of it.
"""

from __future__ import annotations

import time

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from .context import CTX, SandboxContext
from .faults import FaultKind
from .problems import INVALID, ApiProblem, not_found, server_error, unauthorized
from .problems import RATE_LIMITED as RATE_LIMITED_CODE
from .stats import RecordedExchange

log = logging.getLogger("bulkops.sandbox")

CONTROL_PREFIX = "/_control/"
WRITE_METHODS = frozenset({"PATCH", "POST", "DELETE", "PUT"})
RATE_HEADERS: web.RequestKey[dict[str, str]] = web.RequestKey("bulkops_rate_headers")
DROPPED: web.RequestKey[bool] = web.RequestKey("bulkops_dropped")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None:
        return "<unmatched>"
    return f"{request.method} {resource.canonical}"


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiProblem:
    """aiohttp's own errors (no route, wrong method, body too large) in Telnyx's shape."""
    if exc.status == 404:
        return not_found(f"No route {request.method} {request.path[:100]}; see the API reference for paths.")
    if exc.status == 405:
        allow = exc.headers.get("Allow", "")
        return ApiProblem(
            405,
            INVALID,
            "Method not allowed",
            f"{request.method} is not supported on {request.path[:100]}; allowed: {allow}.",
            headers={"Allow": allow},
        )
    return ApiProblem(exc.status, INVALID, exc.reason, exc.text or exc.reason)


def _drop(request: web.Request) -> web.Response:
    """Close the connection without answering: the client sees a disconnect, not a response.

    aiohttp then fails to write the placeholder returned here and treats it as a
    premature client disconnection, quietly.
    """
    request[DROPPED] = True
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counters, in-flight gauge, recording; the last safety net against a 500 traceback."""
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    ctx = request.app[CTX]
    ctx.stats.enter()
    received_at = time.monotonic()
    request_body = b""
    status: int | None = None
    response: web.StreamResponse | None = None
    try:
        try:
            if ctx.config.record:
                request_body = await request.read()  # cached: the handler reads it again
            if ctx.write_hook is not None and request.method in WRITE_METHODS:
                await ctx.write_hook(request)
            response = await handler(request)
        except ApiProblem as problem:
            response = problem.response()
        except web.HTTPException as exc:
            response = _from_http_exception(request, exc).response()
        except Exception:
            log.exception("sandbox bug while serving %s %s", request.method, request.path)
            response = server_error(500, "The sandbox hit an internal error; retry the request.").response()
        rate_headers = request.get(RATE_HEADERS)
        if rate_headers:
            response.headers.update(rate_headers)
        if not request.get(DROPPED, False):
            status = response.status
        return response
    finally:
        route = _route(request)
        ctx.stats.leave(route, status)
        if ctx.config.record:
            _record(ctx, request, request_body, route, status, response, received_at)


def _record(
    ctx: SandboxContext,
    request: web.Request,
    body: bytes,
    route: str,
    status: int | None,
    response: web.StreamResponse | None,
    received_at: float,
) -> None:
    headers = tuple(
        (k, f"{v.partition(' ')[0]} <redacted>" if k.lower() == "authorization" else v)
        for k, v in request.headers.items()
    )
    response_body = b""
    response_headers: tuple[tuple[str, str], ...] = ()
    if status is not None and isinstance(response, web.Response):
        response_body = response.body if isinstance(response.body, bytes) else b""
        response_headers = tuple(response.headers.items())
    ctx.recorded.append(
        RecordedExchange(
            method=request.method,
            path=request.rel_url.raw_path,
            query=request.rel_url.raw_query_string,
            request_headers=headers,
            request_body=body,
            route=route,
            status=status,
            response_headers=response_headers,
            response_body=response_body,
            received_at=received_at,
            answered_at=time.monotonic(),
        )
    )


@web.middleware
async def delay_before_count(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With ``latency_before_count``, the request's latency passes before it is counted, so
    the server counts requests in an order other than the one they were sent in."""
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    delay = request.app[CTX].faults.latency_before_count()
    if delay > 0:
        await asyncio.sleep(delay)
    return await handler(request)


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    ctx = request.app[CTX]
    # Per API key: the token, whatever the scheme's capitalisation ("" when absent).
    decision = ctx.limiter.check(request.headers.get("Authorization", "").partition(" ")[2].strip())
    odd = ctx.faults.odd_rate_headers()  # junk as a proxy may send it, for a share of answers
    request[RATE_HEADERS] = decision.headers() if odd is None else odd
    if decision.allowed:
        return await handler(request)
    ctx.stats.rate_limited += 1
    headers: dict[str, str] = {}
    retry_after = decision.retry_after(ctx.config.retry_after)
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return ApiProblem(
        429,
        RATE_LIMITED_CODE,
        "Too many requests",
        f"Rate limit of {decision.limit} requests per {ctx.limiter.window:g} s exceeded; "
        f"retry in {decision.wait_seconds} s.",
        headers=headers,
    ).response()


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    expected = request.app[CTX].config.api_key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    presented = token.strip().encode("utf-8", "replace")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented, expected.encode()):
        return unauthorized().response()
    return await handler(request)


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    ctx = request.app[CTX]
    plan = ctx.faults.plan(request.method in WRITE_METHODS)
    if plan.latency_s > 0:
        await asyncio.sleep(plan.latency_s)
    fault = plan.fault
    if fault is not None:
        ctx.stats.faults_injected[fault.value] += 1
    if fault is FaultKind.ERROR:
        return server_error(plan.error_status).response()
    if fault is FaultKind.DROP:
        return _drop(request)
    response = await handler(request)
    if fault is FaultKind.ERROR_AFTER_WRITE:
        return server_error(plan.error_status).response()
    if fault is FaultKind.DROP_AFTER_WRITE:
        return _drop(request)
    if fault is FaultKind.SLOW:
        await asyncio.sleep(plan.slow_s)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Problems become responses here, so the fault layer sees every answer."""
    try:
        return await handler(request)
    except ApiProblem as problem:
        return problem.response()
    except web.HTTPException as exc:
        return _from_http_exception(request, exc).response()


MIDDLEWARES = (observe, delay_before_count, rate_limit, authenticate, inject_faults, errors)

"""Observability and steering routes outside ``/v2`` (only with ``control=True``).

They let a parent process (benchmarks, the crash harness) read counters and
change faults or limits of a sandbox running in another process. No auth, no
rate limit, no faults, not counted: they must not disturb what they observe.
"""

from __future__ import annotations

import dataclasses
from aiohttp import web

from bulkops.errors import ConfigError

from .config import LimiterKind, SandboxConfig
from .context import CTX
from .params import read_object
from .problems import dumps, invalid, not_found


def _json(data: object) -> web.Response:
    return web.json_response(data, dumps=dumps)


def config_json(config: SandboxConfig) -> dict[str, object]:
    data = dataclasses.asdict(config)
    data.pop("api_key", None)  # never shown, even a sandbox key
    return data


async def stats(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return _json({**ctx.stats.as_dict(), "bulk_orders_active": ctx.bulk.active})


async def dump(request: web.Request) -> web.Response:
    return _json(request.app[CTX].state.dump())


async def config(request: web.Request) -> web.Response:
    return _json(config_json(request.app[CTX].current_config()))


async def reset_stats(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ctx.stats.reset()
    return _json(ctx.stats.as_dict())


async def faults(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_object(request)
    try:
        ctx.set_faults(ctx.faults.config.merged(body))
    except (ConfigError, TypeError) as exc:
        raise invalid(f"Cannot set faults: {exc}", pointer="/", status=400) from None
    return _json(dataclasses.asdict(ctx.faults.config))


async def rate(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_object(request)
    new_rate = body.get("rate", ctx.limiter.rate)
    window = body.get("window", ctx.limiter.window)
    kind = body.get("limiter", ctx.limiter.kind.value)
    try:
        if not isinstance(new_rate, int) or not isinstance(window, (int, float)):
            raise ConfigError("rate must be an integer and window a number of seconds")
        try:
            limiter = LimiterKind(kind)
        except ValueError:
            raise ConfigError(f"limiter must be one of {', '.join(k.value for k in LimiterKind)}"
                              ) from None
        ctx.set_rate(new_rate, float(window), limiter)
    except ConfigError as exc:
        raise invalid(f"Cannot set the rate limit: {exc}", pointer="/", status=400) from None
    return _json({"rate": ctx.limiter.rate, "window": ctx.limiter.window,
                  "limiter": ctx.limiter.kind.value})


async def profile(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_object(request)
    number = body.get("phone_number")
    target = body.get("messaging_profile_id")
    if not isinstance(number, str) or not (target is None or isinstance(target, str)):
        raise invalid(
            "Send {\"phone_number\": \"+1...\", \"messaging_profile_id\": \"<uuid>\" or \"\" or null}.",
            pointer="/",
            status=400,
        )
    if ctx.state.get(number) is None:
        raise not_found(f"{number[:40]!r} is not on the sandbox account.")
    if target and not ctx.state.has_profile(target.lower()):
        raise not_found(f"Profile {target[:40]!r} does not exist.")
    ctx.set_profile(number, target)
    return _json({"phone_number": number, "messaging_profile_id": ctx.state.profile_of(number)})


async def ignore_writes(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_object(request)
    on = body.get("on")
    if not isinstance(on, bool):
        raise invalid('Send {"on": true} or {"on": false}.', pointer="/on", status=400)
    ctx.set_ignore_writes(on)
    return _json({"ignore_writes": ctx.ignore_writes})


ROUTES = (
    web.get("/_control/stats", stats, allow_head=False),
    web.get("/_control/dump", dump, allow_head=False),
    web.get("/_control/config", config, allow_head=False),
    web.post("/_control/faults", faults),
    web.post("/_control/rate", rate),
    web.post("/_control/profile", profile),
    web.post("/_control/reset-stats", reset_stats),
    web.post("/_control/ignore-writes", ignore_writes),
)

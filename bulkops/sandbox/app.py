"""Assembly of the aiohttp application: routes, middlewares, shutdown of bulk tasks."""

from __future__ import annotations

from aiohttp import web

from . import control, routes_numbers, routes_profiles, routes_short_codes
from .context import CTX, SandboxContext
from .middleware import MIDDLEWARES
from . import routes_10dlc


async def _stop_bulk_orders(app: web.Application) -> None:
    await app[CTX].bulk.close()


def build_app(ctx: SandboxContext) -> web.Application:
    """The sandbox web application over ``ctx``; control routes only when configured."""
    app = web.Application(middlewares=MIDDLEWARES)
    app[CTX] = ctx
    app.router.add_routes(routes_numbers.ROUTES)
    app.router.add_routes(routes_profiles.ROUTES)
    app.router.add_routes(routes_short_codes.ROUTES)
    if ctx.config.control:
        app.router.add_routes(control.ROUTES)
    app.on_cleanup.append(_stop_bulk_orders)
    routes_10dlc.register(app, ctx.config.control)
    return app

"""Admin endpoints for webhook endpoints (notifications.endpoints): their counters, and a test event.

GET  /admin/api/notifications                  each endpoint: sent, failed, pending, last success, ...
POST /admin/api/notifications/{name}/test      post one event with action `test` now; says how it went
"""

from __future__ import annotations

from aiohttp import web

from registry.errors import RegistryError
from registry.events.context import current
from registry.events.endpoints import NAME
from registry.events.sender import Notifier

NOTIFIER_KEY = web.AppKey("notifier", Notifier)


async def list_endpoints(request: web.Request) -> web.Response:
    return web.json_response({"endpoints": await request.app[NOTIFIER_KEY].status()})


async def send_test(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    result = await request.app[NOTIFIER_KEY].send_test(name, current()) if NAME.fullmatch(name) else None
    if result is None:
        raise RegistryError("NOT_FOUND", "no such endpoint in notifications.endpoints", detail={"name": name[:100]})
    return web.json_response(result)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/api/notifications", list_endpoints)
    app.router.add_post("/admin/api/notifications/{name}/test", send_test)

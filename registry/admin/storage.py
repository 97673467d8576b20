"""Admin endpoints for storage: totals (logical against physical bytes) and how they grew."""

from __future__ import annotations

from aiohttp import web

from registry.admin.common import inventory
from registry.errors import RegistryError

MAX_POINTS = 500


async def storage(request: web.Request) -> web.Response:
    return web.json_response(await inventory(request).storage())


async def storage_history(request: web.Request) -> web.Response:
    raw = request.query.get("points") or "30"
    if not raw.isdigit() or not 2 <= int(raw[:5]) <= MAX_POINTS:
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"points must be an integer from 2 to {MAX_POINTS}",
                            detail={"points": raw[:20]})
    return web.json_response({"points": await inventory(request).growth(int(raw))})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/api/storage", storage)
    app.router.add_get("/admin/api/storage/history", storage_history)

"""Admin endpoints for storage: totals (logical against physical bytes) and how they grew."""

from __future__ import annotations

from aiohttp import web

from registry.admin.common import bounded_number, inventory

MAX_POINTS = 500


async def storage(request: web.Request) -> web.Response:
    return web.json_response(await inventory(request).storage())


async def storage_history(request: web.Request) -> web.Response:
    points = bounded_number(request, "points", 30, 2, MAX_POINTS)
    return web.json_response({"points": await inventory(request).growth(points)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/api/storage", storage)
    app.router.add_get("/admin/api/storage/history", storage_history)

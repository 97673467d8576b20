"""Admin endpoints for the mirror: stats per upstream, pre-warm, pins, an eviction pass."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from registry.admin.common import json_body
from registry.api.common import MIRROR_KEY
from registry.errors import RegistryError


def _mirror(request: web.Request) -> Any:
    mirror = request.app.get(MIRROR_KEY)
    if mirror is None:
        raise RegistryError("NOT_FOUND", "no upstreams are configured (mirror.upstreams)")
    return mirror


async def _image(request: web.Request) -> tuple[str, dict[str, Any]]:
    body = await json_body(request)
    image = body.get("image")
    if not isinstance(image, str) or not image:
        raise RegistryError("UNSUPPORTED", 'expected {"image": "<alias>/<name>:<tag>"}', status=400)
    return image, body


async def stats(request: web.Request) -> web.Response:
    return web.json_response(await _mirror(request).stats())


async def prewarm(request: web.Request) -> web.Response:
    image, body = await _image(request)
    platform = body.get("platform") if isinstance(body.get("platform"), str) else None
    return web.json_response(await _mirror(request).prewarm(image, platform))


async def pin(request: web.Request) -> web.Response:
    image, _ = await _image(request)
    await _mirror(request).pin(image)
    return web.json_response({"pinned": image}, status=201)


async def unpin(request: web.Request) -> web.Response:
    image, _ = await _image(request)
    if not await _mirror(request).unpin(image):
        raise RegistryError("NOT_FOUND", f"{image} is not pinned")
    return web.json_response({"unpinned": image})


async def pins(request: web.Request) -> web.Response:
    return web.json_response({"pins": await _mirror(request).pins()})


async def evict(request: web.Request) -> web.Response:
    return web.json_response(await _mirror(request).cache.enforce())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin/api/mirror", stats)
    r.add_post("/admin/api/mirror/prewarm", prewarm)
    r.add_get("/admin/api/mirror/pins", pins)
    r.add_post("/admin/api/mirror/pins", pin)
    r.add_delete("/admin/api/mirror/pins", unpin)
    r.add_post("/admin/api/mirror/evict", evict)

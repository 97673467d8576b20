"""Admin endpoints for the mirror: stats per upstream, pre-warm, pins, an eviction pass."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from aiohttp import web

from registry.admin.common import every, json_body
from registry.api.common import MIRROR_KEY
from registry.errors import RegistryError
from registry.http_errors import HTTPError


def _mirror(request: web.Request) -> Any:
    mirror = request.app.get(MIRROR_KEY)
    if mirror is None:
        raise RegistryError("NOT_FOUND", "no upstreams are configured (mirror.upstreams)")
    return mirror


async def _image(request: web.Request) -> tuple[str, dict[str, Any]]:
    body = await json_body(request)
    image = body.get("image")
    if not isinstance(image, str) or not image:
        raise HTTPError("UNSUPPORTED", 'expected {"image": "<alias>/<name>:<tag>"}', status=400)
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


class History:
    """Per-upstream counters sampled every minute for a day, for the hit-rate chart.

    Kept in this process's memory: with several workers each answers with its own samples
    (the rates are what matter, and each worker sees a fair share of the traffic).
    """

    INTERVAL = 60.0

    def __init__(self, mirror: Any, size: int = 1440) -> None:
        self.mirror = mirror
        self.samples: deque[dict[str, Any]] = deque(maxlen=size)

    def sample(self) -> dict[str, Any]:
        return {"time": time.time(), "upstreams": {
            u.alias: {"hits": u.stats.hits, "misses": u.stats.misses, "bytes_served": u.stats.bytes_served,
                      "bytes_from_upstream": u.stats.bytes_from_upstream} for u in self.mirror.router.upstreams}}

    def record(self) -> None:
        self.samples.append(self.sample())


HISTORY_KEY = web.AppKey("mirror_history", History)


async def history(request: web.Request) -> web.Response:
    _mirror(request)
    recorder = request.app[HISTORY_KEY]
    return web.json_response({"interval": History.INTERVAL, "samples": [*recorder.samples, recorder.sample()]})


def add_routes(app: web.Application) -> None:
    mirror = app.get(MIRROR_KEY)
    if mirror is not None:
        recorder = app[HISTORY_KEY] = History(mirror)
        recorder.record()
        every(app, History.INTERVAL, recorder.record)
    r = app.router
    r.add_get("/admin/api/mirror/history", history)
    r.add_get("/admin/api/mirror", stats)
    r.add_post("/admin/api/mirror/prewarm", prewarm)
    r.add_get("/admin/api/mirror/pins", pins)
    r.add_post("/admin/api/mirror/pins", pin)
    r.add_delete("/admin/api/mirror/pins", unpin)
    r.add_post("/admin/api/mirror/evict", evict)

"""Request helpers shared by the admin handlers: the inventory, pages, names, JSON bodies."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from aiohttp import web

from registry import json_strict
from registry.content.inventory import Inventory
from registry.errors import RegistryError
from registry.reference import validate_name

log = logging.getLogger("registry.admin")

INVENTORY_KEY = web.AppKey("inventory", Inventory)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def inventory(request: web.Request) -> Inventory:
    return request.app[INVENTORY_KEY]


def page_params(request: web.Request) -> tuple[int, str | None]:
    """`limit` (1..1000, default 100) and `last` (the cursor: the last key of the previous page)."""
    raw = request.query.get("limit") or None  # empty: the default
    limit = DEFAULT_LIMIT
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw[:5]) <= MAX_LIMIT:
            raise RegistryError("PAGINATION_NUMBER_INVALID", f"limit must be an integer from 1 to {MAX_LIMIT}",
                                detail={"limit": raw[:20]})
        limit = int(raw)
    return limit, request.query.get("last") or None


def paged(key: str, items: list[dict[str, Any]], limit: int, cursor: str) -> web.Response:
    """One page from items fetched with limit + 1; `next` is the `last` for the following page."""
    more = len(items) > limit
    items = items[:limit]
    return web.json_response({key: items, "next": items[-1][cursor] if more and items else None})


def name_param(request: web.Request) -> str:
    return validate_name(request.match_info["name"])


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json_strict.loads(await request.read() or b"{}")
    except json_strict.StrictJSONError as exc:
        raise RegistryError("UNSUPPORTED", f"the body must be a JSON object; it {exc}", status=400) from None
    if not isinstance(body, dict):
        raise RegistryError("UNSUPPORTED", "the body must be a JSON object", status=400)
    return body


def every(app: web.Application, seconds: float, action: Callable[[], Any]) -> None:
    """Run `action` every `seconds` while the app runs (a sync function or a coroutine function)."""
    tasks: list[asyncio.Task[None]] = []

    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                result = action()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.warning("periodic admin task %s failed", getattr(action, "__qualname__", action), exc_info=True)

    async def start(_: web.Application) -> None:
        tasks.append(asyncio.create_task(loop()))

    async def stop(_: web.Application) -> None:
        for task in tasks:
            task.cancel()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)

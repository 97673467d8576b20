"""Request helpers shared by the admin handlers: the inventory, pages, names, JSON bodies."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from collections.abc import Callable

from aiohttp import web

from registry import json_strict
from registry.api.common import MAX_PAGE_DIGITS, pagination_cursor
from registry.content.inventory import Inventory
from registry.errors import RegistryError
from registry.http_errors import HTTPError
from registry.numbers import ascii_decimal
from registry.reference import validate_name

log = logging.getLogger("registry.admin")

INVENTORY_KEY = web.AppKey("inventory", Inventory)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def inventory(request: web.Request) -> Inventory:
    return request.app[INVENTORY_KEY]


def page_params(request: web.Request) -> tuple[int, str | None]:
    """`limit` (1..1000, default 100) and `last` (the cursor: the last key of the previous page)."""
    limit = bounded_number(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return limit, pagination_cursor(request.query.get("last"))


def bounded_number(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """A query number in [low, high] in ASCII digits (registry/numbers.py); empty or absent: the default."""
    raw = request.query.get(name) or None
    if raw is None:
        return default
    value = ascii_decimal(raw, MAX_PAGE_DIGITS)
    if value is None or not low <= value <= high:
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"{name} must be an integer from {low} to {high}",
                            detail={name: raw[:20]})
    return value


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
        raise HTTPError("UNSUPPORTED", f"the body must be a JSON object; it {exc}", status=400) from None
    if not isinstance(body, dict):
        raise HTTPError("UNSUPPORTED", "the body must be a JSON object", status=400)
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

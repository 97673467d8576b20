"""What admin handlers share: reading a JSON body."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from registry.errors import RegistryError


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is {}); anything else is a 400 in the spec's format."""
    try:
        body = json.loads(await request.read() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RegistryError("UNSUPPORTED", "the body must be JSON", status=400) from None
    if not isinstance(body, dict):
        raise RegistryError("UNSUPPORTED", "the body must be a JSON object", status=400)
    return body

"""GET /v2/_catalog with n/last pagination and a Link header."""

from aiohttp import web

from registry.api.common import content, page, pagination


async def catalog(request: web.Request) -> web.Response:
    limit, last = pagination(request)
    rows = await content(request).catalog(None if limit is None else limit + 1, last)
    found, headers = page("/v2/_catalog", limit, rows)
    return web.json_response({"repositories": found}, headers=headers)

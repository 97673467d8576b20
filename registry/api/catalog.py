"""GET /v2/_catalog with n/last pagination and a Link header."""

from aiohttp import web

from registry.api.common import content, next_link, pagination


async def catalog(request: web.Request) -> web.Response:
    limit, last = pagination(request)
    found = await content(request).catalog(limit, last)
    return web.json_response({"repositories": found}, headers=next_link("/v2/_catalog", limit, found))

"""GET /v2/: the API version check every client starts with."""

from aiohttp import web


async def version_check(request: web.Request) -> web.Response:
    return web.json_response({})

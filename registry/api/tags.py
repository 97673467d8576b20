"""GET /v2/<name>/tags/list with n/last pagination and a Link header."""

from aiohttp import web

from registry.api.common import content, next_link, pagination, repository


async def list_tags(request: web.Request) -> web.Response:
    name = repository(request)
    limit, last = pagination(request)
    found = await content(request).tags(name, limit, last)
    return web.json_response({"name": name, "tags": found},
                             headers=next_link(f"/v2/{name}/tags/list", limit, found))

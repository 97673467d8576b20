"""GET /v2/<name>/tags/list with n/last pagination and a Link header."""

from aiohttp import web

from registry.api.common import page, pagination, repository, routed


async def list_tags(request: web.Request) -> web.Response:
    name = repository(request)
    store, target = await routed(request)
    limit, last = pagination(request)
    rows = await store.tags(target, None if limit is None else limit + 1, last)
    found, headers = page(f"/v2/{name}/tags/list", limit, rows)
    return web.json_response({"name": name, "tags": found}, headers=headers)

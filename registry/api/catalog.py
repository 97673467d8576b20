"""GET /v2/_catalog with n/last pagination and a Link header; only what the caller may pull."""

from aiohttp import web

from registry.api.common import content, page, pagination
from registry.auth.gate import GATE_KEY, identity_of

BATCH = 1000


async def catalog(request: web.Request) -> web.Response:
    limit, last = pagination(request)
    wanted = None if limit is None else limit + 1
    visible = await request.app[GATE_KEY].pull_filter(identity_of(request))
    if visible is None:
        rows = await content(request).catalog(wanted, last)
    else:  # filtered: read on in batches until the page is full or the names run out
        rows = []
        cursor = last
        while wanted is None or len(rows) < wanted:
            batch = await content(request).catalog(BATCH, cursor)
            rows += [name for name in batch if visible(name)]
            if len(batch) < BATCH:
                break
            cursor = batch[-1]
        rows = rows if wanted is None else rows[:wanted]
    found, headers = page("/v2/_catalog", limit, rows)
    return web.json_response({"repositories": found}, headers=headers)

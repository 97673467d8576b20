"""GET /v2/_catalog with n/last pagination and a Link header; only what the caller may pull.

Always one page: without `n` the first PAGE_SIZE names, and an `n` above PAGE_SIZE is cut to it,
each time with a Link to the next page when more follow. The distribution spec lets a registry
"impose a maximum limit and return a partial set with pagination links"; a 400 for a large `n`
(what CNCF Distribution answers) would break clients that ask for everything, while a shorter page
with a Link is what every paginating client already follows.
"""

from aiohttp import web

from registry.api.common import content, page, pagination
from registry.auth.gate import GATE_KEY, identity_of

PAGE_SIZE = 1000  # names per response at most: a page is one index range of this many
BATCH = 1000


async def catalog(request: web.Request) -> web.Response:
    requested, last = pagination(request)
    limit = PAGE_SIZE if requested is None else min(requested, PAGE_SIZE)
    wanted = limit + 1
    visible = await request.app[GATE_KEY].pull_filter(identity_of(request))
    if visible is None:
        rows = await content(request).catalog(wanted, last)
    else:  # filtered: read on in batches until the page is full or the names run out
        rows = []
        cursor = last
        while len(rows) < wanted:
            batch = await content(request).catalog(BATCH, cursor)
            rows += [name for name in batch if visible(name)]
            if len(batch) < BATCH:
                break
            cursor = batch[-1]
        rows = rows[:wanted]
    found, headers = page("/v2/_catalog", limit, rows)
    return web.json_response({"repositories": found}, headers=headers)

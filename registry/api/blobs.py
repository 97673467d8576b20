"""Blobs: HEAD/GET (with Range) and DELETE of /v2/<name>/blobs/<digest>."""

from aiohttp import web

from registry.api.common import content, digest_param, repository, require_deletes
from registry.api.responses import send_blob


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    digest = digest_param(request.match_info["digest"])
    blob = await content(request).blob(name, digest)
    return await send_blob(request, blob, head=request.method == "HEAD")


async def delete_blob(request: web.Request) -> web.Response:
    name = repository(request)
    digest = digest_param(request.match_info["digest"])
    require_deletes(request)
    await content(request).delete_blob(name, digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest), "Content-Length": "0"})

"""Blobs: HEAD/GET (with Range) and DELETE of /v2/<name>/blobs/<digest>."""

from aiohttp import web

from registry.api.common import DELETE_ENABLED_KEY, content, digest_param, repository
from registry.api.responses import send_blob
from registry.errors import RegistryError


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    digest = digest_param(request.match_info["digest"])
    blob = await content(request).blob(name, digest)
    return await send_blob(request, blob, head=request.method == "HEAD")


async def delete_blob(request: web.Request) -> web.Response:
    name = repository(request)
    digest = digest_param(request.match_info["digest"])
    if not request.app[DELETE_ENABLED_KEY]:
        raise RegistryError("UNSUPPORTED", "deletes are disabled on this registry")
    await content(request).delete_blob(name, digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest), "Content-Length": "0"})

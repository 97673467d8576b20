"""Blobs: HEAD/GET (with Range) and DELETE of /v2/<name>/blobs/<digest>."""

from aiohttp import web

from registry.api.common import digest_param, require_deletes, routed
from registry.api.recording import note_pull
from registry.api.responses import send_blob
from registry.events.journal import BLOB_MEDIA_TYPE


async def get_blob(request: web.Request) -> web.StreamResponse:
    store, name = await routed(request)
    digest = digest_param(request.match_info["digest"])
    if request.method == "HEAD":  # existence and size only: a mirror asks its upstream, downloads nothing
        return await send_blob(request, await store.blob_head(name, digest), head=True)
    found = await store.blob(name, digest)
    note_pull(request, "blob", name, found.digest, BLOB_MEDIA_TYPE, found.size)
    return await send_blob(request, found)


async def delete_blob(request: web.Request) -> web.Response:
    store, name = await routed(request)
    digest = digest_param(request.match_info["digest"])
    require_deletes(request)
    await store.delete_blob(name, digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest), "Content-Length": "0"})

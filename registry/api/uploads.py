"""Blob uploads: POST (session, monolithic, mount), PATCH, GET status, PUT, DELETE."""

from __future__ import annotations

from aiohttp import web

from registry.api.common import body_chunks, content_range, digest_param, may_pull, routed, upload_id
from registry.content.model import BlobContent, Upload
from registry.reference import validate_name


def _session_response(upload: Upload, status: int) -> web.Response:
    return web.Response(status=status, headers={
        "Location": f"/v2/{upload.repository}/blobs/uploads/{upload.id}",
        "Docker-Upload-UUID": upload.id,
        "Range": f"0-{max(upload.size - 1, 0)}",
        "Content-Length": "0",
    })


def _created_response(name: str, blob: BlobContent) -> web.Response:
    return web.Response(status=201, headers={
        "Location": f"/v2/{name}/blobs/{blob.digest}",
        "Docker-Content-Digest": blob.digest,
        "Content-Length": "0",
    })


async def start_upload(request: web.Request) -> web.Response:
    store, name = await routed(request)
    query = request.query
    if "mount" in query:
        digest = digest_param(query["mount"])
        source = query.get("from")
        # Only from a repository the caller may read: otherwise a normal session, which
        # tells nothing about what the source holds.
        if source and may_pull(request, validate_name(source)):
            mounted = await store.mount_blob(name, digest, source)
            if mounted is not None:
                return _created_response(name, mounted)
    if "digest" in query:
        digest = digest_param(query["digest"])
        blob = await store.put_blob(name, digest, body_chunks(request, request.content_length))
        return _created_response(name, blob)
    upload = await store.start_upload(name)
    if request.content_length:  # a body without ?digest= is a first chunk
        upload = await store.append_upload(name, upload.id, body_chunks(request, request.content_length), 0)
    return _session_response(upload, 202)


async def upload_status(request: web.Request) -> web.Response:
    store, name = await routed(request)
    upload = await store.upload_status(name, upload_id(request))
    return _session_response(upload, 204)


async def patch_upload(request: web.Request) -> web.Response:
    store, name = await routed(request)
    start, length = content_range(request)
    declared = length if length is not None else request.content_length
    upload = await store.append_upload(name, upload_id(request),
                                                  body_chunks(request, declared), start)
    return _session_response(upload, 202)


async def finish_upload(request: web.Request) -> web.Response:
    store, name = await routed(request)
    digest = digest_param(request.query.get("digest"))
    start, length = content_range(request)
    declared = length if length is not None else request.content_length
    has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    body = body_chunks(request, declared) if has_body else None
    blob = await store.finish_upload(name, upload_id(request), digest, body, start)
    return _created_response(name, blob)


async def cancel_upload(request: web.Request) -> web.Response:
    store, name = await routed(request)
    await store.cancel_upload(name, upload_id(request))
    return web.Response(status=204)

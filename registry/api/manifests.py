"""Manifests: GET/HEAD/PUT/DELETE of /v2/<name>/manifests/<tag or digest>.

A reference that is neither a valid tag nor a digest names nothing: reading or deleting it is 404
MANIFEST_UNKNOWN (as in Distribution, whose router matches no route for it, and as the OCI
conformance suite expects of `.INVALID_MANIFEST_NAME`); storing under it is 400 TAG_INVALID.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from registry import manifest as mf
from registry.api.common import LIMITS_KEY, require_deletes, routed
from registry.api.recording import note_pull
from registry.api.responses import head_response
from registry.digest import Digest, is_digest, parse_digest
from registry.errors import RegistryError, TooLarge
from registry.http_errors import HTTPError
from registry.reference import is_valid_tag, validate_tag


def _existing_reference(value: str) -> str | Digest:
    """The tag or digest to look up (GET, HEAD). A malformed one names no manifest: Distribution
    reads a string that is not a valid digest as a tag, and finds no such tag."""
    if is_digest(value):
        try:
            return parse_digest(value)
        except RegistryError:
            raise _unknown(value) from None
    if not is_valid_tag(value):
        raise _unknown(value)
    return value


def _unknown(reference: str) -> RegistryError:
    return RegistryError("MANIFEST_UNKNOWN", "no manifest can have this reference: it is neither a valid tag "
                         "nor a digest", detail={"reference": reference[:200]})


def _new_reference(value: str) -> str | Digest:
    """The tag or digest to store under (PUT): a malformed one is the client's error."""
    return parse_digest(value) if is_digest(value) else validate_tag(value)


async def get_manifest(request: web.Request) -> web.StreamResponse:
    store, name = await routed(request)
    reference = _existing_reference(request.match_info["reference"])
    found = await store.manifest(name, reference)
    if not isinstance(reference, Digest):
        _negotiate(request, found.media_type)
    headers = {"Docker-Content-Digest": found.digest, "Content-Type": found.media_type,
               "ETag": f'"{found.digest}"'}
    if found.stale:  # a mirror's cached copy while its upstream fails
        headers["Warning"] = '110 - "Response is Stale"'
    if request.method == "HEAD":
        return await head_response(request, headers, len(found.payload))
    note_pull(request, "manifest", name, found.digest, found.media_type, len(found.payload),
              None if isinstance(reference, Digest) else reference)
    return web.Response(body=found.payload, headers=headers)


def _negotiate(request: web.Request, media_type: str) -> None:
    """Like the reference registry: an OCI manifest by tag only for clients that accept OCI."""
    if media_type not in (mf.OCI_MANIFEST, mf.OCI_INDEX):
        return
    if not mf.accepts(request.headers.getall("Accept", []), media_type):
        kind = "manifest" if media_type == mf.OCI_MANIFEST else "index"
        raise RegistryError("MANIFEST_UNKNOWN", f"OCI {kind} found, but accept header does not support OCI {kind}s")


async def put_manifest(request: web.Request) -> web.Response:
    store, name = await routed(request)
    reference = _new_reference(request.match_info["reference"])
    limit = request.app[LIMITS_KEY].manifest_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge("MANIFEST_INVALID", f"manifest larger than {limit} bytes")
    payload = await _read_limited(request, limit)
    stored = await store.put_manifest(name, reference, payload, request.headers.get("Content-Type"))
    headers = {"Location": f"/v2/{name}/manifests/{stored.digest}", "Docker-Content-Digest": stored.digest,
               "Content-Length": "0"}
    if stored.subject:
        headers["OCI-Subject"] = stored.subject
    return web.Response(status=201, headers=headers)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    timeout = request.app[LIMITS_KEY].body_timeout
    while True:
        try:
            piece = await asyncio.wait_for(request.content.readany(), timeout)
        except TimeoutError:
            raise HTTPError("MANIFEST_INVALID", f"request body stalled for {timeout:.0f}s", status=408) from None
        if not piece:
            break
        total += len(piece)
        if total > limit:
            raise TooLarge("MANIFEST_INVALID", f"manifest larger than {limit} bytes")
        chunks.append(piece)
    return b"".join(chunks)


async def delete_manifest(request: web.Request) -> web.Response:
    """An invalid tag is 404 (nothing by that name to delete; Distribution has no route for it).
    A malformed digest is 400 DIGEST_INVALID, as Distribution 2.8 answers it."""
    store, name = await routed(request)
    value = request.match_info["reference"]
    reference = parse_digest(value) if is_digest(value) else _existing_reference(value)
    require_deletes(request)
    await store.delete_manifest(name, reference)
    return web.Response(status=202, headers={"Content-Length": "0"})

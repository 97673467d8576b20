"""Request parsing shared by the handlers: names, references, pagination, bodies, ranges."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlencode
from typing import Any, AsyncIterator

from aiohttp import web

from registry.auth.gate import GATE_KEY, identity_of
from registry.config import LimitsConfig
from registry.content.local import LocalContent
from registry.digest import Digest, is_digest, parse_digest
from registry.errors import RegistryError
from registry.reference import validate_name, validate_tag

CONTENT_KEY = web.AppKey("content", LocalContent)
CHUNK_BYTES_KEY = web.AppKey("chunk_bytes", int)
DELETE_ENABLED_KEY = web.AppKey("delete_enabled", bool)
LIMITS_KEY = web.AppKey("limits", LimitsConfig)
MIRROR_KEY = web.AppKey("mirror", object)
API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}


def content(request: web.Request) -> LocalContent:
    return request.app[CONTENT_KEY]


async def routed(request: web.Request) -> tuple[Any, str]:
    """The content a repository request goes to, and the repository name that content knows.

    Local repositories: the local content and the name as asked. Mirrored ones (routing in
    registry/mirror/upstreams.py): the mirror and the cache repository's name. A root name
    (Docker's registry-mirrors) that is not a local repository goes to the Docker Hub upstream
    for manifests, and for its blobs and tags only once the mirror holds that repository:
    a push's first checks on a new local repository never reach (or leak to) the upstream.
    A write into a mirrored namespace reaches the mirror, which refuses it.
    """
    name = repository(request)
    local = request.app[CONTENT_KEY]
    mirror = request.app.get(MIRROR_KEY)
    if mirror is None:
        return local, name
    router = mirror.router
    if request.method not in ("GET", "HEAD"):
        route = router.prefixed(name) or (router.docker_hub_route(name) if router.mirrored_namespace(name) else None)
        return (mirror, route.cache_name) if route else (local, name)
    ns = request.query.get("ns")
    if ns:
        return mirror, router.by_namespace(ns, name).cache_name
    route = router.prefixed(name)
    if route is None:
        hub = router.docker_hub_route(name)
        if hub is None or await local.has_repository(name):
            return local, name
        official = name.startswith("library/") or "/" not in name
        if not (official or "reference" in request.match_info or await local.has_repository(hub.cache_name)):
            return local, name
        route = hub
    return mirror, route.cache_name


_RESOURCES = ("/blobs/", "/manifests/", "/tags/", "/referrers/")


def repository(request: web.Request) -> str:
    # An encoded slash would let one path segment pose as several name components.
    raw = request.raw_path.partition("?")[0]
    ends = [i for i in (raw.find(r, 4) for r in _RESOURCES) if i > 0]
    if "%2f" in raw[4:min(ends) if ends else len(raw)].lower():
        raise RegistryError("NAME_INVALID", "encoded slashes are not allowed in repository names")
    return validate_name(request.match_info["name"])


def may_pull(request: web.Request, repository_name: str) -> bool:
    return request.app[GATE_KEY].allows(identity_of(request), repository_name, "pull")


def require_deletes(request: web.Request) -> None:
    if not request.app[DELETE_ENABLED_KEY]:
        raise RegistryError("UNSUPPORTED", "deletes are disabled on this registry")


def digest_param(value: str | None) -> Digest:
    if value is None:
        raise RegistryError("DIGEST_INVALID", "a digest is required")
    return parse_digest(value)


def manifest_reference(value: str) -> str | Digest:
    return parse_digest(value) if is_digest(value) else validate_tag(value)


def pagination(request: web.Request) -> tuple[int | None, str | None]:
    raw_n = request.query.get("n")
    limit: int | None = None
    if raw_n is not None:
        if not raw_n.isdigit() or len(raw_n) > 9:
            raise RegistryError("PAGINATION_NUMBER_INVALID", detail={"n": raw_n[:20]})
        limit = int(raw_n)
    return limit, request.query.get("last") or None


def page(path: str, limit: int | None, rows: list[str]) -> tuple[list[str], dict[str, str]]:
    """Trim rows fetched with limit+1 to one page, with a Link header when more follow."""
    if limit is None or len(rows) <= limit:
        return rows, {}
    if limit == 0:
        return [], {}
    rows = rows[:limit]
    return rows, {"Link": f'<{path}?{urlencode({"n": limit, "last": rows[-1]})}>; rel="next"'}


async def body_chunks(request: web.Request, declared: int | None = None) -> AsyncIterator[bytes]:
    """The request body in large chunks, streamed; checks the length against `declared`,
    the blob size limit, and aborts a body that stalls longer than the limit allows."""
    target = request.app[CHUNK_BYTES_KEY]
    limits = request.app[LIMITS_KEY]
    if limits.blob_bytes and declared is not None and declared > limits.blob_bytes:
        raise RegistryError("SIZE_INVALID", f"blob larger than the limit of {limits.blob_bytes} bytes", status=413)
    stream = request.content
    received = 0
    buffer: list[bytes] = []
    buffered = 0
    loop = asyncio.get_running_loop()
    while True:
        try:
            # One deadline moved on as pieces arrive: cheaper than a wait_for (a task) per piece.
            async with asyncio.timeout(limits.body_timeout) as deadline:
                while buffered < target:
                    piece = await stream.readany()
                    if not piece:
                        break
                    buffer.append(piece)
                    buffered += len(piece)
                    received += len(piece)
                    _check_received(received, declared, limits)
                    deadline.reschedule(loop.time() + limits.body_timeout)
        except TimeoutError:
            raise RegistryError("BLOB_UPLOAD_INVALID", f"request body stalled for {limits.body_timeout:.0f}s",
                                status=408) from None
        except RegistryError:
            raise
        except Exception:
            if buffer:  # keep what did arrive: the upload's offset then says where to resume
                yield b"".join(buffer)
            raise
        if buffer:
            yield b"".join(buffer) if len(buffer) > 1 else buffer[0]
        if buffered < target:  # the body ended
            break
        buffer, buffered = [], 0
    if declared is not None and received != declared:
        raise RegistryError("SIZE_INVALID", f"body has {received} bytes, the range declares {declared}")


def _check_received(received: int, declared: int | None, limits: Any) -> None:
    if declared is not None and received > declared:
        raise RegistryError("SIZE_INVALID", "body is longer than the declared range")
    if limits.blob_bytes and received > limits.blob_bytes:
        raise RegistryError("SIZE_INVALID", f"blob larger than the limit of {limits.blob_bytes} bytes", status=413)


_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)$")


def content_range(request: web.Request) -> tuple[int | None, int | None]:
    """(start, length) from an upload's Content-Range, validated against Content-Length."""
    header = request.headers.get("Content-Range")
    if header is None:
        return None, None
    match = _CONTENT_RANGE.match(header.strip())
    if not match:
        raise RegistryError("BLOB_UPLOAD_INVALID", "malformed Content-Range", detail={"Content-Range": header[:100]})
    start, end = int(match[1]), int(match[2])
    if end < start:
        raise RegistryError("RANGE_INVALID", "Content-Range ends before it starts",
                            detail={"Content-Range": header[:100]})
    length = end - start + 1
    if request.content_length is not None and request.content_length != length:
        raise RegistryError("SIZE_INVALID", "Content-Length does not match Content-Range",
                            detail={"Content-Range": header[:100], "Content-Length": request.content_length})
    return start, length


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(offset, length) for a satisfiable single Range; None to serve the whole body.

    Raises RANGE_INVALID (416) when unsatisfiable; an unparsable or multi-range header is
    ignored, as RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match[1] and not match[2]):
        return None
    unsatisfiable = RegistryError("RANGE_INVALID", detail={"size": size}, headers={"Content-Range": f"bytes */{size}"})
    if not match[1]:  # suffix: the last N bytes
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            raise unsatisfiable
        suffix = min(suffix, size)
        return size - suffix, suffix
    start = int(match[1])
    if match[2] and int(match[2]) < start:
        return None  # "bytes=9-3" is invalid, and an invalid Range is ignored
    if start >= size:
        raise unsatisfiable
    end = min(int(match[2]) if match[2] else size - 1, size - 1)
    return start, end - start + 1

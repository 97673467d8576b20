"""Request parsing shared by the handlers: names, references, pagination, bodies, ranges."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlencode
from collections.abc import AsyncIterator

from aiohttp import web

from registry.auth.gate import GATE_KEY, identity_of
from registry.config import LimitsConfig
from registry.content.local import LocalContent
from registry.content.model import RepositoryContent
from registry.mirror.content import MirrorContent
from registry.digest import Digest, is_digest, parse_digest
from registry.errors import RegistryError, TooLarge
from registry.http_errors import HTTPError
from registry.numbers import INT64_DIGITS, ascii_decimal
from registry.reference import MAX_NAME_LENGTH, validate_name, validate_tag

CONTENT_KEY = web.AppKey("content", LocalContent)
CHUNK_BYTES_KEY = web.AppKey("chunk_bytes", int)
DELETE_ENABLED_KEY = web.AppKey("delete_enabled", bool)
LIMITS_KEY = web.AppKey("limits", LimitsConfig)
MIRROR_KEY = web.AppKey("mirror", MirrorContent)
API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
REQUEST_ID_KEY = "registry.request_id"  # the client's X-Request-Id, or one made up: logs and answers carry it


def content(request: web.Request) -> LocalContent:
    return request.app[CONTENT_KEY]


async def routed(request: web.Request) -> tuple[RepositoryContent, str]:
    """The content a repository request goes to, and the repository name that content knows.

    Local repositories: the local content and the name as asked. Mirrored ones (routing in
    registry/mirror/upstreams.py): the mirror and the cache repository's name. With a Docker Hub
    upstream, a root name (Docker's registry-mirrors) outside mirror.local_namespaces is Docker Hub's:
    its manifests go there, and its blobs and tags once the mirror holds that repository (a client's
    checks before a push, which is then refused, never leak to the upstream). A write into a mirrored
    namespace reaches the mirror, which refuses it.
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
        if hub is None:
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


MAX_PAGE_DIGITS = 9  # n up to 999,999,999: beyond any page a client can use
MAX_CURSOR_LENGTH = MAX_NAME_LENGTH  # `last` is a repository name, a tag or an upload id: none is longer
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")


def is_printable_key(value: str) -> bool:
    """A name, tag or upload id could be `value`: 1 to 255 printable ASCII characters. Nothing else
    need reach the database (PostgreSQL raises on NUL in text)."""
    return len(value) <= MAX_CURSOR_LENGTH and bool(_PRINTABLE_ASCII.fullmatch(value))


def upload_id(request: web.Request, key: str = "uuid") -> str:
    """The upload session in the path; one that no session could have is unknown (404)."""
    value = request.match_info[key]
    if not is_printable_key(value):
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": value[:100]})
    return value


def pagination(request: web.Request) -> tuple[int | None, str | None]:
    return page_size(request.query.get("n")), pagination_cursor(request.query.get("last"))


def page_size(raw: str | None) -> int | None:
    """`n`: 1 to 9 ASCII digits; None when absent."""
    if raw is None:
        return None
    limit = ascii_decimal(raw, MAX_PAGE_DIGITS)
    if limit is None:
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"n must be 1 to {MAX_PAGE_DIGITS} ASCII digits",
                            detail={"n": raw[:20]})
    return limit


def pagination_cursor(value: str | None) -> str | None:
    """`last`: where the previous page ended. Names, tags and upload ids are printable ASCII of at most
    255 characters, so no page ever ends at anything else; and text the database refuses (NUL, lone
    surrogates: PostgreSQL raises on both) must not reach it."""
    if not value:
        return None
    if not is_printable_key(value):
        raise RegistryError("PAGINATION_NUMBER_INVALID",
                            f"last must be a name or tag: at most {MAX_CURSOR_LENGTH} printable ASCII characters",
                            detail={"last": value[:100]})
    return value


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
        raise TooLarge("SIZE_INVALID", f"blob larger than the limit of {limits.blob_bytes} bytes")
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
            raise HTTPError("BLOB_UPLOAD_INVALID", f"request body stalled for {limits.body_timeout:.0f}s",
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


def _check_received(received: int, declared: int | None, limits: LimitsConfig) -> None:
    if declared is not None and received > declared:
        raise RegistryError("SIZE_INVALID", "body is longer than the declared range")
    if limits.blob_bytes and received > limits.blob_bytes:
        raise TooLarge("SIZE_INVALID", f"blob larger than the limit of {limits.blob_bytes} bytes")


# The spec's Content-Range is `^[0-9]+-[0-9]+$`; a `bytes=` or `bytes ` prefix is taken too, as it always was.
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)")


def content_range(request: web.Request) -> tuple[int | None, int | None]:
    """(start, length) from an upload's Content-Range, validated against Content-Length."""
    header = request.headers.get("Content-Range")
    if header is None:
        return None, None
    return parse_content_range(header, request.content_length)


def parse_content_range(header: str, content_length: int | None) -> tuple[int, int]:
    """(start, length) of `<start>-<end>`.

    Malformed (anything but ASCII digits, or a number wider than int64's 19 digits) is 400
    BLOB_UPLOAD_INVALID; an end before its start is 416, as a chunk out of order is.
    """
    match = _CONTENT_RANGE.fullmatch(header.strip(" \t"))
    start = end = None
    if match:
        start, end = ascii_decimal(match[1], INT64_DIGITS), ascii_decimal(match[2], INT64_DIGITS)
    if start is None or end is None:
        raise RegistryError("BLOB_UPLOAD_INVALID", "malformed Content-Range: expected <start>-<end> in ASCII digits",
                            detail={"Content-Range": header[:100]})
    if end < start:
        raise RegistryError("RANGE_INVALID", "Content-Range ends before it starts",
                            detail={"Content-Range": header[:100]})
    length = end - start + 1
    if content_length is not None and content_length != length:
        raise RegistryError("SIZE_INVALID", "Content-Length does not match Content-Range",
                            detail={"Content-Range": header[:100], "Content-Length": content_length})
    return start, length


# One byte range, ASCII digits; the unit is case-insensitive (RFC 9110 14.1).
_RANGE = re.compile(r"(?i:bytes)=([0-9]*)-([0-9]*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(offset, length) for a satisfiable single Range; None to serve the whole body.

    RFC 9110 14.2 lets a server ignore a Range it cannot read; an invalid or multi-range header
    (other digits than ASCII, "bytes=9-3", "bytes=0-1,5-6", another unit) is ignored, as nginx does.
    416 RANGE_INVALID with `Content-Range: bytes */SIZE` when it is unsatisfiable: it starts at or
    past the end, asks for a zero-length suffix or any range of an empty blob, or holds a number
    wider than int64 (nginx and Go's net/http answer an overflowing range with 416 too).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip(" \t"))
    if not match or (not match[1] and not match[2]):
        return None
    unsatisfiable = HTTPError("RANGE_INVALID", detail={"size": size}, headers={"Content-Range": f"bytes */{size}"})
    first = ascii_decimal(match[1], INT64_DIGITS) if match[1] else None
    last = ascii_decimal(match[2], INT64_DIGITS) if match[2] else None
    if (match[1] and first is None) or (match[2] and last is None):
        raise unsatisfiable  # wider than int64: not read as a number at all
    if first is None:  # suffix: the last N bytes (`last` is set: both empty was ignored above)
        if not last or size == 0:
            raise unsatisfiable
        suffix = min(last, size)
        return size - suffix, suffix
    if last is not None and last < first:
        return None  # "bytes=9-3" is invalid, and an invalid Range is ignored
    if first >= size:
        raise unsatisfiable
    end = min(last if last is not None else size - 1, size - 1)
    return first, end - first + 1

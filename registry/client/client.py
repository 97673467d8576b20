"""An async client for the Distribution v2 API.

Authentication follows the registry's lead: a 401 with `WWW-Authenticate: Bearer realm=...,
service=...,scope=...` sends it to the token server (with basic credentials when it has them)
and the token is cached per scope until it expires; `Basic` challenges get the credentials.
Idempotent requests are retried with backoff on connection errors and 5xx; a 429 raises
UpstreamThrottled with the server's Retry-After so the caller decides (the mirror serves stale
content; a pull waits). Blobs are streamed, never read whole.

Small bodies (manifests, configs, tag lists, token and error documents) are read to their end
under a cap by `read_capped`: a peer may deliver a body in as many pieces as it likes (every
real network and TLS connection does), and one read returns only what has arrived so far.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import email.utils
import logging
import re
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator, Iterable, Mapping

import aiohttp

from registry import json_strict
from registry.digest import parse_digest
from registry.numbers import ascii_decimal

log = logging.getLogger("registry.client")

MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
RETRY_STATUSES = {500, 502, 503, 504}
MANIFEST_LIMIT = 4 * 1024 * 1024  # Distribution refuses manifests above 4 MiB too
DOCUMENT_LIMIT = 4 * 1024 * 1024  # tag lists, token answers
MAX_TAG_PAGES = 1000  # an upstream's tag list read page by page: at 1,000 a page, a million tags
ERROR_LIMIT = 64 * 1024  # an error body is read only for its code and message


class UpstreamError(Exception):
    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(f"{status} {code} {message}".strip())
        self.status = status
        self.code = code
        self.message = message


class UpstreamNotFound(UpstreamError):
    pass


class UpstreamThrottled(UpstreamError):
    def __init__(self, retry_after: float, message: str = "too many requests") -> None:
        super().__init__(429, message, "TOOMANYREQUESTS")
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    """Unreachable, timed out, or answering 5xx after retries."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(status, message, "UNAVAILABLE")


@dataclass(frozen=True)
class ManifestResponse:
    digest: str
    media_type: str
    size: int
    payload: bytes | None = None  # None for HEAD


MAX_RETRY_AFTER = 3600.0  # an upstream asking for longer is asked again within the hour


def _retry_after(headers: Mapping[str, str], default: float = 1.0) -> float:
    """Seconds from Retry-After: delay-seconds or an HTTP-date (RFC 9110 10.2.3); `default` for
    anything else (a peer's "nan" or 400 digits must not become our schedule)."""
    value = headers.get("Retry-After", "").strip()
    whole = ascii_decimal(value, 9)
    if whole is not None:
        seconds = float(whole)
    else:
        try:
            seconds = (email.utils.parsedate_to_datetime(value) - dt.datetime.now(dt.UTC)).total_seconds()
        except (TypeError, ValueError, OverflowError):
            return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


async def read_capped(response: aiohttp.ClientResponse, limit: int, what: str = "body") -> bytes:
    """The whole body, however many pieces it arrives in; UpstreamError once it passes `limit`."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise UpstreamError(502, f"{what} of {declared} bytes is larger than {limit} bytes")
    pieces: list[bytes] = []
    received = 0
    try:
        async for piece in response.content.iter_any():
            received += len(piece)
            if received > limit:
                raise UpstreamError(502, f"{what} is larger than {limit} bytes")
            pieces.append(piece)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise UpstreamUnavailable(f"{what} cut short after {received} bytes: {exc or type(exc).__name__}") from None
    if declared is not None and received != declared:
        raise UpstreamError(502, f"{what} ended after {received} of {declared} bytes")
    return b"".join(pieces)


async def read_json(response: aiohttp.ClientResponse, limit: int, what: str) -> Any:
    raw = await read_capped(response, limit, what)
    try:
        return json_strict.loads(raw)
    except json_strict.StrictJSONError as exc:
        raise UpstreamError(502, f"{what} {exc}") from None


def trust_context(ca_files: Iterable[Path]) -> ssl.SSLContext | None:
    """The system's trusted CAs plus `ca_files` (PEM), or None (aiohttp's default) when there are none."""
    files = [Path(f) for f in ca_files]
    if not files:
        return None
    context = ssl.create_default_context()
    for path in files:
        context.load_verify_locations(cafile=str(path))
    return context


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


class RegistryClient:
    def __init__(self, base_url: str, username: str = "", password: str = "", *, retries: int = 3,
                 connect_timeout: float = 10.0, read_timeout: float = 60.0,
                 session: aiohttp.ClientSession | None = None, user_agent: str = "registry-client",
                 tls: ssl.SSLContext | None = None) -> None:
        """`tls`: the context to verify the server with (extra CAs, see `trust_context`)."""
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.retries = retries
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._session = session
        self._own_session = session is None
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, expires at)
        self._basic = False
        self.user_agent = user_agent
        self.tls = tls

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.tls) if self.tls is not None else None
            self._session = aiohttp.ClientSession(timeout=self.timeout, auto_decompress=False, connector=connector,
                                                  headers={"User-Agent": self.user_agent})
        return self._session

    # -- authentication ---------------------------------------------------------------
    def _auth_header(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token and token[1] > time.monotonic():
            return {"Authorization": f"Bearer {token[0]}"}
        if self._basic and self.username:
            raw = f"{self.username}:{self.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    async def _answer_challenge(self, header: str, scope: str) -> bool:
        """Get what the 401 asked for; False when we have nothing better to offer."""
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if not self.username or self._basic:
                return False
            self._basic = True
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        query = {"service": params.get("service", "")}
        wanted = params.get("scope") or scope
        if wanted:
            query["scope"] = wanted
        auth = aiohttp.BasicAuth(self.username, self.password) if self.username else None
        try:
            async with self.session.get(params["realm"], params=query, auth=auth) as response:
                if response.status == 429:
                    raise UpstreamThrottled(_retry_after(response.headers))
                if response.status != 200:
                    raise UpstreamError(response.status, "token request refused", "UNAUTHORIZED")
                body = await read_json(response, DOCUMENT_LIMIT, "token answer")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamUnavailable(f"token server unreachable: {exc!r}") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not token or not isinstance(token, str):
            raise UpstreamError(502, "token server answered without a token")
        expires_in = body.get("expires_in")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
            expires_in = 60  # the token spec's default; a float, a string or 1e400 is not a lifetime
        self._tokens[scope] = (token, time.monotonic() + max(min(expires_in, 86400) - 10, 5))
        return True

    # -- requests ---------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def request(self, method: str, path: str, scope: str,
                      headers: Mapping[str, str] | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request with auth and retries; yields the response (status < 400) for streaming."""
        url = self.base_url + path
        attempt = 0
        challenged = False
        while True:
            attempt += 1
            merged = {**(headers or {}), **self._auth_header(scope)}
            try:
                response = await self.session.request(method, url, headers=merged, allow_redirects=True)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if attempt <= self.retries:
                    await asyncio.sleep(min(0.2 * 2 ** attempt, 5))
                    continue
                raise UpstreamUnavailable(f"{self.base_url} unreachable: {exc or type(exc).__name__}") from None
            if response.status == 401 and not challenged:
                challenged = True
                header = response.headers.get("WWW-Authenticate", "")
                response.release()
                if await self._answer_challenge(header, scope):
                    continue
                raise UpstreamError(401, "upstream refused our credentials", "UNAUTHORIZED")
            if response.status == 429:
                retry_after = _retry_after(response.headers)
                response.release()
                raise UpstreamThrottled(retry_after)
            if response.status in RETRY_STATUSES:
                response.release()
                if attempt <= self.retries:
                    await asyncio.sleep(min(0.2 * 2 ** attempt, 5))
                    continue
                raise UpstreamUnavailable(f"{self.base_url} answered {response.status}", response.status)
            if response.status >= 400:
                code, message = await _error_of(response)
                response.release()
                if response.status == 404:
                    raise UpstreamNotFound(404, message, code)
                raise UpstreamError(response.status, message, code)
            try:
                yield response
            finally:
                response.release()
            return

    async def ping(self) -> None:
        async with self.request("GET", "/v2/", ""):
            pass

    async def head_manifest(self, repository: str, reference: str, accept: str = MANIFEST_ACCEPT) -> ManifestResponse:
        async with self.request("HEAD", f"/v2/{repository}/manifests/{reference}", f"repository:{repository}:pull",
                                {"Accept": accept}) as response:
            return ManifestResponse(response.headers.get("Docker-Content-Digest", ""),
                                    response.headers.get("Content-Type", "").split(";")[0],
                                    int(response.headers.get("Content-Length") or 0))

    async def get_manifest(self, repository: str, reference: str, accept: str = MANIFEST_ACCEPT,
                           limit: int = MANIFEST_LIMIT) -> ManifestResponse:
        async with self.request("GET", f"/v2/{repository}/manifests/{reference}", f"repository:{repository}:pull",
                                {"Accept": accept}) as response:
            payload = await read_capped(response, limit, "manifest")
            return ManifestResponse(response.headers.get("Docker-Content-Digest", ""),
                                    response.headers.get("Content-Type", "").split(";")[0], len(payload), payload)

    async def head_blob(self, repository: str, digest: str) -> int:
        """The blob's size, from a HEAD (no bytes move); UpstreamNotFound when it is not there."""
        async with self.request("HEAD", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull") as r:
            length = r.headers.get("Content-Length", "")
            if not length.isascii() or not length.isdigit():
                raise UpstreamError(502, f"HEAD of blob {digest} answered without a Content-Length")
            return int(length)

    @contextlib.asynccontextmanager
    async def blob(self, repository: str, digest: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """The blob's response, to stream with `response.content.iter_chunked(...)`."""
        async with self.request("GET", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull") as r:
            yield r

    async def small_blob(self, repository: str, digest: str, limit: int) -> bytes:
        """A blob read whole (an image config) under `limit`, verified against its digest."""
        expected = parse_digest(digest)
        async with self.blob(repository, digest) as response:
            data = await read_capped(response, limit, f"blob {digest}")
        hasher = expected.hasher()
        hasher.update(data)
        if hasher.hexdigest() != expected.hex:
            raise UpstreamError(502, f"blob {digest} does not match its digest")
        return data

    async def tags(self, repository: str) -> list[str]:
        """The repository's whole tag list, following the upstream's `Link: <...>; rel="next"`
        pages (registries that page by default would otherwise show only their first page)."""
        path: str | None = f"/v2/{repository}/tags/list"
        found: list[str] = []
        pages = 0
        while path is not None and pages < MAX_TAG_PAGES:
            pages += 1
            async with self.request("GET", path, f"repository:{repository}:pull") as response:
                body = await read_json(response, DOCUMENT_LIMIT, "tag list")
                link = response.headers.get("Link", "")
            tags = body.get("tags") if isinstance(body, dict) else None
            found += [t for t in tags or [] if isinstance(t, str)]
            following = next_page(link, f"/v2/{repository}/tags/list")
            path = following if following != path else None  # a peer repeating itself ends the list
        if path is not None:
            log.warning("%s: the tag list of %s has more than %d pages; the rest is not read",
                        self.base_url, repository, MAX_TAG_PAGES)
        return found


_NEXT_LINK = re.compile(r'<([^>]*)>\s*;(?:[^,]*;)?\s*rel="?next"?', re.IGNORECASE)


def next_page(link_header: str, expected_path: str) -> str | None:
    """The path and query of a `Link` header's next page, when it pages the same list. A link to
    another path is not followed; a link's host is ignored (the page is asked of the same upstream,
    with our credentials, never of a host the peer names)."""
    match = _NEXT_LINK.search(link_header)
    if match is None:
        return None
    try:
        target = urllib.parse.urlsplit(match.group(1))
    except ValueError:  # e.g. "http://[h/...": an IPv6 literal never closed
        return None
    if target.path != expected_path:
        return None
    return f"{target.path}?{target.query}" if target.query else None


async def _error_of(response: aiohttp.ClientResponse) -> tuple[str, str]:
    try:
        body = await read_json(response, ERROR_LIMIT, "error body")
        first = (body.get("errors") or [{}])[0]
        return str(first.get("code", "")), str(first.get("message", ""))
    except Exception:  # noqa: BLE001 - any shape at all: the status still tells what happened
        return "", response.reason or ""

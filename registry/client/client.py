"""An async client for the Distribution v2 API.

Authentication follows the registry's lead: a 401 with `WWW-Authenticate: Bearer realm=...,
service=...,scope=...` sends it to the token server (with basic credentials when it has them)
and the token is cached per scope until it expires; `Basic` challenges get the credentials.
Idempotent requests are retried with backoff on connection errors and 5xx; a 429 raises
UpstreamThrottled with the server's Retry-After so the caller decides (the mirror serves stale
content; a pull waits). Blobs are streamed, never read whole, both ways: an upload's body comes from
the caller's async iterable, sent once (a stream cannot be replayed), so the token for its scope is
made sure of before the first byte.

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
from typing import Any, Literal
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable, Mapping

import aiohttp

from registry import json_strict
from registry.digest import ALGORITHMS, DEFAULT_ALGORITHM, Digest, digest_bytes, is_digest, parse_digest
from registry.errors import RegistryError
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
API_ABSENT = {404, 405}  # how a registry without the referrers API answers for its path (OCI 1.1)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
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
class Referrers:
    """A subject's referrers as index descriptors (dicts holding mediaType, digest, size, and
    artifactType and annotations when the upstream gave them). `via_tag`: read from the OCI 1.1
    fallback tag because the upstream has no referrers API; false when the API answered."""
    descriptors: list[dict[str, Any]]
    via_tag: bool


@dataclass(frozen=True)
class PushedManifest:
    digest: str
    subject: str | None  # the answer's OCI-Subject: the upstream indexed the manifest as a referrer


BlobSource = Callable[[], contextlib.AbstractAsyncContextManager[AsyncIterable[bytes]]]


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
        self._bearer = False  # the server has asked for a token at least once
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
    def _token(self, scope: str) -> str | None:
        """A live token asked for `scope`, or for scopes that cover it (the token a mount brought
        serves the upload after it; one asked for pull,push serves a pull)."""
        now = time.monotonic()
        token = self._tokens.get(scope)
        if token and token[1] > now:
            return token[0]
        needed = _actions_by_resource(scope)
        for asked, (value, expires) in self._tokens.items():
            if needed and expires > now and _covers(_actions_by_resource(asked), needed):
                return value
        return None

    def _auth_header(self, scope: str) -> dict[str, str]:
        token = self._token(scope)
        if token:
            return {"Authorization": f"Bearer {token}"}
        return self._basic_header() if self._basic else {}

    def _basic_header(self) -> dict[str, str]:
        """Our credentials as Basic (aiohttp's BasicAuth is deprecated), or nothing without them."""
        if not self.username:
            return {}
        raw = f"{self.username}:{self.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

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
        # What the challenge names plus what we asked for, each scope its own parameter (the token
        # spec's form; a mount needs the target's pull,push and the source's pull in one token).
        wanted = list(dict.fromkeys((params.get("scope", "") + " " + scope).split()))
        query = [("service", params.get("service", "")), *(("scope", item) for item in wanted)]
        self._bearer = True
        try:
            async with self.session.get(params["realm"], params=query, headers=self._basic_header()) as response:
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
    async def request(self, method: str, path: str, scope: str, headers: Mapping[str, str] | None = None,
                      data: bytes | AsyncIterable[bytes] | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request with auth and retries; yields the response (status < 400) for streaming.

        `scope` is one or more space-separated token scopes (`repository:NAME:pull,push`). A body
        given as bytes is sent again on a retry; one streamed from an async iterable goes once:
        no retry, no second try after a 401 (make sure of the token first, see `_make_sure_of_token`)."""
        url = self.base_url + path
        replayable = not isinstance(data, AsyncIterable)
        attempt = 0
        challenged = not replayable
        while True:
            attempt += 1
            merged = {**(headers or {}), **self._auth_header(scope)}
            try:
                # A stream is not followed through a redirect: its bytes went to the first answer.
                response = await self.session.request(method, url, headers=merged, data=data,
                                                      allow_redirects=replayable)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if replayable and attempt <= self.retries:
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
                if replayable and attempt <= self.retries:
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
        list_path = f"/v2/{repository}/tags/list"
        return await self._names(list_path, list_path, f"repository:{repository}:pull", "tags",
                                 f"the tag list of {repository}")

    async def catalog(self, limit: int = 10_000, page_size: int | None = None) -> list[str]:
        """The upstream's repository names, at most `limit` of them, following its `Link` pages;
        `page_size` asks for pages of that many (`?n=`), else the upstream chooses. What the
        catalog shows depends on the upstream (ours: what the caller may pull)."""
        first = f"/v2/_catalog?n={page_size}" if page_size else "/v2/_catalog"
        return await self._names(first, "/v2/_catalog", "registry:catalog:*", "repositories", "the catalog", limit)

    async def _names(self, first: str, list_path: str, scope: str, key: str, what: str,
                     limit: int | None = None) -> list[str]:
        """The strings under `key` of every page of a list, up to `limit` of them."""
        found: list[str] = []
        async with contextlib.aclosing(self._pages(first, list_path, scope, what, DOCUMENT_LIMIT)) as pages:
            async for body in pages:
                names = body.get(key) if isinstance(body, dict) else None
                found += [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
                if limit is not None and len(found) >= limit:
                    return found[:limit]
        return found

    async def _pages(self, first: str, list_path: str, scope: str, what: str, limit: int,
                     headers: Mapping[str, str] | None = None) -> AsyncGenerator[Any, None]:
        """The JSON bodies of a list read page by page, following `Link: <...>; rel="next"` while
        it pages the same list, for at most MAX_TAG_PAGES pages (an upstream whose cursor never
        ends must not keep us forever)."""
        path: str | None = first
        pages = 0
        while path is not None and pages < MAX_TAG_PAGES:
            pages += 1
            async with self.request("GET", path, scope, headers) as response:
                body = await read_json(response, limit, what)
                link = response.headers.get("Link", "")
            yield body
            following = next_page(link, list_path)
            path = following if following != path else None  # a peer repeating itself ends the list
        if path is not None:
            log.warning("%s: %s has more than %d pages; the rest is not read", self.base_url, what, MAX_TAG_PAGES)

    # -- referrers (OCI 1.1) -------------------------------------------------------------
    async def referrers(self, repository: str, digest: str) -> Referrers:
        """The manifests whose subject is `digest`: by the referrers API (every page of it), or,
        where the upstream answers 404 or 405 for it (Distribution 2.8 answers a plain-text 404),
        by the fallback tag `<alg>-<hex>` that clients such as oras keep there; no such tag is no
        referrers."""
        subject = parse_digest(digest)
        api = f"/v2/{repository}/referrers/{subject}"
        found: list[dict[str, Any]] = []
        answered = False
        try:
            async with contextlib.aclosing(self._pages(api, api, f"repository:{repository}:pull", "referrers index",
                                                       MANIFEST_LIMIT, {"Accept": OCI_INDEX})) as pages:
                async for index in pages:
                    answered = True
                    found += _descriptors(index, "referrers index")
            return Referrers(found, via_tag=False)
        except UpstreamError as exc:
            if answered or exc.status not in API_ABSENT:
                raise
        tag = referrers_tag(subject)
        try:
            tagged = await self.get_manifest(repository, tag, OCI_INDEX)
        except UpstreamNotFound:
            return Referrers([], via_tag=True)
        assert tagged.payload is not None
        try:
            index = json_strict.loads(tagged.payload)
        except json_strict.StrictJSONError as exc:
            raise UpstreamError(502, f"referrers tag {tag} {exc}") from None
        if not isinstance(index, dict) or index.get("mediaType", tagged.media_type) != OCI_INDEX:
            raise UpstreamError(502, f"referrers tag {tag} is not an OCI image index")
        return Referrers(_descriptors(index, f"referrers tag {tag}"), via_tag=True)

    # -- writes ---------------------------------------------------------------------------
    async def start_upload(self, repository: str) -> str:
        """A new upload session; its location (a path under base_url) for `finish_upload`. Retried
        like a GET: a retry after a lost answer leaves at worst an unused session, which expires."""
        async with self.request("POST", f"/v2/{repository}/blobs/uploads/", _push_scope(repository)) as response:
            if response.status != 202:
                raise UpstreamError(502, f"upload to {repository} started with {response.status}, not 202")
            return self._location(response)

    async def mount_blob(self, repository: str, digest: str, source_repository: str) -> str | None:
        """Mount `digest` from `source_repository`: None when mounted (201); when the upstream
        will not (202: no such blob there, no pull on the source, no mounts at all), the upload
        session it opened instead, for `finish_upload` without another POST."""
        parse_digest(digest)
        query = urllib.parse.urlencode({"mount": digest, "from": source_repository}, safe=":/")
        scope = f"{_push_scope(repository)} repository:{source_repository}:pull"
        async with self.request("POST", f"/v2/{repository}/blobs/uploads/?{query}", scope) as response:
            if response.status == 201:
                return None
            if response.status != 202:
                raise UpstreamError(502, f"mount into {repository} answered {response.status}, not 201 or 202")
            return self._location(response)

    async def finish_upload(self, location: str, digest: str, size: int, chunks: AsyncIterable[bytes]) -> None:
        """One monolithic PUT of the whole blob to an upload session (`start_upload`, `mount_blob`),
        its body streamed from `chunks`, which must give exactly `size` bytes. Sent once: no retry. An
        exception from `chunks` (a source cut short) is raised as itself; a wrong size is UpstreamError
        400 SIZE_INVALID."""
        parse_digest(digest)
        match = _UPLOAD_PATH.match(urllib.parse.urlsplit(location).path)
        if match is None:  # the spec's shape, which every registry known here answers
            raise UpstreamError(502, f"upload Location {location[:200]!r} is not /v2/NAME/blobs/uploads/ID")
        scope = _push_scope(match.group(1))
        await self._make_sure_of_token(location, scope)
        path = location + ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest}, safe=":")
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        failed: list[Exception] = []  # the source's own failure, raised as itself, not as the upstream's
        try:
            async with self.request("PUT", path, scope, headers, data=_exactly(chunks, size, digest, failed)) as r:
                if r.status != 201:
                    raise UpstreamError(502, f"upload of {digest} answered {r.status}, not 201")
                stored = r.headers.get("Docker-Content-Digest")
                if stored is not None and stored != digest:
                    raise UpstreamError(502, f"upload of {digest} was stored as {stored[:100]}")
        except UpstreamUnavailable:
            if failed:
                raise failed[0] from None
            raise

    async def _make_sure_of_token(self, location: str, scope: str) -> None:
        """Before a body that cannot be sent twice: when we have credentials or the upstream has
        asked for tokens, and nothing to send yet for `scope`, ask for the upload's status (a GET
        without a body) to go through the challenge first. Anonymous clients of open upstreams, and
        the usual case (the POST that opened the upload got the token), cost nothing."""
        if (self._bearer or self.username) and not self._auth_header(scope):
            async with self.request("GET", location, scope):
                pass

    async def push_blob(self, repository: str, digest: str, size: int, chunks: BlobSource,
                        mount_from: str | None = None) -> Literal["mounted", "uploaded"]:
        """A blob into `repository`: mounted from `mount_from` when the upstream can, else uploaded
        in one PUT. `chunks` is called only when the bytes are needed and gives an async context
        manager for the body, so a source (say another registry's GET) is opened only then and
        closed after."""
        location = await self.mount_blob(repository, digest, mount_from) if mount_from else None
        if mount_from and location is None:
            return "mounted"
        location = location or await self.start_upload(repository)
        async with chunks() as body:
            await self.finish_upload(location, digest, size, body)
        return "uploaded"

    async def put_manifest(self, repository: str, reference: str, payload: bytes, media_type: str) -> PushedManifest:
        """PUT a manifest under a tag or its digest; retried like a GET (the same bytes twice are
        the same manifest). The digest the upstream answers must be the payload's."""
        headers = {"Content-Type": media_type}
        async with self.request("PUT", f"/v2/{repository}/manifests/{reference}", _push_scope(repository),
                                headers, data=payload) as response:
            if response.status != 201:
                raise UpstreamError(502, f"manifest {repository}:{reference} answered {response.status}, not 201")
            answered = response.headers.get("Docker-Content-Digest", "")
            subject = response.headers.get("OCI-Subject") or None
        named = answered or (reference if is_digest(reference) else "")
        algorithm = named.partition(":")[0] if named.partition(":")[0] in ALGORITHMS else DEFAULT_ALGORITHM
        digest = str(digest_bytes(payload, algorithm))
        if answered and answered != digest:
            raise UpstreamError(502, f"manifest {repository}:{reference} was stored as {answered[:100]}, not {digest}")
        return PushedManifest(digest, subject)

    async def delete_manifest(self, repository: str, digest: str) -> None:
        """DELETE a manifest by digest (tags on it go with it, as the spec has it; a tag is refused
        here with DIGEST_INVALID). UpstreamNotFound when it is not there; 405 is an upstream that
        does not allow deletes."""
        parse_digest(digest)
        try:
            async with self.request("DELETE", f"/v2/{repository}/manifests/{digest}",
                                    f"repository:{repository}:delete") as response:
                if response.status not in (200, 202, 204):
                    raise UpstreamError(502, f"delete of {repository}@{digest} answered {response.status}")
        except UpstreamError as exc:
            if exc.status == 405:
                raise UpstreamError(405, f"{self.base_url} does not allow deletes (405; for Distribution: "
                                    "storage.delete.enabled)", exc.code or "UNSUPPORTED") from None
            raise

    def _location(self, response: aiohttp.ClientResponse) -> str:
        return same_origin_path(self.base_url, response.headers.get("Location", ""))


def referrers_tag(subject: Digest) -> str:
    """The OCI 1.1 fallback tag that lists a subject's referrers: `<alg>-<hex>`, each part cut to
    the spec's length (32 and 64) so the tag stays within 128 characters."""
    return f"{subject.algorithm[:32]}-{subject.hex[:64]}"


def _descriptors(index: Any, what: str) -> list[dict[str, Any]]:
    """An index's `manifests`, each checked for what a descriptor must hold: a peer's garbage is an
    error here, not a referrer we would copy."""
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        raise UpstreamError(502, f"{what} has no manifests list")
    for number, item in enumerate(manifests):
        size = item.get("size") if isinstance(item, dict) else None
        if (not isinstance(item, dict) or not isinstance(item.get("mediaType"), str) or not isinstance(size, int)
                or isinstance(size, bool) or size < 0 or not isinstance(item.get("digest"), str)
                or not isinstance(item.get("annotations", {}), dict)
                or not isinstance(item.get("artifactType", ""), str)):
            raise UpstreamError(502, f"{what}: descriptor {number} is not a descriptor")
        try:
            parse_digest(item["digest"])
        except RegistryError:
            raise UpstreamError(502, f"{what}: descriptor {number} has an invalid digest") from None
    return manifests


def _actions_by_resource(scope: str) -> dict[str, set[str]]:
    """`repository:a/b:pull,push registry:catalog:*` as {"repository:a/b": {"pull", "push"}, ...};
    a name may hold a colon (host:port/...), the actions are after the last one."""
    found: dict[str, set[str]] = {}
    for item in scope.split():
        resource, _, actions = item.rpartition(":")
        found.setdefault(resource, set()).update(actions.split(","))
    return found


def _covers(asked: dict[str, set[str]], needed: dict[str, set[str]]) -> bool:
    return all(actions <= asked.get(resource, set()) for resource, actions in needed.items())


_UPLOAD_PATH = re.compile(r"/v2/(.+)/blobs/uploads/[^/]+")


def _push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


async def _exactly(chunks: AsyncIterable[bytes], size: int, digest: str,
                   failed: list[Exception]) -> AsyncIterator[bytes]:
    """`chunks` passed on, refused once they give more than `size` bytes or end short of it (the
    upstream would wait for the rest until its timeout, or cut us off mid-body). What goes wrong
    here is kept in `failed`: aiohttp reports it as a broken connection to the upstream."""
    sent = 0
    try:
        async for chunk in chunks:
            sent += len(chunk)
            if sent > size:
                raise UpstreamError(400, f"the source of {digest} gave more than its {size} bytes", "SIZE_INVALID")
            yield chunk
        if sent != size:
            raise UpstreamError(400, f"the source of {digest} gave {sent} of its {size} bytes", "SIZE_INVALID")
    except Exception as exc:
        failed.append(exc)
        raise


def same_origin_path(base_url: str, location: str) -> str:
    """A `Location` the upstream answered, as a path under `base_url` (for `request`). Relative
    locations are resolved against base_url; one on another scheme, host or port, or outside
    base_url's path, is refused: our credentials go to base_url only."""
    if not location:
        raise UpstreamError(502, "upload answered without a Location")
    try:
        absolute = urllib.parse.urljoin(base_url + "/", location)
    except ValueError:
        raise UpstreamError(502, f"upload Location {location[:200]!r} is not a URL") from None
    if not absolute.startswith(base_url + "/"):
        raise UpstreamError(502, f"upload Location {location[:200]!r} is not on {base_url}")
    return absolute[len(base_url):]


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

"""Mirrored repositories: the same content interface as local ones, backed by an upstream.

Names given to this class are cache repository names (`<alias>/<upstream name>`); the router
maps them back to their upstream. Reads:
- a manifest by digest is served from the cache or fetched once (digests never change);
- a manifest by tag is served from the cache while the upstream's tag TTL holds, then
  revalidated with a HEAD and fetched only when the digest moved;
- the upstream's tag list is fetched once per tag TTL and paged from memory (tag_lists.py);
- a blob is served from the store, or fetched once however many clients ask (fills.py);
- when the upstream fails (429, 5xx, timeouts, unreachable), what is cached is served with a
  `Warning` header for up to `max_stale` past its freshness, and a 429's Retry-After is kept
  before the upstream is asked again.
Writes are refused with DENIED: a mirror's namespace belongs to its upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from pathlib import Path
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator

from registry.client import UpstreamError, UpstreamNotFound, UpstreamThrottled
from registry.content.local import LocalContent
from registry.content.model import BlobContent, Manifest, Upload
from registry.digest import Digest, digest_bytes, parse_digest
from registry.errors import BadRequest, RegistryError, UpstreamFault
from registry.manifest import ParsedManifest, parse_manifest
from registry.metadata import leases, mirror_cache
from registry.metadata.db import Database
from registry.metadata.manifests import Referrer
from registry.gc.sweep import Sweeper
from registry.mirror.cache import CacheKeeper
from registry.mirror.fill_locks import FillLocks, HeldLock
from registry.mirror.fills import Fill, FillGone, Fills
from registry.mirror.tag_lists import TagLists
from registry.mirror.upstreams import Route, Router, Upstream
from registry.storage import BlobStore

log = logging.getLogger("registry.mirror")

STALE_WARNING = '110 - "Response is Stale"'
FILL_OWNER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
FILL_LEASE_SECONDS = 30.0
REMOTE_FILL_WAIT_SECONDS = 1800.0
# A fetch by a process on another host shows only in the database: checked after 0.2 s, then less often.
REMOTE_CHECK_FIRST = 0.2
REMOTE_CHECK_MAX = 5.0


class MirrorContent:
    def __init__(self, local: LocalContent, db: Database, store: BlobStore, router: Router, fills_dir: Path,
                 max_stale: float, cache_bytes: int = 0, sweeper: Sweeper | None = None) -> None:
        self.local = local  # the cache: mirrored repositories are local ones that only the mirror writes
        self.db = db  # the mirror's own rows: fill leases, pins, cache recency
        self.store = store
        self.router = router
        self.max_stale = max_stale
        self.fills = Fills(fills_dir, self._commit_fill)
        self.fill_locks = FillLocks(fills_dir)
        self._locks: dict[str, HeldLock] = {}
        self._held: set[Fill] = set()
        self._inflight: dict[tuple[str, ...], asyncio.Future[Manifest]] = {}
        self._holders: set[asyncio.Task[None]] = set()
        self.tag_lists = TagLists()
        self.cache = CacheKeeper(db, sweeper or Sweeper(db, store), [u.alias for u in router.upstreams],
                                 cache_bytes)

    def _pulled(self, repository: str, found: Manifest) -> Manifest:
        """A manifest served is a pull (the admin page's "last pull", retention's recency) and counts as its
        blobs pulled for eviction (a client with the layers won't ask)."""
        self.local.record_pull(repository, found.digest)
        try:
            parsed = parse_manifest(found.payload, found.media_type)
        except RegistryError:
            return found
        self.cache.touch(repository, [d.digest for d in parsed.blobs])
        return found

    def _route(self, repository: str) -> Route:
        route = self.router.prefixed(repository)
        if route is None:  # cannot happen: routing hands us cache names only
            raise RegistryError("NAME_UNKNOWN", detail={"name": repository})
        return route

    # -- manifests --------------------------------------------------------------------
    async def manifest(self, repository: str, reference: str | Digest) -> Manifest:
        route = self._route(repository)
        upstream = route.upstream
        if isinstance(reference, Digest):
            try:
                found = await self.local.manifest(repository, reference)
                upstream.stats.hits += 1
                return self._pulled(repository, found)
            except RegistryError as exc:
                if exc.code not in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"):
                    raise
            upstream.stats.misses += 1
            fetched = await self._once(("digest", repository, str(reference)),
                                       lambda: self._fetch_manifest(route, str(reference), tag=None))
            return self._pulled(repository, fetched)

        cached = await self.local.tagged(repository, reference)
        age = time.time() - cached[1] if cached else None
        if cached and age is not None and age < upstream.tag_ttl:
            upstream.stats.hits += 1
            return self._pulled(repository, cached[0])
        # Clients asking for the same tag at once share one revalidation (one HEAD, one GET).
        return await self._once(("tag", repository, reference),
                                lambda: self._revalidate(route, repository, reference, cached, age))

    async def _once(self, key: tuple[str, ...], work: Callable[[], Awaitable[Manifest]]) -> Manifest:
        shared = self._inflight.get(key)
        if shared is None:
            shared = self._inflight[key] = asyncio.ensure_future(work())
            shared.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(shared)

    async def _revalidate(self, route: Route, repository: str, reference: str,
                          cached: tuple[Manifest, float] | None, age: float | None) -> Manifest:
        upstream = route.upstream
        try:
            self._check_throttle(upstream)
            upstream.stats.revalidations += 1
            head = await upstream.client.head_manifest(route.name, reference)
            if cached and head.digest and head.digest == cached[0].digest:
                await self.local.confirm_tag(repository, reference)
                upstream.stats.hits += 1
                return self._pulled(repository, cached[0])
            upstream.stats.misses += 1
            return self._pulled(repository, await self._fetch_manifest(route, head.digest or reference, tag=reference))
        except UpstreamError as exc:
            if cached is not None and not isinstance(exc, UpstreamNotFound):
                return self._stale_or_raise(upstream, exc, cached[0], age)
            raise _upstream_failure(upstream, exc, _manifest_unknown(route, reference)) from None

    async def _fetch_manifest(self, route: Route, reference: str, tag: str | None) -> Manifest:
        upstream = route.upstream
        try:
            self._check_throttle(upstream)
            fetched = await upstream.client.get_manifest(route.name, reference)
        except UpstreamError as exc:
            raise _upstream_failure(upstream, exc, _manifest_unknown(route, reference)) from None
        assert fetched.payload is not None
        algorithm = reference.split(":")[0] if ":" in reference else "sha256"
        digest = str(digest_bytes(fetched.payload, algorithm if algorithm in ("sha256", "sha512") else "sha256"))
        if ":" in reference and digest != reference:
            raise UpstreamFault("UNAVAILABLE", f"{upstream.alias} sent a manifest that does not match {reference}")
        try:
            stored = await self.local.put_manifest(route.cache_name, tag if tag else parse_digest(digest),
                                                   fetched.payload, fetched.media_type, check_references=False)
        except RegistryError as exc:
            if exc.code != "MANIFEST_INVALID":
                raise
            # The upstream's fault, not the client's: nothing is cached, and the client hears 502.
            raise UpstreamFault("UNAVAILABLE", f"{upstream.alias} sent a manifest this registry refuses: "
                                f"{exc.message}", detail={"reference": reference}) from None
        return stored

    def _check_throttle(self, upstream: Upstream) -> None:
        wait = upstream.throttled_for()
        if wait:
            raise UpstreamThrottled(wait, "still within the upstream's Retry-After")

    def _stale_or_raise(self, upstream: Upstream, exc: UpstreamError, cached: Manifest,
                        age: float | None) -> Manifest:
        """The cached copy, marked stale, while `max_stale` allows; else the failure as the client's error."""
        if age is not None and age < upstream.tag_ttl + self.max_stale:
            _count(upstream, exc)
            upstream.stats.stale_serves += 1
            log.warning("serving stale %s from %s's cache: upstream failed (%s)", cached.digest, upstream.alias, exc)
            return Manifest(cached.digest, cached.media_type, cached.payload, cached.subject, stale=True)
        raise _upstream_failure(upstream, exc, unknown=None) from None

    # -- blobs ------------------------------------------------------------------------
    async def blob(self, repository: str, digest: Digest) -> BlobContent:
        route = self._route(repository)
        upstream = route.upstream
        found = await self._cached_blob(repository, digest)
        if found is not None:
            return found
        with _blob_errors(upstream, digest):
            self._check_throttle(upstream)
            if not self.fills.is_running(digest):
                if not await self._claim(digest):
                    # Another registry process is fetching it: wait for its commit (or take over).
                    return await self._after_other_process(route, repository, digest)
                # Another process may have committed it between our look and our claim.
                found = await self._cached_blob(repository, digest)
                if found is not None:
                    await self._release_claim(digest)
                    return found
            fill = await self.fills.join(route, digest)
            self._hold_claim(fill, digest)
        if fill.finished and fill.error is None or fill.size is None:
            await _wait_finished(fill)
            return await self.local.blob(repository, digest)
        upstream.stats.bytes_served += fill.size

        async def read(offset: int, length: int) -> AsyncIterator[bytes]:
            try:
                async for chunk in fill.read(offset, length):
                    yield chunk
            except FillGone:  # committed meanwhile: the store has it
                async for chunk in self.store.read(digest, offset, length):
                    yield chunk

        return BlobContent(str(digest), fill.size, reader=read)

    async def blob_head(self, repository: str, digest: Digest) -> BlobContent:
        """The cached blob's size, else the upstream's answer to a HEAD: nothing is fetched."""
        try:
            return await self.local.blob_head(repository, digest)
        except RegistryError as exc:
            if exc.code != "BLOB_UNKNOWN":
                raise
        route = self._route(repository)
        with _blob_errors(route.upstream, digest):
            self._check_throttle(route.upstream)
            size = await route.upstream.client.head_blob(route.name, str(digest))
        return BlobContent(str(digest), size)

    async def _cached_blob(self, repository: str, digest: Digest) -> BlobContent | None:
        """The blob from the cache (counted as a hit), or None when it is not cached."""
        try:
            found = await self.local.blob(repository, digest)
        except RegistryError as exc:
            if exc.code != "BLOB_UNKNOWN":
                raise
            return None
        upstream = self._route(repository).upstream
        upstream.stats.hits += 1
        upstream.stats.bytes_served += found.size
        self.cache.touch(repository, [str(digest)])
        return found

    # -- one fetch across processes: a lease in the database decides who fetches --------------
    async def _claim(self, digest: Digest) -> bool:
        """Take the fetch of `digest`: this host's lock file first (the signal other processes here
        wait on), then the database lease (the decision, across hosts too)."""
        lock = self.fill_locks.try_hold(str(digest))
        if lock is None:
            return False
        async with self.db.write(durable=False) as conn:
            taken = await leases.take(self.db, conn, leases.MIRROR_FILL, str(digest), FILL_OWNER, FILL_LEASE_SECONDS)
        if not taken:
            lock.release()
            return False
        self._locks[str(digest)] = lock
        return True

    async def _release_claim(self, digest: Digest) -> None:
        try:
            async with self.db.write(durable=False) as conn:
                await leases.release(conn, leases.MIRROR_FILL, str(digest), FILL_OWNER)
        finally:
            self._drop_lock(digest)

    def _drop_lock(self, digest: Digest) -> None:
        """Release this host's lock file on `digest`, if this process holds it: after the lease, always."""
        lock = self._locks.pop(str(digest), None)
        if lock is not None:
            lock.release()

    def _hold_claim(self, fill: Fill, digest: Digest) -> None:
        if fill in self._held:
            return
        self._held.add(fill)

        async def hold() -> None:
            # Released as soon as the fill ends: garbage collection leaves a filling blob alone.
            try:
                async with leases.renewed(self.db, leases.MIRROR_FILL, str(digest), FILL_OWNER, FILL_LEASE_SECONDS):
                    await fill.done.wait()
            finally:
                self._held.discard(fill)
                self._drop_lock(digest)

        task = asyncio.create_task(hold())
        self._holders.add(task)
        task.add_done_callback(self._holders.discard)

    async def _after_other_process(self, route: Route, repository: str, digest: Digest) -> BlobContent:
        """Wait for another process's fetch of `digest` to end: woken by its lock file's release when it
        runs on this host; checking its lease with a growing pause when it runs on another."""
        deadline = time.monotonic() + REMOTE_FILL_WAIT_SECONDS
        pause = REMOTE_CHECK_FIRST
        while time.monotonic() < deadline:
            if self.fill_locks.held_elsewhere(str(digest)):
                await self.fill_locks.wait_released(str(digest), deadline - time.monotonic())
            else:
                await asyncio.sleep(pause)
                pause = min(pause * 2, REMOTE_CHECK_MAX)
            try:
                return await self.local.blob(repository, digest)
            except RegistryError as exc:
                if exc.code != "BLOB_UNKNOWN":
                    raise
            async with self.db.read() as conn:
                owner = await leases.holder(conn, leases.MIRROR_FILL, str(digest))
            if owner is None and await self.local.stored_size(digest) is None:
                return await self.blob(repository, digest)  # it failed or died: our turn
        raise RegistryError("UNAVAILABLE", f"another process has been fetching {digest} for too long",
                            retry_after=5)

    async def _commit_fill(self, route: Route, digest: Digest, path: Path, size: int) -> None:
        await self.local.adopt_file(route.cache_name, digest, path, size)
        self.cache.touch(route.cache_name, [str(digest)])
        self.cache.poke()

    # -- operations: pre-warm and pins ------------------------------------------------------
    def cache_route(self, image: str) -> tuple[Route, str]:
        """`<alias or host>/<name>[:tag|@digest]` -> (route, reference)."""
        name, reference = _split_image(image)
        route = self.router.prefixed(name)
        if route is None:
            raise BadRequest("NAME_UNKNOWN", f"{name} is not under a mirrored upstream's alias or host",
                             detail={"image": image})
        return route, reference

    async def prewarm(self, image: str, platform: str | None = None) -> dict[str, object]:
        """Fetch an image ahead of time: its manifest(s) and every blob (of one platform, if given)."""
        route, reference = self.cache_route(image)
        ref: str | Digest = parse_digest(reference) if ":" in reference else reference
        top = await self.manifest(route.cache_name, ref)
        manifests = [top]
        parsed = parse_manifest(top.payload, top.media_type)
        for child in _platform_children(parsed, platform):
            manifests.append(await self.manifest(route.cache_name, parse_digest(child)))
        fetched = 0
        for found in manifests:
            for blob in parse_manifest(found.payload, found.media_type).blobs:
                content = await self.blob(route.cache_name, parse_digest(blob.digest))  # as a client would
                fill = self.fills.running(str(content.digest))
                if content.reader is not None and fill is not None:
                    await _wait_finished(fill)  # verified and committed
                    fetched += fill.written
        return {"image": image, "digest": top.digest, "manifests": len(manifests), "bytes_fetched": fetched}

    async def pin(self, image: str) -> None:
        route, reference = self.cache_route(image)
        async with self.db.write() as conn:
            await mirror_cache.add_pin(conn, route.cache_name, reference)

    async def unpin(self, image: str) -> bool:
        route, reference = self.cache_route(image)
        async with self.db.write() as conn:
            return await mirror_cache.remove_pin(conn, route.cache_name, reference)

    async def pins(self) -> list[str]:
        async with self.db.read() as conn:
            rows = await mirror_cache.list_pins(conn)
        return [f"{repository}{'@' if ':' in reference else ':'}{reference}" for repository, reference in rows]

    async def stats(self) -> dict[str, object]:
        return {
            "cache_bytes": await self.cache.usage(), "cache_cap_bytes": self.cache.cap_bytes,
            "fills_in_progress": self.fills.in_progress(),
            "last_eviction": self.cache.last_report, "pins": await self.pins(),
            "upstreams": [{"alias": u.alias, "url": u.url, "host": u.host, "docker_hub": u.docker_hub,
                           "tag_ttl": u.tag_ttl, "throttled_for": round(u.throttled_for(), 1), **vars(u.stats)}
                          for u in self.router.upstreams],
        }

    # -- discovery --------------------------------------------------------------------
    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        """Pages of the upstream's list, fetched once per tag TTL (tag_lists.py); when the upstream fails,
        the list last fetched up to `max_stale` past its TTL, else the tags the cache holds."""
        route = self._route(repository)
        upstream = route.upstream

        async def fetch() -> list[str]:
            self._check_throttle(upstream)
            return await upstream.client.tags(route.name)

        try:
            listed = await self.tag_lists.get(route.cache_name, upstream.tag_ttl, self.max_stale, fetch)
        except UpstreamNotFound:
            raise RegistryError("NAME_UNKNOWN", detail={"name": route.name}) from None
        except UpstreamError as exc:
            _count(upstream, exc)
            return await self.local.tags(repository, limit, last)  # what the cache knows
        if listed.stale_because is not None:
            _count(upstream, listed.stale_because)
            upstream.stats.stale_serves += 1
            log.warning("serving %s's tag list fetched %.0fs ago: upstream failed (%s)", route.cache_name,
                        time.monotonic() - listed.fetched_at, listed.stale_because)
        return listed.page(limit, last)

    async def referrers(self, repository: str, subject: Digest, artifact_type: str | None) -> list[Referrer]:
        return await self.local.referrers(repository, subject, artifact_type)

    # -- writes: refused --------------------------------------------------------------
    def _refuse(self, repository: str) -> RegistryError:
        route = self._route(repository)
        local = self.router.local_namespaces
        instead = (f"push under a local namespace ({', '.join(local)})" if local else
                   "push to a local repository name instead" if not route.upstream.docker_hub else
                   "list the local namespaces to push to in mirror.local_namespaces")
        return RegistryError("DENIED", f"{route.name} is mirrored from {route.upstream.alias} "
                                       f"({route.upstream.url}); {instead}")

    async def put_blob(self, repository: str, digest: Digest, body: AsyncIterable[bytes]) -> BlobContent:
        raise self._refuse(repository)

    async def mount_blob(self, repository: str, digest: Digest, source: str) -> BlobContent | None:
        raise self._refuse(repository)

    async def delete_blob(self, repository: str, digest: Digest) -> None:
        raise self._refuse(repository)

    async def start_upload(self, repository: str) -> Upload:
        raise self._refuse(repository)

    async def upload_status(self, repository: str, upload_id: str) -> Upload:
        raise self._refuse(repository)

    async def append_upload(self, repository: str, upload_id: str, body: AsyncIterable[bytes],
                            start: int | None) -> Upload:
        raise self._refuse(repository)

    async def finish_upload(self, repository: str, upload_id: str, digest: Digest,
                            body: AsyncIterable[bytes] | None, start: int | None) -> BlobContent:
        raise self._refuse(repository)

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        raise self._refuse(repository)

    async def put_manifest(self, repository: str, reference: str | Digest, payload: bytes,
                           content_type: str | None) -> Manifest:
        raise self._refuse(repository)

    async def delete_manifest(self, repository: str, reference: str | Digest) -> None:
        raise self._refuse(repository)

    async def close(self) -> None:
        await self.cache.stop()
        await self.fills.close()
        for upstream in self.router.upstreams:
            await upstream.close()


async def _wait_finished(fill: Fill) -> None:
    await fill.done.wait()
    if fill.error is not None:
        raise RegistryError("UNAVAILABLE", f"upstream fetch failed: {fill.error}")


def _split_image(image: str) -> tuple[str, str]:
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, digest
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return image, "latest"
    return name, tag


def _platform_children(parsed: ParsedManifest, platform: str | None) -> list[str]:
    """An index's children: every one, or those of `os/arch` (from the document the reader kept)."""
    if not parsed.manifests:
        return []
    if platform is None:
        return [d.digest for d in parsed.manifests]
    wanted_os, _, wanted_arch = platform.partition("/")
    chosen = []
    for entry in parsed.document.get("manifests", []):
        spec = entry.get("platform")
        if isinstance(spec, dict) and spec.get("os") == wanted_os and spec.get("architecture") == wanted_arch:
            chosen.append(entry["digest"])
    return chosen


@contextlib.contextmanager
def _blob_errors(upstream: Upstream, digest: Digest) -> Iterator[None]:
    """An upstream's failure to give a blob, as the error a client gets (and counted)."""
    try:
        yield
    except UpstreamError as exc:
        unknown = RegistryError("BLOB_UNKNOWN", f"{digest} not found at {upstream.alias}",
                                detail={"digest": str(digest)})
        raise _upstream_failure(upstream, exc, unknown) from None


def _manifest_unknown(route: Route, reference: str) -> RegistryError:
    return RegistryError("MANIFEST_UNKNOWN", f"{reference} not found at {route.upstream.alias}",
                         detail={"reference": reference})


def _count(upstream: Upstream, exc: UpstreamError) -> None:
    """Count a failure; a 429 also holds further requests to the upstream until its Retry-After."""
    if isinstance(exc, UpstreamThrottled):
        upstream.stats.throttled += 1
        upstream.block(exc.retry_after)
    elif not isinstance(exc, UpstreamNotFound):
        upstream.stats.upstream_errors += 1


def _upstream_failure(upstream: Upstream, exc: UpstreamError, unknown: RegistryError | None) -> RegistryError:
    """The one mapping of an upstream's failure (with nothing cached to serve) to the client's error:
    not found, or refused (Docker Hub's answer for a repository it does not have, or one that needs
    credentials), is `unknown` (None: a copy was cached, so the upstream's refusal is a failure like any
    other); a 429 is TOOMANYREQUESTS with the upstream's Retry-After; anything else UNAVAILABLE, to retry."""
    _count(upstream, exc)
    if unknown is not None and isinstance(exc, UpstreamNotFound):
        return unknown
    if unknown is not None and exc.status in (401, 403):
        return type(unknown)(unknown.code, f"{upstream.alias} refused access ({exc.status}): unknown, or needs "
                             "credentials", unknown.detail)
    if isinstance(exc, UpstreamThrottled):
        return RegistryError("TOOMANYREQUESTS",
                             f"{upstream.alias} is rate limiting this mirror; nothing cached to serve",
                             retry_after=exc.retry_after)
    return RegistryError("UNAVAILABLE", f"upstream {upstream.alias} failed and nothing cached to serve: {exc}",
                         retry_after=5)

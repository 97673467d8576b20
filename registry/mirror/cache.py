"""Keeping the mirror cache under its size cap: least recently pulled first, pins never.

Pulls are recorded in memory and written in one transaction every few seconds (content/recency.py:
a write per GET would cost more than the pull). Pulling a manifest counts as pulling its blobs too, since a
client that already has the layers will not ask for them again. When the cached bytes exceed
`mirror.cache_bytes`, the oldest links are removed (bytes deleted from the store once nothing
else needs them, by the garbage collector's sweep) until the cache fits; blobs of pinned
images are skipped.
"""

from __future__ import annotations

import asyncio
import logging

from registry.content.recency import RecencyLog
from registry.gc.sweep import Sweeper
from registry.metadata import mirror_cache, usage
from registry.metadata.db import Database

log = logging.getLogger("registry.mirror.cache")

FLUSH_SECONDS = 2.0
BATCH = 200


class CacheKeeper:
    def __init__(self, db: Database, sweeper: Sweeper, prefixes: list[str], cap_bytes: int) -> None:
        self.db = db
        self.sweeper = sweeper
        self.prefixes = prefixes
        self.cap_bytes = cap_bytes
        self.pulls = RecencyLog(db, mirror_cache.touch, "mirror cache pulls")
        self._wake = asyncio.Event()
        self._enforcing = asyncio.Lock()  # one pass at a time: "evict now" waits for a running one
        self._task: asyncio.Task[None] | None = None
        self.last_report: dict[str, int] = {}

    def touch(self, repository: str, digests: list[str]) -> None:
        self.pulls.record(repository, digests)

    def poke(self) -> None:
        """Something was added: check the cap soon."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the upkeep loop's last failure was logged where it happened
                pass
            self._task = None
        await self.flush()

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
                if self.cap_bytes:
                    await self.enforce()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment; try again next round
                log.warning("mirror cache upkeep failed", exc_info=True)

    async def flush(self) -> None:
        await self.pulls.flush()

    def usage_scopes(self) -> dict[str, frozenset[str]]:
        """The usage counter the cache reads (registry.metadata.usage): its blobs, each once."""
        return {usage.MIRROR_CACHE: frozenset(self.prefixes)}

    async def usage(self) -> int:
        return await usage.counted(self.db, usage.MIRROR_CACHE, frozenset(self.prefixes))

    async def enforce(self) -> dict[str, int]:
        """One eviction pass; returns what it freed. A pass already running (the background one) is
        waited for first, so when this returns every eviction so far has deleted its bytes."""
        async with self._enforcing:
            return await self._enforce()

    async def _enforce(self) -> dict[str, int]:
        await self.flush()
        used = await self.usage()
        report = {"usage_before": used, "evicted_links": 0, "deleted_blobs": 0, "freed_bytes": 0,
                  "cap_bytes": self.cap_bytes}
        if not self.cap_bytes or used <= self.cap_bytes:  # 0 is no cap: nothing is ever over it
            report["usage_after"] = used
            self.last_report = report
            return report
        async with self.db.read() as conn:
            pinned = await mirror_cache.pinned_blobs(conn)
        skipped: set[tuple[int, str]] = set()
        while used > self.cap_bytes:
            async with self.db.read() as conn:
                links = await mirror_cache.oldest_links(conn, self.prefixes, BATCH + len(skipped))
            links = [link for link in links if (link.repository_id, link.digest) not in skipped]
            if not links:
                break
            for link in links:
                if used <= self.cap_bytes:
                    break
                if link.digest in pinned:
                    skipped.add((link.repository_id, link.digest))
                    continue
                async with self.db.write() as conn:
                    await mirror_cache.unlink(conn, link)
                    still_cached = await usage.blob_links(conn, usage.MIRROR_CACHE, link.digest)
                report["evicted_links"] += 1
                if not still_cached:
                    used -= link.size
                    report["freed_bytes"] += link.size
                    deleted = await self.sweeper.delete_blobs([link.digest], references_hold=False)
                    report["deleted_blobs"] += len(deleted)
        report["usage_after"] = used
        if report["evicted_links"]:
            log.info("mirror cache over its cap of %d bytes: evicted %d links, freed %d bytes",
                     self.cap_bytes, report["evicted_links"], report["freed_bytes"])
        self.last_report = report
        return report

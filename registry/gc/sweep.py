"""The sweep: apply a plan in small batches, each a short write transaction with locked re-checks.

Batches keep every transaction short, so pushes and pulls go on between them, and no transaction
stays open across storage I/O: blobs are tombstoned (rows dropped, deletions recorded as pending)
in one transaction, their bytes deleted with none open, then the tombstones finished in another
(registry/metadata/deletions.py says how pushes of the same digest stay safe meanwhile). A
delete that fails gets its row back (bytes without a row would be invisible to the next run).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TypeVar
from collections.abc import Iterable, Iterator

from registry.digest import parse_digest
from registry.gc.plan import Outcome, Plan
from registry.metadata import deletions
from registry.metadata import gc as gc_rows
from registry.metadata.db import Database
from registry.metadata.gc import TagRow
from registry.storage import BlobStore

log = logging.getLogger("registry.gc")

T = TypeVar("T")
STORE_CONCURRENCY = 16
# Deleting one batch's bytes stops after this; what is left stays pending. A pending tombstone
# older than STALE_SECONDS belongs to a deleter that died (or gave up): anyone may finish it.
ACT_SECONDS = 300.0
STALE_SECONDS = 900.0
TOMBSTONE_DAYS = 1.0


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Sweeper:
    def __init__(self, db: Database, store: BlobStore, batch_size: int = 500) -> None:
        self.db = db
        self.store = store
        self.batch_size = batch_size

    async def sweep(self, plan: Plan, cutoff: float, max_items: int) -> Outcome:
        """Delete what the plan holds, a page at a time in the plan's order (tags, manifests, links,
        then blobs), each re-checked under its lock; `cutoff` is the links' grace cutoff."""
        outcome = Outcome(max_items)
        async for rows in plan.pages("tags"):
            gone = {(t.repository_id, t.name) for t in await self.delete_tags(
                [TagRow(r.repository_id, r.name, r.manifest_id, r.updated_at) for r in rows])}
            outcome.add("tags", [r for r in rows if (r.repository_id, r.name) in gone])
        async for rows in plan.pages("manifests"):
            deleted = set(await self.delete_manifests([r.id for r in rows]))
            outcome.add("manifests", [r for r in rows if r.id in deleted])
        async for rows in plan.pages("links"):
            unlinked = set(await self.delete_links([(r.repository_id, r.digest) for r in rows], cutoff))
            outcome.add("links", [r for r in rows if (r.repository_id, r.digest) in unlinked])
        await self.finish_stale_deletions()
        async for rows in plan.pages("blobs"):
            freed = await self._delete_unreferenced_blobs([r.digest for r in rows])
            outcome.add("blobs", [r for r in rows if r.digest in freed])
        return outcome

    async def delete_tags(self, tags: list[TagRow]) -> list[TagRow]:
        deleted = []
        for batch in batches(tags, self.batch_size):
            async with self.db.write() as conn:
                for tag in batch:
                    if await gc_rows.delete_tag_if_unchanged(conn, tag):
                        deleted.append(tag)
        return deleted

    async def delete_manifests(self, ids: list[int]) -> list[int]:
        """Delete manifests that nothing needs any more, in the plan's order: an index before its
        children, a subject before its referrers (a batch keeps one whose index or subject stays)."""
        deleted: list[int] = []
        for batch in batches(ids, self.batch_size):
            async with self.db.write() as conn:
                deleted += await gc_rows.delete_unreachable_manifests(conn, batch)
        return deleted

    async def delete_links(self, links: list[tuple[int, str]], cutoff: float) -> list[tuple[int, str]]:
        deleted: list[tuple[int, str]] = []
        for batch in batches(links, self.batch_size):
            async with self.db.write() as conn:
                deleted += await gc_rows.delete_stale_links(conn, batch, cutoff)
        return deleted

    async def delete_blobs(self, digests: Iterable[str], references_hold: bool = True) -> dict[str, int]:
        """Delete the bytes and rows of those blobs that nothing needs any more (a mirror's
        eviction passes `references_hold=False`: its cached manifests do not pin blobs)."""
        await self.finish_stale_deletions()
        return await self._delete_unreferenced_blobs(digests, references_hold)

    async def _delete_unreferenced_blobs(self, digests: Iterable[str], references_hold: bool = True) -> dict[str, int]:
        deleted: dict[str, int] = {}
        for batch in batches(digests, min(self.batch_size, 200)):
            async with self.db.write() as conn:
                doomed = await gc_rows.lock_unreferenced_blobs(conn, batch, references_hold)
                await deletions.tombstone(conn, doomed)
            gone = await self.delete_tombstoned(doomed)
            deleted.update((digest, doomed[digest]) for digest in gone)
        return deleted

    async def finish_stale_deletions(self) -> None:
        """Delete the bytes of tombstones whose deleter died midway; forget day-old tombstones."""
        now = time.time()
        async with self.db.read() as conn:
            stale = await deletions.stale(conn, now - STALE_SECONDS)
        if stale:
            log.warning("finishing %d blob deletions a stopped process left pending", len(stale))
            await self.delete_tombstoned(stale)
        async with self.db.write(durable=False) as conn:  # purging old tombstones again is harmless
            await deletions.purge(conn, now - TOMBSTONE_DAYS * 86400)

    async def delete_tombstoned(self, tombstoned: dict[str, int]) -> list[str]:
        """Delete tombstoned blobs' bytes, then finish their tombstones; returns the digests whose bytes
        are gone. A blob whose delete failed gets its row back (the next run tries again); one still
        being deleted after ACT_SECONDS stays pending (finished later, once stale)."""
        gone: list[str] = []
        failed: list[str] = []
        try:
            await asyncio.wait_for(self._delete_each(list(tombstoned), gone, failed), ACT_SECONDS)
        except TimeoutError:
            log.warning("deleting %d blobs took over %.0fs; %d left pending", len(tombstoned), ACT_SECONDS,
                        len(tombstoned) - len(gone) - len(failed))
        gone, failed = list(gone), list(failed)  # a delete still running past the deadline counts later
        async with self.db.write() as conn:
            await deletions.finish(conn, gone)
            await deletions.restore(self.db, conn, {digest: tombstoned[digest] for digest in failed})
        return gone

    async def _delete_each(self, digests: list[str], gone: list[str], failed: list[str]) -> None:
        limit = asyncio.Semaphore(STORE_CONCURRENCY)

        async def one(digest: str) -> None:
            async with limit:
                try:
                    await self.store.delete(parse_digest(digest))  # already absent counts as gone
                except Exception as exc:  # noqa: BLE001 - a backend's failure of any kind: the blob stays recorded for the next run
                    log.warning("could not delete blob %s (%s); it stays recorded for the next run", digest, exc)
                    failed.append(digest)
                    return
                gone.append(digest)

        await asyncio.gather(*(one(d) for d in digests))

    async def expired_uploads(self, idle_before: float) -> list[tuple[str, bool]]:
        """Upload sessions idle since before `idle_before` (id, True), and staging that no session
        owns and nobody wrote to since then (id, False)."""
        async with self.db.read() as conn:
            found = [(upload_id, True) for upload_id in await gc_rows.expired_uploads(conn, idle_before)]
        staged = [(upload_id, when) async for upload_id, when in self.store.iter_uploads()]
        for batch in batches(staged, self.batch_size):
            async with self.db.read() as conn:
                known = await gc_rows.known_uploads(conn, [upload_id for upload_id, _ in batch])
            found += [(upload_id, False) for upload_id, when in batch if upload_id not in known and when < idle_before]
        return found

    async def purge_uploads(self, expired: list[tuple[str, bool]], idle_before: float) -> list[str]:
        """Drop them: the session row first (unless written to meanwhile), then the staged bytes."""
        purged = []
        for upload_id, has_session in expired:
            if has_session:
                async with self.db.write() as conn:
                    if not await gc_rows.delete_upload_if_idle(conn, upload_id, idle_before):
                        continue  # written to since: still alive
            await self.store.abort_upload(upload_id)
            purged.append(upload_id)
        return purged

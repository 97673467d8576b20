"""Reclaiming bytes nothing records: committed blobs in the store with no `blobs` row.

A push stores a blob's bytes, then records its row; a crash in between leaves bytes that no
repository sees and that the sweep, which starts from rows, never finds. Each gc run lists the
store (streamed: it may hold millions of blobs), passes over bytes modified within the grace
period (`gc.orphan_grace_period`), checks the rest against the database a batch at a time, and
deletes what is still unrecorded the way the sweep deletes blobs: a tombstone first
(metadata/orphans.py says how a push of the same digest stays safe), the bytes with no
transaction open, then the tombstone finished. Bytes a mirror is fetching, or a deletion already
pending, are left alone. A delete that fails leaves the blob recorded without links, so the next
gc collects it the ordinary way. Staged uploads are not blobs: the expired-upload sweep owns them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from registry.gc.sweep import Sweeper
from registry.metadata import orphans
from registry.metadata.db import Database
from registry.storage import BlobStore

log = logging.getLogger("registry.gc")

BATCH_LIMIT = 200  # digests per query and per claiming transaction, as the sweep's blob batches


@dataclass
class Reclaimed:
    """What went (or, in a dry run, would go): every blob counted, the first `keep` listed."""

    keep: int
    count: int = 0
    bytes: int = 0
    blobs: list[tuple[str, int]] = field(default_factory=list)

    def add(self, gone: dict[str, int]) -> None:
        self.count += len(gone)
        self.bytes += sum(gone.values())
        self.blobs += list(gone.items())[:max(self.keep - len(self.blobs), 0)]


async def reclaim(db: Database, store: BlobStore, sweeper: Sweeper, modified_before: float, dry_run: bool,
                  batch_size: int = BATCH_LIMIT, keep: int = 10_000) -> Reclaimed:
    """Delete (unless `dry_run`) stored blobs last modified before `modified_before` that no row records."""
    found = Reclaimed(keep)
    async with db.read() as conn:
        if not await orphans.anything_recorded(conn):
            # A database with no blob at all beside a store with bytes is most likely the wrong
            # database (a new PostgreSQL URL, say): deleting "orphans" would empty the store.
            log.warning("orphan reclaim skipped: the database records no blob; if the store's bytes "
                        "really are all orphans, `registry fsck --repair` quarantines them")
            return found
    size = max(1, min(batch_size, BATCH_LIMIT))
    batch: dict[str, int] = {}
    async for blob in store.iter_stored_blobs():
        if blob.modified_at < modified_before:
            batch[str(blob.digest)] = blob.size
        if len(batch) >= size:
            found.add(await _settle(db, sweeper, batch, dry_run))
            batch = {}
    found.add(await _settle(db, sweeper, batch, dry_run))
    return found


async def _settle(db: Database, sweeper: Sweeper, batch: dict[str, int], dry_run: bool) -> dict[str, int]:
    """One batch of old bytes: those still unrecorded, deleted (or, in a dry run, only named)."""
    if not batch:
        return {}
    async with db.read() as conn:
        needed = await orphans.needed(conn, list(batch))
    unrecorded = {digest: size for digest, size in batch.items() if digest not in needed}
    if dry_run or not unrecorded:
        return unrecorded
    async with db.write() as conn:  # the checks again, under the write lock, with the tombstones
        claimed = await orphans.claim(db, conn, unrecorded)
    gone = await sweeper.delete_tombstoned(claimed)
    return {digest: claimed[digest] for digest in gone}

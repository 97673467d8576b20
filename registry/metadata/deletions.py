"""Tombstones of blob deletions (the `blob_deletions` table).

Deleting a blob is: tombstone (the row goes, a tombstone comes, one transaction), commit, delete
the bytes with no transaction open, then finish the tombstone. Whoever publishes bytes of the
same digest meanwhile must not trust them: it waits while a tombstone is pending (the bytes may
vanish under it), and refuses to record the blob if a tombstone it did not see before publishing
shows up by the time it records (see LocalContent). Finished tombstones are purged after a day.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update

from registry.metadata.db import Connection, Database
from registry.metadata.schema import blob_deletions, blobs

_IDS_OF = select(blob_deletions.c.id).where(blob_deletions.c.digest == bindparam("digest"))
_OF_DIGEST = select(blob_deletions.c.id, blob_deletions.c.created_at, blob_deletions.c.finished_at).where(
    blob_deletions.c.digest == bindparam("digest"))


async def tombstone(conn: Connection, doomed: dict[str, int]) -> None:
    """In the transaction that locked `doomed` (digest -> size) unreferenced: drop their rows,
    record their deletion as pending."""
    if not doomed:
        return
    now = time.time()
    await conn.execute(delete(blobs).where(blobs.c.digest.in_(list(doomed))))
    await conn.execute(insert(blob_deletions), [{"digest": digest, "size": size, "created_at": now,
                                                 "finished_at": None} for digest, size in doomed.items()])


async def finish(conn: Connection, digests: list[str]) -> None:
    """The bytes are gone: the tombstones stop being pending (they stay a day, for late pushers)."""
    if digests:
        await conn.execute(update(blob_deletions).where(blob_deletions.c.digest.in_(digests),
                                                        blob_deletions.c.finished_at.is_(None))
                           .values(finished_at=time.time()))


async def restore(db: Database, conn: Connection, kept: dict[str, int]) -> None:
    """The bytes could not be deleted: the blobs are back (the next run tries again), the
    tombstones finished."""
    if not kept:
        return
    now = time.time()
    for digest, size in kept.items():
        await conn.execute(db.insert_ignore(blobs), {"digest": digest, "size": size, "created_at": now,
                                                     "last_pulled_at": None})
    await finish(conn, list(kept))


@dataclass(frozen=True)
class DeletionState:
    known: frozenset[int]  # the digest's tombstones, to compare with when recording the blob
    pending_since: float | None  # when its oldest unfinished deletion began, or None


async def state(conn: Connection, digest: str) -> DeletionState:
    """What a publisher must know before it publishes `digest`'s bytes."""
    rows = list(await conn.execute(_OF_DIGEST, {"digest": digest}))
    pending = [r.created_at for r in rows if r.finished_at is None]
    return DeletionState(frozenset(r.id for r in rows), min(pending) if pending else None)


async def appeared(conn: Connection, digest: str, known: frozenset[int]) -> bool:
    """Whether `digest` got a tombstone not in `known` (call after recording the blob's row, so on
    PostgreSQL a concurrent tombstone has committed by then: the insert waits for it)."""
    return any(i not in known for i in (await conn.execute(_IDS_OF, {"digest": digest})).scalars())


async def stale(conn: Connection, started_before: float) -> dict[str, int]:
    """Pending deletions older than `started_before`: their deleter died (digest -> size)."""
    rows = await conn.execute(select(blob_deletions.c.digest, blob_deletions.c.size).where(
        blob_deletions.c.finished_at.is_(None), blob_deletions.c.created_at < started_before))
    return {r.digest: r.size for r in rows}


async def purge(conn: Connection, finished_before: float) -> int:
    result = await conn.execute(delete(blob_deletions).where(blob_deletions.c.finished_at < finished_before))
    return result.rowcount or 0

"""Stored bytes that no `blobs` row records (a crash between storing a push's bytes and recording
them leaves them): which of them are still needed, and claiming the rest for deletion.

Claiming follows the tombstone discipline of registry/metadata/deletions.py, with one step more:
there is no row to lock, so the claim inserts the blob's row itself and, in the same transaction,
tombstones it (the row goes again, a pending tombstone stays). The row's key is what a push
recording the same digest meets: on PostgreSQL its insert waits for the claim's transaction and
then finds the tombstone (the push fails cleanly), or the claim's insert waits for the push's and
finds its row (the bytes stay). On SQLite the write lock orders the two the same way.
"""

from __future__ import annotations

import time

from sqlalchemy import BindParameter, bindparam, select, union

from registry.metadata import deletions
from registry.metadata.db import Connection, Database
from registry.metadata.schema import blob_deletions, blobs, mirror_fills

_DIGESTS: BindParameter[list[str]] = bindparam("digests", expanding=True)
_FILLING = select(mirror_fills.c.digest).where(mirror_fills.c.digest.in_(_DIGESTS),
                                               mirror_fills.c.expires_at >= bindparam("now"))
_BEING_DELETED = select(blob_deletions.c.digest).where(blob_deletions.c.digest.in_(_DIGESTS),
                                                       blob_deletions.c.finished_at.is_(None))
_BUSY = union(_FILLING, _BEING_DELETED)
_NEEDED = union(select(blobs.c.digest).where(blobs.c.digest.in_(_DIGESTS)), _FILLING, _BEING_DELETED)


async def needed(conn: Connection, digests: list[str]) -> set[str]:
    """Of `digests`, those recorded (a blob row), being fetched by a mirror (a live fill) or being
    deleted already (a pending tombstone): one query for the batch."""
    if not digests:
        return set()
    return set((await conn.execute(_NEEDED, {"digests": digests, "now": time.time()})).scalars())


async def claim(db: Database, conn: Connection, found: dict[str, int]) -> dict[str, int]:
    """Inside a write transaction: of `found` (digest -> size of bytes a listing found without a row),
    tombstone those still unrecorded and not busy; returns them. Commit, then delete their bytes with
    no transaction open and finish the tombstones (Sweeper.delete_tombstoned)."""
    if not found:
        return {}
    now = time.time()
    busy = set((await conn.execute(_BUSY, {"digests": list(found), "now": now})).scalars())
    claimed: dict[str, int] = {}
    for digest, size in found.items():
        if digest in busy:
            continue
        row = {"digest": digest, "size": size, "created_at": now, "last_pulled_at": None}
        if (await conn.execute(db.insert_ignore(blobs), row)).rowcount == 1:  # 0: recorded meanwhile
            claimed[digest] = size
    await deletions.tombstone(conn, claimed)  # drops the rows just made, records the deletions as pending
    return claimed


async def anything_recorded(conn: Connection) -> bool:
    """Whether the database records any blob at all (an empty one beside a full store is more
    likely the wrong database than a store of orphans)."""
    return (await conn.execute(select(blobs.c.digest).limit(1))).first() is not None

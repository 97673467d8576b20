"""Blobs (one row per digest, whatever repositories hold it) and repository-blob links."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, delete, select, update

from registry.metadata.db import Connection, Database
from registry.metadata.schema import blobs, repositories, repository_blobs


_LINKED = (repository_blobs.join(repositories, repositories.c.id == repository_blobs.c.repository_id)
           .join(blobs, blobs.c.digest == repository_blobs.c.digest))
_IN_REPOSITORY = (repositories.c.name == bindparam("repository"), repository_blobs.c.digest == bindparam("digest"))
_LINKED_SIZE = select(blobs.c.size).select_from(_LINKED).where(*_IN_REPOSITORY)


# Writers lock what they rely on FOR SHARE (PostgreSQL; SQLite writes are exclusive anyway), so
# garbage collection, which locks FOR UPDATE SKIP LOCKED, never deletes it under them.
_LINKED_SIZE_LOCKED = _LINKED_SIZE.with_for_update(read=True)


async def linked_blob_size(conn: Connection, repository: str, digest: str, lock: bool = False) -> int | None:
    """Size of a blob if it is linked into the named repository (`lock`: hold it for this transaction)."""
    statement = _LINKED_SIZE_LOCKED if lock else _LINKED_SIZE
    return (await conn.execute(statement, {"repository": repository, "digest": digest})).scalar()


@dataclass(frozen=True, slots=True)
class Link:
    repository_id: int
    size: int
    linked_at: float  # when its garbage-collection grace period last (re)started


_LINK = (select(repository_blobs.c.repository_id, blobs.c.size, repository_blobs.c.created_at)
         .select_from(_LINKED).where(*_IN_REPOSITORY))


_HOLDERS = (select(repositories.c.name)
            .select_from(repository_blobs.join(repositories, repositories.c.id == repository_blobs.c.repository_id))
            .where(repository_blobs.c.digest == bindparam("digest")).order_by(repositories.c.name)
            .limit(bindparam("limit")))


async def holders(conn: Connection, digest: str, limit: int) -> list[str]:
    """Up to `limit` repositories linking the blob, by name (ix_repository_blobs_digest)."""
    return list((await conn.execute(_HOLDERS, {"digest": digest, "limit": limit})).scalars())


async def linked_blob(conn: Connection, repository: str, digest: str) -> Link | None:
    """The blob's link into the named repository, if any: what a HEAD or GET needs."""
    row = (await conn.execute(_LINK, {"repository": repository, "digest": digest})).first()
    return Link(row.repository_id, row.size, row.created_at) if row is not None else None


_RESTART_GRACE = (update(repository_blobs)
                  .where(repository_blobs.c.repository_id == bindparam("link_repository"),
                         repository_blobs.c.digest == bindparam("link_digest"))
                  .values(created_at=bindparam("now")))  # names of their own: UPDATE reserves the columns'.


async def restart_grace(conn: Connection, repository_id: int, digest: str) -> bool:
    """Restart a link's garbage-collection grace period, as re-linking it would; False when the
    link is gone (collected meanwhile). Garbage collection re-checks a link's time under its row
    lock, so once this commits, the link stays for the grace period."""
    result = await conn.execute(_RESTART_GRACE, {"link_repository": repository_id, "link_digest": digest,
                                                 "now": time.time()})
    return result.rowcount > 0


_SIZE = select(blobs.c.size).where(blobs.c.digest == bindparam("digest"))


async def blob_size(conn: Connection, digest: str) -> int | None:
    return (await conn.execute(_SIZE, {"digest": digest})).scalar()


_LOCK_BLOB = select(blobs.c.digest).where(blobs.c.digest == bindparam("digest")).with_for_update(read=True)


async def lock_blob(conn: Connection, digest: str) -> bool:
    """Whether the blob's row exists, holding it for this transaction (gc cannot take it meanwhile)."""
    return (await conn.execute(_LOCK_BLOB, {"digest": digest})).first() is not None


async def record_blob(db: Database, conn: Connection, digest: str, size: int) -> bool:
    """Make sure the blob's row exists and stays for this transaction. True when the row is new:
    then a garbage collection may have deleted the bytes just before, and the caller must check."""
    row = {"digest": digest, "size": size, "created_at": time.time(), "last_pulled_at": None}
    if (await conn.execute(db.insert_ignore(blobs), row)).rowcount == 1:
        return True
    if db.is_sqlite or (await conn.execute(_LOCK_BLOB, {"digest": digest})).first() is not None:
        return False
    await conn.execute(db.insert_ignore(blobs), row)  # swept between our insert and our lock
    return True


async def link_blob(db: Database, conn: Connection, repository_id: int, digest: str) -> None:
    """Link (or re-link) a blob: the link's time restarts its garbage-collection grace period."""
    await conn.execute(db.upsert(repository_blobs, ["repository_id", "digest"], ["created_at"]),
                       {"repository_id": repository_id, "digest": digest, "created_at": time.time()})


async def unlink_blob(conn: Connection, repository_id: int, digest: str) -> bool:
    result = await conn.execute(delete(repository_blobs).where(and_(
        repository_blobs.c.repository_id == repository_id, repository_blobs.c.digest == digest)))
    return result.rowcount > 0


_LINKED_IN = (select(blobs.c.digest, blobs.c.size)
              .select_from(repository_blobs.join(blobs, blobs.c.digest == repository_blobs.c.digest))
              .where(repository_blobs.c.repository_id == bindparam("repository_id"),
                     repository_blobs.c.digest.in_(bindparam("digests", expanding=True))))


_LINKED_IN_LOCKED = _LINKED_IN.with_for_update(read=True)


async def linked_digests(conn: Connection, repository_id: int, digests: list[str]) -> dict[str, int]:
    """Of `digests`, those linked into the repository, with their sizes; locked for the transaction."""
    if not digests:
        return {}
    rows = await conn.execute(_LINKED_IN_LOCKED, {"repository_id": repository_id, "digests": digests})
    return {row.digest: row.size for row in rows}

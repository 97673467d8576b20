"""Blobs (one row per digest, whatever repositories hold it) and repository-blob links."""

from __future__ import annotations

import time

from sqlalchemy import and_, bindparam, delete, select

from registry.metadata.db import Connection, Database
from registry.metadata.schema import blobs, repositories, repository_blobs


_LINKED_SIZE = (select(blobs.c.size)
                .select_from(repository_blobs
                             .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
                             .join(blobs, blobs.c.digest == repository_blobs.c.digest))
                .where(repositories.c.name == bindparam("repository"), repository_blobs.c.digest == bindparam("digest")))


async def linked_blob_size(conn: Connection, repository: str, digest: str) -> int | None:
    """Size of a blob if it is linked into the named repository."""
    return (await conn.execute(_LINKED_SIZE, {"repository": repository, "digest": digest})).scalar()


async def blob_size(conn: Connection, digest: str) -> int | None:
    return (await conn.execute(select(blobs.c.size).where(blobs.c.digest == digest))).scalar()


async def record_blob(db: Database, conn: Connection, digest: str, size: int) -> None:
    await conn.execute(db.insert_ignore(blobs), {"digest": digest, "size": size, "created_at": time.time(),
                                                 "last_pulled_at": None})


async def link_blob(db: Database, conn: Connection, repository_id: int, digest: str) -> None:
    await conn.execute(db.insert_ignore(repository_blobs),
                       {"repository_id": repository_id, "digest": digest, "created_at": time.time()})


async def unlink_blob(conn: Connection, repository_id: int, digest: str) -> bool:
    result = await conn.execute(delete(repository_blobs).where(and_(
        repository_blobs.c.repository_id == repository_id, repository_blobs.c.digest == digest)))
    return result.rowcount > 0


_LINKED_IN = (select(blobs.c.digest, blobs.c.size)
              .select_from(repository_blobs.join(blobs, blobs.c.digest == repository_blobs.c.digest))
              .where(repository_blobs.c.repository_id == bindparam("repository_id"),
                     repository_blobs.c.digest.in_(bindparam("digests", expanding=True))))


async def linked_digests(conn: Connection, repository_id: int, digests: list[str]) -> dict[str, int]:
    """Of `digests`, those linked into the repository, with their sizes."""
    if not digests:
        return {}
    rows = await conn.execute(_LINKED_IN, {"repository_id": repository_id, "digests": digests})
    return {row.digest: row.size for row in rows}

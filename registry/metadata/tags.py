"""Tags: name -> manifest within a repository."""

from __future__ import annotations

import time

from sqlalchemy import and_, delete, select, update

from registry.metadata.db import Connection, Database
from registry.metadata.schema import repositories, tags


async def list_tags(conn: Connection, repository: str, limit: int | None, last: str | None) -> list[str] | None:
    """Sorted tag names after `last`; None when the repository does not exist."""
    repo_id = (await conn.execute(select(repositories.c.id).where(repositories.c.name == repository))).scalar()
    if repo_id is None:
        return None
    query = select(tags.c.name).where(tags.c.repository_id == repo_id).order_by(tags.c.name)
    if last:
        query = query.where(tags.c.name > last)
    if limit is not None:
        query = query.limit(limit)
    return list((await conn.execute(query)).scalars())


async def set_tag(db: Database, conn: Connection, repository_id: int, name: str, manifest_id: int) -> None:
    """Point the tag at the manifest: one upsert, so concurrent moves end on one of them."""
    await conn.execute(db.upsert(tags, ["repository_id", "name"], ["manifest_id", "updated_at"]),
                       {"repository_id": repository_id, "name": name, "manifest_id": manifest_id,
                        "updated_at": time.time()})


async def delete_tag(conn: Connection, repository_id: int, name: str) -> bool:
    result = await conn.execute(delete(tags).where(and_(tags.c.repository_id == repository_id,
                                                        tags.c.name == name)))
    return result.rowcount > 0


async def touch_tag(conn: Connection, repository_id: int, name: str) -> None:
    await conn.execute(update(tags).where(and_(tags.c.repository_id == repository_id, tags.c.name == name))
                       .values(updated_at=time.time()))

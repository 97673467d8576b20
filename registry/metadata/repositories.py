"""Repositories: lookup, creation on first write, catalog listing."""

from __future__ import annotations

import time

from sqlalchemy import bindparam, exists, select

from registry.metadata.db import Connection, Database
from registry.metadata.schema import manifests, repositories


_ID_BY_NAME = select(repositories.c.id).where(repositories.c.name == bindparam("name"))


async def repository_id(conn: Connection, name: str) -> int | None:
    return (await conn.execute(_ID_BY_NAME, {"name": name})).scalar()


async def ensure_repository(db: Database, conn: Connection, name: str) -> int:
    """The repository's id, creating it (inside the caller's write transaction) if new."""
    found = await repository_id(conn, name)
    if found is not None:
        return found
    await conn.execute(db.insert_ignore(repositories), {"name": name, "created_at": time.time()})
    found = await repository_id(conn, name)
    assert found is not None
    return found


async def catalog(conn: Connection, limit: int | None, last: str | None) -> list[str]:
    """Names of repositories holding at least one manifest, sorted, after `last`."""
    query = (select(repositories.c.name)
             .where(exists().where(manifests.c.repository_id == repositories.c.id))
             .order_by(repositories.c.name))
    if last:
        query = query.where(repositories.c.name > last)
    if limit is not None:
        query = query.limit(limit)
    return list((await conn.execute(query)).scalars())

"""Tags: name -> manifest within a repository."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, select, update

from registry.metadata.db import Connection, Database
from registry.metadata.schema import repositories, tags


_TAG_PAGES: dict[tuple[bool, bool], Select[Any]] = {}


def _tag_page(after: bool, limited: bool) -> Select[Any]:
    """Tag names of a repository by name, sorted; built once per shape (with/without last, n)."""
    key = (after, limited)
    if key not in _TAG_PAGES:
        query = (select(tags.c.name).select_from(tags.join(repositories, repositories.c.id == tags.c.repository_id))
                 .where(repositories.c.name == bindparam("repository")).order_by(tags.c.name))
        if after:
            query = query.where(tags.c.name > bindparam("last"))
        if limited:
            query = query.limit(bindparam("limit"))
        _TAG_PAGES[key] = query
    return _TAG_PAGES[key]


async def list_tags(db: Database, repository: str, limit: int | None, last: str | None) -> list[str] | None:
    """Sorted tag names after `last`; None when the repository does not exist."""
    found = await db.column(_tag_page(bool(last), limit is not None),
                            {"repository": repository, "last": last, "limit": limit})
    if not found:
        async with db.read() as conn:
            if (await conn.execute(select(repositories.c.id).where(repositories.c.name == repository))).first() is None:
                return None
    return found


async def set_tag(db: Database, conn: Connection, repository_id: int, name: str, manifest_id: int,
                  pushed_by: str | None = None) -> None:
    """Point the tag at the manifest: one upsert, so concurrent moves end on one of them. `pushed_by`:
    who set it, for people (None for a mirror's cache)."""
    await conn.execute(db.upsert(tags, ["repository_id", "name"],
                                 ["manifest_id", "updated_at", "verified_at", "pushed_by"]),
                       {"repository_id": repository_id, "name": name, "manifest_id": manifest_id,
                        "updated_at": time.time(), "verified_at": None, "pushed_by": pushed_by})


async def delete_tag(conn: Connection, repository_id: int, name: str) -> bool:
    result = await conn.execute(delete(tags).where(and_(tags.c.repository_id == repository_id,
                                                        tags.c.name == name)))
    return result.rowcount > 0


async def verify_tag(conn: Connection, repository_id: int, name: str) -> None:
    """A mirror's upstream still has the tag where it was: its cache time restarts, its push time stays."""
    await conn.execute(update(tags).where(and_(tags.c.repository_id == repository_id, tags.c.name == name))
                       .values(verified_at=time.time()))

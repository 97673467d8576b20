"""Tags: name -> manifest within a repository."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, select, update

from registry.metadata.db import Connection, Database
from registry.metadata.schema import repositories, tags


_TAG_PAGES: dict[tuple[bool, bool], Select[Any]] = {}


def _tag_page(after: bool, limited: bool) -> Select[Any]:
    """Tag names of a repository by name, sorted; built once per shape (with/without last, n).

    The repository's id is a scalar subquery, not a join: with `repository_id = (one value)` the
    planner reads the tags primary key (repository_id, name) in order and stops at the limit. Joined
    through `repositories`, PostgreSQL read every tag of the repository (100,000) and then sorted.
    """
    key = (after, limited)
    if key not in _TAG_PAGES:
        repository_id = select(repositories.c.id).where(repositories.c.name == bindparam("repository"))
        query = select(tags.c.name).where(tags.c.repository_id == repository_id.scalar_subquery()).order_by(tags.c.name)
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


_TARGET = (select(tags.c.manifest_id).where(tags.c.repository_id == bindparam("repository_id"),
                                            tags.c.name == bindparam("name")).with_for_update())


async def claim_tag(db: Database, conn: Connection, repository_id: int, name: str, manifest_id: int,
                    pushed_by: str | None = None) -> int | None:
    """A new tag is created pointing at the manifest (None); an existing one is locked and the manifest it
    points at returned, for the caller to decide on the move (then `set_tag`). On PostgreSQL a concurrent
    first push of the same tag waits for this transaction, then finds the tag (its own insert skipped).
    `pushed_by` as for `set_tag`: a tag created here shows who pushed it."""
    key = {"repository_id": repository_id, "name": name}
    for _ in range(3):  # again only if the tag that skipped our insert was deleted before we looked
        current = (await conn.execute(_TARGET, key)).scalar()
        if current is not None:
            return current
        inserted = await conn.execute(db.insert_ignore(tags), {**key, "manifest_id": manifest_id,
                                                               "updated_at": time.time(), "verified_at": None,
                                                               "pushed_by": pushed_by})
        if inserted.rowcount > 0:
            return None
    return (await conn.execute(_TARGET, key)).scalar_one()


async def tag_names(conn: Connection, repository_id: int) -> list[str]:
    return list((await conn.execute(select(tags.c.name).where(tags.c.repository_id == repository_id))).scalars())


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

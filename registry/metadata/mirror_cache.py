"""The mirror cache's bookkeeping: recency of cached blobs, eviction candidates, pins (its usage is a
counter: registry/metadata/usage.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from registry.metadata.db import Connection
from registry.metadata.schema import (blobs, manifest_references, manifests, mirror_pins, repositories,
                                      repository_blobs, tags)


def _in_cache(prefixes: list[str]):
    return or_(*[repositories.c.name.like(f"{prefix}/%") for prefix in prefixes])


async def touch(conn: Connection, touched: dict[tuple[str, str], float]) -> None:
    """Record pulls: {(cache repository, digest): when}."""
    if not touched:
        return
    repo_ids = select(repositories.c.id).where(repositories.c.name == bindparam("repo")).scalar_subquery()
    statement = (update(repository_blobs)
                 .where(repository_blobs.c.repository_id == repo_ids, repository_blobs.c.digest == bindparam("d"))
                 .values(last_pulled_at=bindparam("at")))
    await conn.execute(statement, [{"repo": repo, "d": digest, "at": at} for (repo, digest), at in touched.items()])


@dataclass(frozen=True)
class CachedLink:
    repository_id: int
    repository: str
    digest: str
    size: int


async def oldest_links(conn: Connection, prefixes: list[str], limit: int) -> list[CachedLink]:
    recency = func.coalesce(repository_blobs.c.last_pulled_at, repository_blobs.c.created_at)
    query = (select(repository_blobs.c.repository_id, repositories.c.name, repository_blobs.c.digest, blobs.c.size)
             .select_from(repository_blobs.join(repositories, repositories.c.id == repository_blobs.c.repository_id)
                          .join(blobs, blobs.c.digest == repository_blobs.c.digest))
             .where(_in_cache(prefixes)).order_by(recency, repository_blobs.c.digest).limit(limit))
    return [CachedLink(r.repository_id, r.name, r.digest, r.size) for r in await conn.execute(query)]


async def unlink(conn: Connection, link: CachedLink) -> None:
    await conn.execute(delete(repository_blobs).where(and_(repository_blobs.c.repository_id == link.repository_id,
                                                           repository_blobs.c.digest == link.digest)))


# -- pins ----------------------------------------------------------------------------------
async def add_pin(conn: Connection, repository: str, reference: str) -> None:
    exists = (await conn.execute(select(func.count()).select_from(mirror_pins).where(
        mirror_pins.c.repository == repository, mirror_pins.c.reference == reference))).scalar()
    if not exists:
        await conn.execute(insert(mirror_pins).values(repository=repository, reference=reference,
                                                      created_at=time.time()))


async def remove_pin(conn: Connection, repository: str, reference: str) -> bool:
    result = await conn.execute(delete(mirror_pins).where(mirror_pins.c.repository == repository,
                                                          mirror_pins.c.reference == reference))
    return result.rowcount > 0


async def list_pins(conn: Connection) -> list[tuple[str, str]]:
    rows = await conn.execute(select(mirror_pins.c.repository, mirror_pins.c.reference)
                              .order_by(mirror_pins.c.repository, mirror_pins.c.reference))
    return [(r.repository, r.reference) for r in rows]


# Manifests per IN list while walking pinned indexes: far below SQLite's limit on bound variables.
_WALK_CHUNK = 500


async def pinned_blobs(conn: Connection) -> set[str]:
    """Every blob a pinned image needs: its config and layers, through index children too.

    A bounded number of queries whatever the number of pins: one resolves every pin (a digest names
    a manifest, anything else a tag), then one per level of index nesting (per 500 manifests) reads
    that level's references with their child manifests, looked up in the parent's repository. Each
    lookup is a subquery on a whole unique key, so it stays one index probe whatever the planner's
    estimates (the manifest of a child reference only, thanks to the CASE).
    """
    # Scalar subqueries, each an exact key lookup (tags_pkey, uq_manifests_repository_digest): as outer
    # joins, PostgreSQL matched the tag by repository_id alone and filtered a 100,000-tag repository.
    tagged = select(tags.c.manifest_id).where(tags.c.repository_id == repositories.c.id,
                                              tags.c.name == mirror_pins.c.reference).scalar_subquery()
    by_digest = select(manifests.c.id).where(manifests.c.repository_id == repositories.c.id,
                                             manifests.c.digest == mirror_pins.c.reference).scalar_subquery()
    resolved = await conn.execute(
        select(mirror_pins.c.reference, tagged.label("tagged"), by_digest.label("by_digest"))
        .select_from(mirror_pins.join(repositories, repositories.c.name == mirror_pins.c.repository)))
    level = {row.by_digest if ":" in row.reference else row.tagged for row in resolved} - {None}
    parent, child = aliased(manifests), aliased(manifests)
    child_id = case((manifest_references.c.kind != "blob", select(child.c.id).where(
        child.c.repository_id == parent.c.repository_id, child.c.digest == manifest_references.c.digest)
        .scalar_subquery()))
    references = (select(manifest_references.c.digest, manifest_references.c.kind, child_id)
                  .select_from(manifest_references.join(parent, parent.c.id == manifest_references.c.manifest_id)))
    pinned: set[str] = set()
    seen: set[int] = set()
    while level:
        seen |= level
        ordered, level = sorted(level), set()
        for start in range(0, len(ordered), _WALK_CHUNK):
            rows = await conn.execute(references.where(
                manifest_references.c.manifest_id.in_(ordered[start:start + _WALK_CHUNK])))
            for digest, kind, found in rows:
                if kind == "blob":
                    pinned.add(digest)
                elif found is not None and found not in seen:
                    level.add(found)
    return pinned

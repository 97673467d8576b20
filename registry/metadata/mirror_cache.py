"""The mirror cache's bookkeeping: recency of cached blobs, usage, eviction candidates, pins."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update

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


async def usage(conn: Connection, prefixes: list[str]) -> int:
    """Bytes of the distinct blobs linked into cache repositories."""
    cached = (select(repository_blobs.c.digest)
              .select_from(repository_blobs.join(repositories, repositories.c.id == repository_blobs.c.repository_id))
              .where(_in_cache(prefixes)).distinct().subquery())
    total = (await conn.execute(select(func.coalesce(func.sum(blobs.c.size), 0))
                                .where(blobs.c.digest.in_(select(cached.c.digest))))).scalar()
    return int(total or 0)


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


async def links_left(conn: Connection, digest: str, prefixes: list[str] | None = None) -> int:
    query = (select(func.count()).select_from(
        repository_blobs.join(repositories, repositories.c.id == repository_blobs.c.repository_id))
        .where(repository_blobs.c.digest == digest))
    if prefixes is not None:
        query = query.where(_in_cache(prefixes))
    return int((await conn.execute(query)).scalar() or 0)


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


async def pinned_blobs(conn: Connection) -> set[str]:
    """Every blob a pinned image needs: its config and layers, through index children too."""
    pinned: set[str] = set()
    for repository, reference in await list_pins(conn):
        repo_id = (await conn.execute(select(repositories.c.id).where(repositories.c.name == repository))).scalar()
        if repo_id is None:
            continue
        if ":" in reference:
            start = select(manifests.c.id).where(manifests.c.repository_id == repo_id, manifests.c.digest == reference)
        else:
            start = select(tags.c.manifest_id).where(tags.c.repository_id == repo_id, tags.c.name == reference)
        pending = [m for m in (await conn.execute(start)).scalars()]
        seen: set[int] = set()
        while pending:
            manifest_id = pending.pop()
            if manifest_id in seen:
                continue
            seen.add(manifest_id)
            refs = await conn.execute(select(manifest_references.c.digest, manifest_references.c.kind)
                                      .where(manifest_references.c.manifest_id == manifest_id))
            for digest, kind in refs:
                if kind == "blob":
                    pinned.add(digest)
                else:
                    child = (await conn.execute(select(manifests.c.id).where(
                        manifests.c.repository_id == repo_id, manifests.c.digest == digest))).scalar()
                    if child is not None:
                        pending.append(child)
    return pinned

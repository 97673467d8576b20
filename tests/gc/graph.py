"""Hand-made metadata graphs for the mark phase: written into a migrated database (SQLite or PostgreSQL),
marked there, and the plan read back whole (only tests read a whole plan)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert

from registry.gc.plan import KINDS, mark
from registry.gc.policy import RetentionPolicy
from registry.metadata.db import Database
from registry.metadata.schema import (blobs, manifest_references, manifests, mirror_fills, repositories,
                                      repository_blobs, tags)

REPOSITORIES = {1: "team/app", 2: "other/app"}


@dataclass
class Node:
    id: int
    repository_id: int
    digest: str
    subject: str | None
    size: int
    created_at: float
    last_pulled_at: float | None
    blobs: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass
class Tag:
    repository_id: int
    name: str
    manifest_id: int
    updated_at: float


@dataclass
class Graph:
    manifests: list[Node]
    tags: list[Tag]
    links: dict[tuple[int, str], float]  # (repository id, digest) -> when linked
    blobs: dict[str, int]  # digest -> size
    filling: set[str]  # blobs a mirror is fetching
    repositories: dict[int, str] = field(default_factory=lambda: dict(REPOSITORIES))


@dataclass
class Marked:
    tags: list[Any]
    manifests: list[Any]
    links: list[tuple[int, str]]
    blobs: dict[str, int]

    @property
    def freed_bytes(self) -> int:
        return sum(self.blobs.values())


async def write(db: Database, graph: Graph) -> None:
    """Replace the database's rows by the graph's."""
    async with db.write() as conn:
        for table in (mirror_fills, tags, manifest_references, repository_blobs, manifests, blobs, repositories):
            await conn.execute(delete(table))
        await conn.execute(insert(repositories), [{"id": i, "name": n, "created_at": 0.0}
                                                  for i, n in graph.repositories.items()])
        if graph.blobs:
            await conn.execute(insert(blobs), [{"digest": d, "size": s, "created_at": 0.0}
                                               for d, s in graph.blobs.items()])
        if graph.manifests:
            await conn.execute(insert(manifests), [
                {"id": m.id, "repository_id": m.repository_id, "digest": m.digest, "subject_digest": m.subject,
                 "media_type": "application/vnd.oci.image.manifest.v1+json", "payload": b"{}", "size": m.size,
                 "created_at": m.created_at, "last_pulled_at": m.last_pulled_at} for m in graph.manifests])
        references = {(m.id, d, "blob") for m in graph.manifests for d in m.blobs}
        references |= {(m.id, d, "manifest") for m in graph.manifests for d in m.children}
        if references:
            await conn.execute(insert(manifest_references), [{"manifest_id": i, "digest": d, "kind": k}
                                                             for i, d, k in sorted(references)])
        if graph.tags:
            await conn.execute(insert(tags), [{"repository_id": t.repository_id, "name": t.name,
                                               "manifest_id": t.manifest_id, "updated_at": t.updated_at}
                                              for t in graph.tags])
        if graph.links:
            await conn.execute(insert(repository_blobs), [{"repository_id": r, "digest": d, "created_at": at}
                                                          for (r, d), at in graph.links.items()])
        if graph.filling:
            await conn.execute(insert(mirror_fills), [{"digest": d, "owner": "test", "expires_at": time.time() + 600}
                                                      for d in graph.filling])


async def marked(db: Database, *, now: float, grace_seconds: float, untagged_days: float | None,
                 policies: list[RetentionPolicy], collect: bool = True, page_size: int = 3) -> Marked:
    """Mark and read the whole plan back (pages of three: the paging is exercised too)."""
    whole: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    async with mark(db, now=now, grace_seconds=grace_seconds, untagged_days=untagged_days, policies=policies,
                    collect=collect, page_size=page_size) as plan:
        for kind in KINDS:
            async for rows in plan.pages(kind):
                whole[kind] += rows
    return Marked(whole["tags"], whole["manifests"], [(r.repository_id, r.digest) for r in whole["links"]],
                  {r.digest: r.size for r in whole["blobs"]})


def mark_graph(url: str, graph: Graph, **settings: Any) -> Marked:
    async def main() -> Marked:
        db = Database(url)
        try:
            await write(db, graph)
            return await marked(db, **settings)
        finally:
            await db.close()

    return asyncio.run(main())

"""Hand-made metadata graphs for the mark phase: written into a migrated database (SQLite or PostgreSQL),
marked there, and the plan read back whole (only tests read a whole plan)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert

from registry.gc.plan import KINDS, mark
from registry.gc.policy import DAY, RetentionPolicy
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
                 policies: list[RetentionPolicy], collect: bool = True, page_size: int = 3,
                 held: frozenset[tuple[str, str]] = frozenset()) -> Marked:
    """Mark and read the whole plan back (pages of three: the paging is exercised too); `held` are the
    (repository, tag) an immutable rule holds."""
    whole: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    spare = (lambda repository, tag: (repository, tag) in held) if held else None
    async with mark(db, now=now, grace_seconds=grace_seconds, untagged_days=untagged_days, policies=policies,
                    collect=collect, page_size=page_size, spare=spare) as plan:
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


def reference(g: Graph, now: float, grace: float, untagged_days: float | None, policies: list[RetentionPolicy],
              collect: bool, held: frozenset[tuple[str, str]] = frozenset()) -> dict[str, Any]:
    """The rules, in the plainest Python: what a plan must hold."""
    nodes = {m.id: m for m in g.manifests}
    by_repository: dict[int, list[Tag]] = defaultdict(list)
    for t in g.tags:
        by_repository[t.repository_id].append(t)
    victims = set()
    for repository_id, repo_tags in by_repository.items():
        policy = next((p for p in policies if p.matches(g.repositories[repository_id])), None)
        if policy is None:
            continue
        newest_first = sorted(repo_tags, key=lambda t: (t.updated_at, t.name), reverse=True)
        for position, t in enumerate(newest_first):
            pulled = nodes[t.manifest_id].last_pulled_at
            kept = ((policy.keep_last is not None and position < policy.keep_last)
                    or (policy.older_than_days is not None and t.updated_at >= now - policy.older_than_days * DAY)
                    or policy.keeps_by_name(t.name)
                    or (g.repositories[repository_id], t.name) in held
                    or (policy.keep_pulled_within_days is not None and pulled is not None
                        and pulled >= now - policy.keep_pulled_within_days * DAY))
            if not kept:
                victims.add((repository_id, t.name))
    tagged_after = {t.manifest_id for t in g.tags if (t.repository_id, t.name) not in victims}
    tagged_before = {t.manifest_id for t in g.tags}
    cutoff = None if untagged_days is None or not collect else now - untagged_days * DAY
    pending = [m for m in g.manifests if m.id in tagged_after
               or (m.id not in tagged_before and (cutoff is None or m.created_at >= cutoff))]
    by_key = {(m.repository_id, m.digest): m for m in g.manifests}
    surviving: set[int] = set()
    while pending:
        m = pending.pop()
        if m.id not in surviving:
            surviving.add(m.id)
            pending += [by_key[(m.repository_id, d)] for d in m.children if (m.repository_id, d) in by_key]
            pending += [r for r in g.manifests if r.repository_id == m.repository_id and r.subject == m.digest]
    doomed = {m.id for m in g.manifests} - surviving
    if not collect:
        return {"tags": victims, "manifests": doomed, "links": set(), "blobs": {}}
    needed = {(m.repository_id, d) for m in g.manifests if m.id in surviving for d in m.blobs}
    links = {key for key, at in g.links.items() if at < now - grace and key not in needed}
    kept_digests = {d for _, d in needed} | g.filling | {d for (r, d) in g.links if (r, d) not in links}
    return {"tags": victims, "manifests": doomed, "links": links,
            "blobs": {d: s for d, s in g.blobs.items() if d not in kept_digests}}

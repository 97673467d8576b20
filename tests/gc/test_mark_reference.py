"""The mark phase in SQL against the rules written plainly in Python, on random graphs, on SQLite and
PostgreSQL: indexes, referrers (also of missing subjects), tags sharing a push time (ties broken by name,
in code-point order: `V1` < `_x` < `v1`), every retention rule, tags an immutable rule holds, link ages
around the grace period, mirror fills, and the retention-only mode."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from registry.gc.policy import RetentionPolicy
from registry.metadata.db import Database, migrate
from tests.gc.graph import Graph, Node, Tag, marked, reference, write

NOW = 1_000_000_000.0
DAY = 86400.0
GRACE = 3600.0
NAMES = ["v1", "v2", "V1", "_x", "a-b", "a.b", "a_b", "release-1", "release-2", "latest", "0"]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    database = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}" if request.param == "sqlite" \
        else request.getfixturevalue("postgres_url")
    migrate(database)
    return database


def random_graph(rng: random.Random) -> Graph:
    manifests: list[Node] = []
    pool = [f"sha256:b{i:02d}" for i in range(16)]
    for i in range(1, rng.randrange(2, 30)):
        repo = rng.choice((1, 2))
        earlier = [m.digest for m in manifests if m.repository_id == repo] + ["sha256:missing"]
        children = rng.sample(earlier, min(len(earlier), rng.choice((0, 0, 0, 1, 2))))
        subject = rng.choice(earlier) if rng.random() < 0.25 else None
        pulled = NOW - rng.choice((0.5, 2.0, 20.0)) * DAY if rng.random() < 0.4 else None
        manifests.append(Node(i, repo, f"sha256:m{i:02d}", subject, rng.randrange(100, 1000),
                              NOW - rng.choice((0.5, 3.0, 10.0, 40.0)) * DAY, pulled,
                              rng.sample(pool, rng.randrange(0, 4)), children))
    tags: dict[tuple[int, str], Tag] = {}
    for _ in range(rng.randrange(0, 20)):
        target = rng.choice(manifests)
        name = rng.choice(NAMES)
        when = NOW - rng.choice((1.0, 5.0, 5.0, 40.0)) * DAY  # repeated times: ties broken by name
        tags[(target.repository_id, name)] = Tag(target.repository_id, name, target.id, when)
    links = {(rng.choice((1, 2)), digest): NOW - rng.choice((60.0, 2 * GRACE, 10 * DAY))
             for digest in rng.sample(pool, rng.randrange(0, len(pool)))}
    blobs = {digest: rng.randrange(1, 10_000) for digest in pool}
    return Graph(manifests, list(tags.values()), links, blobs, set(rng.sample(pool, rng.choice((0, 0, 1)))))


def random_policies(rng: random.Random) -> list[RetentionPolicy]:
    policies = []
    for _ in range(rng.randrange(0, 3)):
        keep_last = rng.choice((None, 0, 1, 2, 3))
        older = rng.choice((None, 2.0, 10.0)) if keep_last is not None else rng.choice((2.0, 10.0))
        policies.append(RetentionPolicy(rng.choice(("team/*", "*", "other/app", "nothing/*")), keep_last, older,
                                        rng.choice((None, "release-.*", "v[0-9]")), rng.choice((None, 1.0, 7.0))))
    return policies


def _order_holds(g: Graph, order: list[int]) -> bool:
    """An index before its children, a subject before its referrers, among the doomed."""
    at = {manifest_id: i for i, manifest_id in enumerate(order)}
    by_key = {(m.repository_id, m.digest): m.id for m in g.manifests}
    for m in g.manifests:
        pairs = [(m.id, by_key.get((m.repository_id, d))) for d in m.children]
        pairs.append((by_key.get((m.repository_id, m.subject or "")), m.id))
        for before, after in pairs:
            if before in at and after in at and at[before] >= at[after] and not _in_cycle(g, before):
                return False
    return True


def _in_cycle(g: Graph, start: int) -> bool:
    """Whether the sweep order's edges lead from `start` back to it (content addressing allows that
    only through a mix of indexes and subjects; no order exists then)."""
    by_key = {(m.repository_id, m.digest): m for m in g.manifests}
    ids = {m.id: m for m in g.manifests}
    seen, pending = set(), [start]
    while pending:
        m = ids[pending.pop()]
        following = [by_key[(m.repository_id, d)].id for d in m.children if (m.repository_id, d) in by_key]
        following += [r.id for r in g.manifests if r.repository_id == m.repository_id and r.subject == m.digest]
        for f in following:
            if f == start:
                return True
            if f not in seen:
                seen.add(f)
                pending.append(f)
    return False


def test_the_plan_follows_the_rules_on_random_graphs(url: str):
    async def main() -> None:
        db = Database(url)
        try:
            for seed in range(40):
                rng = random.Random(seed)
                graph, policies = random_graph(rng), random_policies(rng)
                untagged_days = rng.choice((None, 0.0, 7.0))
                names = [(r, t.name) for r in graph.repositories.values() for t in graph.tags]
                held = frozenset(rng.sample(names, min(len(names), rng.choice((0, 0, 2)))))
                for collect in (True, False):
                    await write(db, graph)
                    got = await marked(db, now=NOW, grace_seconds=GRACE, untagged_days=untagged_days,
                                       policies=policies, collect=collect, page_size=rng.choice((1, 2, 500)), held=held)
                    want = reference(graph, NOW, GRACE, untagged_days, policies, collect, held)
                    case = f"seed {seed}, collect {collect}"
                    assert {(t.repository_id, t.name) for t in got.tags} == want["tags"], case
                    assert {m.id for m in got.manifests} == want["manifests"], case
                    assert set(got.links) == want["links"], case
                    assert got.blobs == want["blobs"], case
                    assert _order_holds(graph, [m.id for m in got.manifests]), case
        finally:
            await db.close()

    asyncio.run(main())

"""Usage counters (registry/metadata/usage.py and the triggers of migration 0010), on SQLite and PostgreSQL:
after any sequence of links, re-links, unlinks and repository deletions, each scope's bytes equal the sum
over the distinct blobs its repositories link, computed from the links themselves."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import delete, select

from registry.metadata import usage
from registry.metadata.blobs import link_blob, unlink_blob
from registry.metadata.db import Database
from registry.metadata.inventory import delete_repository
from registry.metadata.repositories import ensure_repository
from registry.metadata.schema import blobs, repositories, repository_blobs, scope_blobs

REPOSITORIES = ["team", "team/a", "team/sub/b", "teamx/c", "team_x/d", "hub/library/x", "ghcr/y", "other"]
SCOPES = {usage.quota_scope("team"): frozenset({"team"}), usage.quota_scope("team/sub"): frozenset({"team/sub"}),
          usage.MIRROR_CACHE: frozenset({"hub", "ghcr"})}
DIGESTS = {f"sha256:{i:064x}": 1000 * (i + 1) for i in range(12)}



def _covered(name: str, prefixes: frozenset[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + "/") for prefix in prefixes)


async def _expected(db: Database, prefixes: frozenset[str]) -> tuple[int, dict[str, int]]:
    async with db.read() as conn:
        rows = (await conn.execute(select(repositories.c.name, repository_blobs.c.digest).select_from(
            repository_blobs.join(repositories, repositories.c.id == repository_blobs.c.repository_id)))).all()
    links: dict[str, int] = {}
    for name, digest in rows:
        if _covered(name, prefixes):
            links[digest] = links.get(digest, 0) + 1
    return sum(DIGESTS[d] for d in links), links


async def _assert_counts_exact(db: Database, scopes: dict[str, frozenset[str]]) -> None:
    for scope, prefixes in scopes.items():
        total, links = await _expected(db, prefixes)
        async with db.read() as conn:
            assert await usage.scope_bytes(conn, scope) == total, scope
            counted = {r.digest: r.links for r in await conn.execute(
                select(scope_blobs.c.digest, scope_blobs.c.links).where(scope_blobs.c.scope == scope))}
        assert counted == links, scope


async def _seed(db: Database) -> dict[str, int]:
    ids = {}
    async with db.write() as conn:
        for digest, size in DIGESTS.items():
            await conn.execute(blobs.insert().values(digest=digest, size=size, created_at=1.0))
        for name in REPOSITORIES:
            ids[name] = await ensure_repository(db, conn, name)
    return ids


def test_counts_follow_links_unlinks_and_repository_deletions(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            ids = await _seed(db)
            assert await usage.track(db, SCOPES) == sorted(SCOPES)
            assert await usage.track(db, SCOPES) == []  # unchanged: nothing recounted
            rng = random.Random(7)
            for step in range(300):
                name, digest = rng.choice(REPOSITORIES), rng.choice(list(DIGESTS))
                async with db.write() as conn:
                    if rng.random() < 0.6:
                        await link_blob(db, conn, ids[name], digest)  # a re-link updates: counted once
                    else:
                        await unlink_blob(conn, ids[name], digest)
                if step % 50 == 49:
                    await _assert_counts_exact(db, SCOPES)
            async with db.write() as conn:
                await delete_repository(conn, ids["team/a"])
                await conn.execute(delete(repository_blobs).where(repository_blobs.c.repository_id == ids["hub/library/x"]))
            await _assert_counts_exact(db, SCOPES)
        finally:
            await db.close()
    asyncio.run(scenario())


def test_a_scope_added_or_changed_later_is_counted_from_scratch_and_a_dropped_one_goes(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            ids = await _seed(db)
            async with db.write() as conn:
                for i, (digest, _) in enumerate(DIGESTS.items()):
                    await link_blob(db, conn, ids[REPOSITORIES[i % len(REPOSITORIES)]], digest)
                    await link_blob(db, conn, ids["team/sub/b"], digest)
            first = {usage.quota_scope("team"): frozenset({"team"})}
            assert await usage.track(db, first) == [usage.quota_scope("team")]
            await _assert_counts_exact(db, first)
            changed = {usage.quota_scope("team"): frozenset({"team", "other"}), usage.MIRROR_CACHE: frozenset({"hub"})}
            assert await usage.track(db, changed) == sorted(changed)
            await _assert_counts_exact(db, changed)
            async with db.read() as conn:
                assert await usage.scope_bytes(conn, usage.quota_scope("team/sub")) is None  # never tracked
            assert await usage.track(db, {}) == []
            async with db.read() as conn:
                assert await usage.scope_bytes(conn, usage.quota_scope("team")) is None
                assert (await conn.execute(select(scope_blobs))).first() is None
            async with db.write() as conn:  # nothing tracked: links move no counter (PostgreSQL: triggers off)
                await unlink_blob(conn, ids["team/sub/b"], next(iter(DIGESTS)))
                await link_blob(db, conn, ids["team/a"], next(iter(DIGESTS)))
                assert (await conn.execute(select(scope_blobs))).first() is None
            assert await usage.track(db, first) == [usage.quota_scope("team")]  # on again, counted afresh
            await _assert_counts_exact(db, first)
            async with db.write() as conn:
                await unlink_blob(conn, ids["team/a"], next(iter(DIGESTS)))
            await _assert_counts_exact(db, first)
        finally:
            await db.close()
    asyncio.run(scenario())

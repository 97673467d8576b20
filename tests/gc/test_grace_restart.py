"""A HEAD, GET or mount restarts a link's gc grace period: each interleaving with a sweep, in process.

These drive the content layer, the mark phase and the sweeper directly on SQLite and PostgreSQL,
ageing links by rewriting their time rather than sleeping, so every order of "gc looked", "a client
looked" and "gc deleted" is taken on purpose. tests/gc/test_reuse_race.py runs the race for real.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import select, update

from registry.content.local import LocalContent
from registry.digest import Digest
from registry.errors import RegistryError
from registry.gc.plan import mark
from registry.gc.sweep import Sweeper
from registry.metadata import blobs as blob_rows
from registry.metadata import gc as gc_rows
from registry.metadata import repositories as repo_rows
from registry.metadata.db import Database, migrate
from registry.metadata.schema import repository_blobs
from registry.storage.filesystem import FilesystemStore

GRACE = 100.0
DATA = b"a layer nobody references any more"
DIGEST = Digest("sha256", hashlib.sha256(DATA).hexdigest())


@pytest.fixture
def postgres_database(postgres_url: str) -> str:
    migrate(postgres_url)
    return postgres_url


Scenario = Callable[[LocalContent, Sweeper], Awaitable[None]]


def run(url: str, tmp_path: Path, test: Scenario, grace: float = GRACE) -> None:
    async def main() -> None:
        db = Database(url)
        store = FilesystemStore(tmp_path / "store")
        try:
            await test(LocalContent(db, store, grace_seconds=grace), Sweeper(db, store))
        finally:
            await db.close()

    asyncio.run(main())


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def age(content: LocalContent, repository: str, seconds: float) -> None:
    """Make the blob's link into `repository` look linked `seconds` ago."""
    async with content.db.write() as conn:
        repo_id = await repo_rows.repository_id(conn, repository)
        await conn.execute(update(repository_blobs).where(repository_blobs.c.repository_id == repo_id,
                                                          repository_blobs.c.digest == str(DIGEST))
                           .values(created_at=time.time() - seconds))


async def linked_at(content: LocalContent, repository: str) -> float | None:
    async with content.db.read() as conn:
        link = await blob_rows.linked_blob(conn, repository, str(DIGEST))
    return link.linked_at if link is not None else None


async def old_orphan(content: LocalContent, repository: str = "t/app") -> None:
    """A blob linked into `repository` longer ago than the grace period, referenced by no manifest."""
    await content.put_blob(repository, DIGEST, body(DATA))
    await age(content, repository, GRACE + 10)


async def key(content: LocalContent, repository: str = "t/app") -> tuple[int, str]:
    async with content.db.read() as conn:
        repo_id = await repo_rows.repository_id(conn, repository)
    assert repo_id is not None
    return repo_id, str(DIGEST)


def test_head_and_get_restart_a_link_past_half_its_grace_period(database_url: str, tmp_path: Path):
    async def test(content: LocalContent, _: Sweeper) -> None:
        await content.put_blob("t/app", DIGEST, body(DATA))
        for look in (content.blob_head, content.blob):
            await age(content, "t/app", GRACE * 0.6)
            before = time.time()
            assert (await look("t/app", DIGEST)).size == len(DATA)
            assert (await linked_at(content, "t/app")) >= before

        # Younger than half the period: no write, the HEAD path stays a read.
        await age(content, "t/app", GRACE * 0.4)
        was = await linked_at(content, "t/app")
        await content.blob_head("t/app", DIGEST)
        await content.blob("t/app", DIGEST)
        assert await linked_at(content, "t/app") == was

    run(database_url, tmp_path, test)


def test_no_grace_period_means_no_writes(database_url: str, tmp_path: Path):
    async def test(content: LocalContent, _: Sweeper) -> None:
        await old_orphan(content)
        was = await linked_at(content, "t/app")
        await content.blob_head("t/app", DIGEST)
        assert await linked_at(content, "t/app") == was

    run(database_url, tmp_path, test, grace=0.0)


def test_gc_that_marked_before_the_head_keeps_the_link_and_the_bytes(database_url: str, tmp_path: Path):
    async def test(content: LocalContent, sweeper: Sweeper) -> None:
        await old_orphan(content)
        now = time.time()
        async with mark(content.db, now=now, grace_seconds=GRACE, untagged_days=0, policies=[]) as plan:
            links = [(r.repository_id, r.digest) async for rows in plan.pages("links") for r in rows]
            planned_blobs = [r.digest async for rows in plan.pages("blobs") for r in rows]
        assert links == [await key(content)] and planned_blobs == [str(DIGEST)]

        await content.blob_head("t/app", DIGEST)  # the client looks between gc's mark and its sweep

        assert await sweeper.delete_links(links, now - GRACE) == []
        assert await sweeper.delete_blobs(planned_blobs) == {}
        assert (await content.blob_head("t/app", DIGEST)).size == len(DATA)
        assert await content.store.stat(DIGEST) is not None

    run(database_url, tmp_path, test)


def test_a_link_collected_between_the_look_and_the_restart_is_unknown(database_url: str, tmp_path: Path):
    async def test(content: LocalContent, sweeper: Sweeper) -> None:
        await old_orphan(content)
        restart = content._restart_grace

        async def gc_first(repository_id: int, digest: Digest) -> None:
            assert await sweeper.delete_links([(repository_id, str(digest))], time.time() - GRACE)
            await restart(repository_id, digest)

        content._restart_grace = gc_first  # type: ignore[method-assign]
        with pytest.raises(RegistryError) as raised:
            await content.blob_head("t/app", DIGEST)
        assert raised.value.code == "BLOB_UNKNOWN"  # not 200: the client uploads it again

    run(database_url, tmp_path, test)


def test_mount_starts_the_targets_grace_and_leaves_the_sources(database_url: str, tmp_path: Path):
    async def test(content: LocalContent, sweeper: Sweeper) -> None:
        await old_orphan(content, "t/base")
        source_was = await linked_at(content, "t/base")
        before = time.time()
        assert await content.mount_blob("t/app", DIGEST, "t/base") is not None
        assert await linked_at(content, "t/app") >= before
        assert await linked_at(content, "t/base") == source_was
        # gc takes the source's link (nobody needs it there) and keeps the mounted one and the bytes.
        cutoff = time.time() - GRACE
        assert await sweeper.delete_links([await key(content, "t/base"), await key(content, "t/app")], cutoff) \
            == [await key(content, "t/base")]
        assert await sweeper.delete_blobs([str(DIGEST)]) == {}

    run(database_url, tmp_path, test)


# -- PostgreSQL: row locks order the restart and the sweep's locked re-check ---------------------
def test_a_restart_waits_for_a_sweep_holding_the_link_then_answers_unknown(postgres_database: str, tmp_path: Path):
    async def test(content: LocalContent, _: Sweeper) -> None:
        await old_orphan(content)
        link = await key(content)
        locked, release = asyncio.Event(), asyncio.Event()

        async def sweep() -> list[tuple[int, str]]:
            async with content.db.write() as conn:
                deleted = await gc_rows.delete_stale_links(conn, [link], time.time() - GRACE)
                locked.set()
                await release.wait()
            return deleted

        sweeping = asyncio.create_task(sweep())
        await locked.wait()
        head = asyncio.create_task(content.blob_head("t/app", DIGEST))  # sees the link: not committed yet
        await asyncio.sleep(0.5)
        assert not head.done(), "the restart did not wait for the sweep's row lock"
        release.set()
        assert await sweeping == [link]
        with pytest.raises(RegistryError) as raised:
            await head
        assert raised.value.code == "BLOB_UNKNOWN"

    run(postgres_database, tmp_path, test)


def test_a_sweep_skips_a_link_whose_restart_is_not_committed_yet(postgres_database: str, tmp_path: Path):
    async def test(content: LocalContent, sweeper: Sweeper) -> None:
        await old_orphan(content)
        link = await key(content)
        async with content.db.write() as conn:
            assert await blob_rows.restart_grace(conn, *link)
            # Even a cutoff that the restarted time fails: the row is locked, so the sweep leaves it.
            assert await sweeper.delete_links([link], time.time() + GRACE) == []
        assert await sweeper.delete_links([link], time.time() - GRACE) == []  # committed: young again
        async with content.db.read() as conn:
            assert (await conn.execute(select(repository_blobs.c.digest))).scalars().all() == [str(DIGEST)]

    run(postgres_database, tmp_path, test)

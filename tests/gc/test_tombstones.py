"""Blob deletion without a transaction open across storage I/O: tombstone, commit, delete the
bytes, finish. These drive the content layer and the sweeper directly (embedded SQLite and the
filesystem store), with a store whose deletes can be held open, to look inside the window.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from registry.content.local import LocalContent
from registry.digest import Digest
from registry.errors import RegistryError
from registry.gc import sweep
from registry.gc.sweep import Sweeper
from registry.metadata import deletions
from registry.metadata.db import Database, migrate
from registry.metadata.schema import blob_deletions, blobs
from registry.storage.filesystem import FilesystemStore
from sqlalchemy import select, update


class HeldStore(FilesystemStore):
    """Deletes wait for `release` (or fail) so a test can act while garbage collection is mid-way."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = asyncio.Event()
        self.release.set()
        self.deleting = asyncio.Event()
        self.fail = False

    async def delete(self, digest: Digest) -> bool:
        self.deleting.set()
        await self.release.wait()
        if self.fail:
            raise OSError("the store refused")
        return await super().delete(digest)


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def scenario(tmp_path: Path, test: Callable[[LocalContent, HeldStore, Sweeper], Awaitable[None]]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    migrate(url)

    async def run() -> None:
        db = Database(url)
        store = HeldStore(tmp_path / "store")
        try:
            await test(LocalContent(db, store), store, Sweeper(db, store))
        finally:
            await db.close()

    asyncio.run(run())


async def orphan(content: LocalContent, data: bytes) -> Digest:
    """A stored blob nothing links: pushed, then unlinked (what gc collects)."""
    digest = digest_of(data)
    await content.put_blob("t/app", digest, body(data))
    await content.delete_blob("t/app", digest)
    return digest


async def rows(content: LocalContent, table, digest: Digest) -> list:  # type: ignore[no-untyped-def]
    async with content.db.read() as conn:
        return list(await conn.execute(select(table).where(table.c.digest == str(digest))))


def test_bytes_are_deleted_with_no_transaction_open(tmp_path: Path) -> None:
    async def test(content: LocalContent, store: HeldStore, sweeper: Sweeper) -> None:
        digest = await orphan(content, os.urandom(1000))
        store.release.clear()
        collecting = asyncio.create_task(sweeper.delete_blobs([str(digest)]))
        await asyncio.wait_for(store.deleting.wait(), 10)
        # GC is inside its storage call: a write transaction goes through at once.
        started = time.monotonic()
        async with content.db.write() as conn:
            await conn.execute(update(blobs).where(blobs.c.digest == "none").values(size=0))
        assert time.monotonic() - started < 1.0
        # The row went with the tombstone, before the bytes.
        assert await rows(content, blobs, digest) == []
        [tombstone] = await rows(content, blob_deletions, digest)
        assert tombstone.finished_at is None
        store.release.set()
        assert await collecting == {str(digest): 1000}
        [tombstone] = await rows(content, blob_deletions, digest)
        assert tombstone.finished_at is not None
        assert await store.stat(digest) is None
    scenario(tmp_path, test)


def test_push_of_a_blob_being_deleted_waits_then_stores_its_own_bytes(tmp_path: Path) -> None:
    async def test(content: LocalContent, store: HeldStore, sweeper: Sweeper) -> None:
        data = os.urandom(2000)
        digest = await orphan(content, data)
        store.release.clear()
        collecting = asyncio.create_task(sweeper.delete_blobs([str(digest)]))
        await asyncio.wait_for(store.deleting.wait(), 10)
        pushing = asyncio.create_task(content.put_blob("t/other", digest, body(data)))
        await asyncio.sleep(0.3)
        assert not pushing.done(), "a push must not publish while the old copy is being deleted"
        store.release.set()
        await collecting
        await asyncio.wait_for(pushing, 10)
        found = await content.blob("t/other", digest)
        assert found.size == 2000 and await store.stat(digest) == 2000
    scenario(tmp_path, test)


def test_tombstone_after_publish_refuses_to_record(tmp_path: Path) -> None:
    """GC takes the digest between a push's look and its record: the push fails, nothing is recorded."""
    async def test(content: LocalContent, store: HeldStore, sweeper: Sweeper) -> None:
        data = os.urandom(3000)
        digest = await orphan(content, data)  # a row with no link: collectable at any moment
        original = content._settled

        async def settled_then_collected(d: Digest) -> frozenset[int]:
            known = await original(d)
            await sweeper.delete_blobs([str(d)])  # the store keeps the old copy, then GC deletes it
            return known

        content._settled = settled_then_collected  # type: ignore[method-assign]
        with pytest.raises(RegistryError) as caught:
            await content.put_blob("t/late", digest, body(data))
        assert caught.value.code == "BLOB_UPLOAD_INVALID" and "garbage-collected" in caught.value.message
        assert await rows(content, blobs, digest) == [] and await content.stored_size(digest) is None
    scenario(tmp_path, test)


def test_failed_delete_gives_the_row_back(tmp_path: Path) -> None:
    async def test(content: LocalContent, store: HeldStore, sweeper: Sweeper) -> None:
        digest = await orphan(content, os.urandom(500))
        store.fail = True
        assert await sweeper.delete_blobs([str(digest)]) == {}
        assert [r.size for r in await rows(content, blobs, digest)] == [500]
        assert all(r.finished_at is not None for r in await rows(content, blob_deletions, digest))
        store.fail = False
        assert await sweeper.delete_blobs([str(digest)]) == {str(digest): 500}
        assert await store.stat(digest) is None
    scenario(tmp_path, test)


def test_stale_tombstone_is_finished_by_the_next_push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector that died mid-way leaves a pending tombstone; a push of that digest finishes it."""
    async def test(content: LocalContent, store: HeldStore, sweeper: Sweeper) -> None:
        data = os.urandom(700)
        digest = await orphan(content, data)
        async with content.db.write() as conn:  # what a collector killed after its first commit leaves
            await deletions.tombstone(conn, {str(digest): 700})
            await conn.execute(update(blob_deletions).values(created_at=time.time() - sweep.STALE_SECONDS - 1))
        assert await store.stat(digest) == 700  # its bytes were never deleted
        await asyncio.wait_for(content.put_blob("t/again", digest, body(data)), 10)
        assert (await content.blob("t/again", digest)).size == 700 and await store.stat(digest) == 700
        assert all(r.finished_at is not None for r in await rows(content, blob_deletions, digest))
    scenario(tmp_path, test)

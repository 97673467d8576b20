"""Bytes stored without their row (a crash between a push's commit and its row) are reclaimed by gc
once they are older than gc.orphan_grace_period, never before, and never under a push or a fill.

The first test runs real registries on both set-ups (SQLite + filesystem, PostgreSQL + S3) and
leaves the crash's remains by storing bytes through the store with no row. The others drive the
reclaim and the content layer directly (filesystem store, SQLite and PostgreSQL) to look inside
the windows where a push and the reclaim meet.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from sqlalchemy import select

from registry.content.local import LocalContent
from registry.digest import Digest
from registry.errors import RegistryError
from registry.gc.jobs import Maintenance, Settings
from registry.gc.reclaim import Reclaimed, reclaim
from registry.gc.sweep import Sweeper
from registry.metadata import deletions, leases
from registry.metadata.db import Database
from registry.metadata.schema import blob_deletions, blobs
from registry.storage import BlobStore
from registry.storage.filesystem import FilesystemStore
from registry.storage.s3 import S3Settings, S3Store
from tests.api.helpers import push_blob
from tests.gc.conftest import run_job
from tests.support.storage_view import S3View

HOUR = 3600.0


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


# -- real registries ------------------------------------------------------------------------------
def _store_beside(server, request: pytest.FixtureRequest) -> BlobStore:  # type: ignore[no-untyped-def]
    """The store the registry process uses, opened by this test (as a second process would)."""
    if isinstance(server.storage, S3View):
        swift = request.getfixturevalue("swift_s3")
        return S3Store(S3Settings(bucket=server.storage.bucket, prefix=server.storage.prefix,
                                  endpoint_url=swift.endpoint_url, access_key=swift.access_key,
                                  secret_key=swift.secret_key, region=swift.region, path_style=True))
    return FilesystemStore(server.data_dir)


def _crash_leftover(store: BlobStore, data: bytes) -> str:
    """What a crash between a push's commit and its row leaves: the bytes under their digest, no row."""
    async def store_it() -> None:
        try:
            await store.put_blob(digest_of(data), body(data))
        finally:
            await store.close()
    asyncio.run(store_it())
    return str(digest_of(data))


def _orphans(report: dict) -> tuple[int, int, set[str]]:
    return (report["deleted"]["orphans"], report["orphan_bytes"],
            {item["digest"] for item in report["items"] if item["type"] == "orphan"})


def test_crash_leftovers_are_reclaimed_after_the_grace_period_and_never_before(make_registry, request):
    on_s3 = make_registry.setup == "postgresql+s3"
    # On S3 the objects' LastModified cannot be set back: a short grace period, then a real wait. On the
    # filesystem the default period, and the files' modification times set back past it.
    grace = 3.0 if on_s3 else HOUR
    server = make_registry(gc_orphan_grace_period=str(grace))
    with httpx.Client(base_url=server.url, timeout=60) as http:
        recorded_data = os.urandom(4000)
        recorded = push_blob(http, "reclaim/app", recorded_data)
        leftover_data = os.urandom(3000)
        leftover = _crash_leftover(_store_beside(server, request), leftover_data)
        assert server.storage.blob_bytes(leftover) == leftover_data

        for dry_run in (True, False):  # young: not even named
            report = run_job(http, "gc", dry_run=dry_run)
            assert _orphans(report) == (0, 0, set()), report
        assert server.storage.blob_bytes(leftover) == leftover_data

        if on_s3:
            time.sleep(grace + 1.5)  # LastModified has whole seconds
        else:
            for digest in (recorded, leftover):
                old = time.time() - 2 * HOUR
                os.utime(server.storage.blob_path(digest), (old, old))

        dry = run_job(http, "gc", dry_run=True)
        assert _orphans(dry) == (1, 3000, {leftover}), dry
        assert dry["freed_bytes"] == 3000
        assert server.storage.blob_bytes(leftover) == leftover_data  # a dry run deletes nothing

        real = run_job(http, "gc")
        assert _orphans(real) == (1, 3000, {leftover}), real
        assert real["freed_bytes"] == 3000 and real["deleted"]["blobs"] == 0
        assert server.storage.blob_bytes(leftover) is None
        # The blob with a row is as old, and untouched.
        assert server.storage.blob_bytes(recorded) == recorded_data
        assert http.get(f"/v2/reclaim/app/blobs/{recorded}").content == recorded_data
        assert _orphans(run_job(http, "gc")) == (0, 0, set())
    log = server.log_path.read_text()
    assert "gc finished in" in log and "'orphans': 1}, freed_bytes=3000, orphan_bytes=3000" in log


# -- the reclaim and the content layer, inside the windows ------------------------------------------
def scenario(database_url: str, tmp_path: Path,
             test: Callable[[LocalContent, FilesystemStore, Sweeper], Awaitable[None]],
             records_something: bool = True) -> None:
    async def run() -> None:
        db = Database(database_url)
        store = FilesystemStore(tmp_path / "store")
        try:
            content = LocalContent(db, store)
            if records_something:  # a registry in use (an empty database skips the reclaim)
                kept = os.urandom(30)
                await content.put_blob("t/kept", digest_of(kept), body(kept))
            await test(content, store, Sweeper(db, store, batch_size=2))
        finally:
            await db.close()

    asyncio.run(run())


async def leftover(store: FilesystemStore, data: bytes, age: float = 2 * HOUR) -> Digest:
    """Bytes stored with no row, last modified `age` seconds ago."""
    digest = digest_of(data)
    await store.put_blob(digest, body(data))
    when = time.time() - age
    os.utime(store.blob_path(digest), (when, when))
    return digest


async def run_reclaim(content: LocalContent, sweeper: Sweeper, dry_run: bool = False) -> Reclaimed:
    return await reclaim(content.db, content.store, sweeper, time.time() - HOUR, dry_run, batch_size=2)


async def rows(content: LocalContent, table, digest: Digest) -> list:  # type: ignore[no-untyped-def]
    async with content.db.read() as conn:
        return list(await conn.execute(select(table).where(table.c.digest == str(digest))))


def test_only_old_unrecorded_bytes_go_in_batches_and_a_dry_run_only_counts(database_url: str, tmp_path: Path) -> None:
    async def test(content: LocalContent, store: FilesystemStore, sweeper: Sweeper) -> None:
        old = [await leftover(store, os.urandom(100 + i)) for i in range(5)]  # three batches of two
        young = await leftover(store, os.urandom(50), age=60)
        recorded_data = os.urandom(70)
        recorded = digest_of(recorded_data)
        await content.put_blob("t/app", recorded, body(recorded_data))
        os.utime(store.blob_path(recorded), (time.time() - 2 * HOUR,) * 2)
        await store.start_upload("staged")  # an old staged upload belongs to the expired-upload sweep
        await store.write_upload("staged", 0, body(b"half a layer"))
        os.utime(store.uploads_dir / "staged", (time.time() - 2 * HOUR,) * 2)

        dry = await run_reclaim(content, sweeper, dry_run=True)
        assert (dry.count, dry.bytes) == (5, sum(100 + i for i in range(5)))
        assert {digest for digest, _ in dry.blobs} == {str(d) for d in old}
        assert all([await store.stat(d) for d in old])

        real = await run_reclaim(content, sweeper)
        assert (real.count, real.bytes, sorted(real.blobs)) == (dry.count, dry.bytes, sorted(dry.blobs))
        assert [await store.stat(d) for d in old] == [None] * 5
        assert await store.stat(young) == 50 and await store.stat(recorded) == 70
        assert (await content.blob("t/app", recorded)).size == 70
        assert await store.upload_size("staged") == len(b"half a layer")
        for digest in old:  # no row made along the way is left, and every tombstone is finished
            assert await rows(content, blobs, digest) == []
            assert [r.finished_at is not None for r in await rows(content, blob_deletions, digest)] == [True]
    scenario(database_url, tmp_path, test)


def test_a_mirror_fill_or_a_pending_deletion_keeps_the_bytes(database_url: str, tmp_path: Path) -> None:
    async def test(content: LocalContent, store: FilesystemStore, sweeper: Sweeper) -> None:
        filling = await leftover(store, os.urandom(100))
        being_deleted = await leftover(store, os.urandom(200))
        async with content.db.write() as conn:
            assert await leases.take(content.db, conn, leases.MIRROR_FILL, str(filling), "filler", 60)
            await deletions.tombstone(conn, {str(being_deleted): 200})  # another gc is deleting it

        for dry_run in (True, False):
            found = await run_reclaim(content, sweeper, dry_run)
            assert found.count == 0
        assert await store.stat(filling) == 100 and await store.stat(being_deleted) == 200
        async with content.db.write() as conn:  # the fill ends without recording: the bytes are leftovers
            await leases.release(conn, leases.MIRROR_FILL, str(filling), "filler")
        assert (await run_reclaim(content, sweeper)).blobs == [(str(filling), 100)]
    scenario(database_url, tmp_path, test)


def test_a_push_recording_while_the_reclaim_claims_fails_cleanly_and_pushes_again(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reclaim has claimed old bytes (its transaction open) when a push of the same digest, which
    looked before the claim and kept those bytes as its own copy, comes to record its row: the push
    waits, then finds the tombstone and fails; pushed again, the blob is stored and served."""
    async def test(content: LocalContent, store: FilesystemStore, sweeper: Sweeper) -> None:
        data = os.urandom(3000)
        digest = await leftover(store, data)
        claiming, release = asyncio.Event(), asyncio.Event()
        tombstone = deletions.tombstone

        async def held_tombstone(conn, doomed: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
            if doomed:
                claiming.set()
                await release.wait()
            await tombstone(conn, doomed)

        monkeypatch.setattr(deletions, "tombstone", held_tombstone)
        reclaiming = asyncio.create_task(run_reclaim(content, sweeper))
        await asyncio.wait_for(claiming.wait(), 10)
        pushing = asyncio.create_task(content.put_blob("t/app", digest, body(data)))
        await asyncio.sleep(0.5)
        assert not pushing.done(), "the push must wait for the claim's transaction"
        release.set()
        assert (await asyncio.wait_for(reclaiming, 10)).blobs == [(str(digest), 3000)]
        with pytest.raises(RegistryError) as caught:
            await asyncio.wait_for(pushing, 10)
        assert caught.value.code == "BLOB_UPLOAD_INVALID"
        assert await store.stat(digest) is None and await rows(content, blobs, digest) == []

        await content.put_blob("t/app", digest, body(data))  # the client's retry
        assert (await content.blob("t/app", digest)).size == 3000 and await store.stat(digest) == 3000
        assert (await run_reclaim(content, sweeper)).count == 0
    scenario(database_url, tmp_path, test)


def test_a_push_recording_first_keeps_the_bytes_the_reclaim_found_without_a_row(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reclaim's listing and its batch check see no row (the push's transaction is still open):
    its claim waits for the push and then finds the row, so the bytes stay."""
    async def test(content: LocalContent, store: FilesystemStore, sweeper: Sweeper) -> None:
        data = os.urandom(2000)
        digest = await leftover(store, data)
        recording, release = asyncio.Event(), asyncio.Event()
        appeared = deletions.appeared

        async def held_appeared(conn, digest: str, known: frozenset[int]) -> bool:  # type: ignore[no-untyped-def]
            recording.set()  # the push's row is written, its transaction open
            await release.wait()
            return await appeared(conn, digest, known)

        monkeypatch.setattr(deletions, "appeared", held_appeared)
        pushing = asyncio.create_task(content.put_blob("t/app", digest, body(data)))
        await asyncio.wait_for(recording.wait(), 10)
        reclaiming = asyncio.create_task(run_reclaim(content, sweeper))
        await asyncio.sleep(0.5)
        assert not reclaiming.done(), "the claim must wait for the push's transaction"
        release.set()
        await asyncio.wait_for(pushing, 10)
        assert (await asyncio.wait_for(reclaiming, 10)).count == 0
        assert (await content.blob("t/app", digest)).size == 2000 and await store.stat(digest) == 2000
        assert await rows(content, blob_deletions, digest) == []
    scenario(database_url, tmp_path, test)


def test_a_negative_grace_period_turns_the_reclaim_off(database_url: str, tmp_path: Path) -> None:
    async def test(content: LocalContent, store: FilesystemStore, sweeper: Sweeper) -> None:
        digest = await leftover(store, os.urandom(100), age=10 * HOUR)
        off = await Maintenance(content.db, store, Settings(orphan_grace_seconds=-1)).gc()
        assert "orphans" not in off["deleted"] and await store.stat(digest) == 100
        on = await Maintenance(content.db, store, Settings(orphan_grace_seconds=HOUR)).gc()
        assert on["deleted"]["orphans"] == 1 and await store.stat(digest) is None
    scenario(database_url, tmp_path, test)


def test_a_database_that_records_no_blob_at_all_reclaims_nothing(database_url: str, tmp_path: Path, caplog) -> None:
    """An empty database beside a full store is most likely the wrong database: nothing is deleted."""
    async def test(content: LocalContent, store: FilesystemStore, sweeper: Sweeper) -> None:
        digest = await leftover(store, os.urandom(100), age=10 * HOUR)
        found = await run_reclaim(content, sweeper)
        assert found.count == 0 and await store.stat(digest) == 100
        assert "the database records no blob" in caplog.text
    scenario(database_url, tmp_path, test, records_something=False)

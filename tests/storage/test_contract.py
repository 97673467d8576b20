"""The BlobStore contract, run against every backend (CNCF Distribution's driver-suite idea).

A backend joins by adding itself to BACKENDS; nothing here knows how it stores bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
import uuid
from pathlib import Path
from collections.abc import AsyncIterator, Callable

import pytest

from registry.digest import Digest
from registry.storage import BlobStore, DigestMismatch, UploadNotFound, UploadOffsetMismatch
from registry.storage.base import bucket_of
from registry.storage.filesystem import FilesystemStore
from registry.storage.s3 import S3Settings, S3Store
from registry.storage.timed import TimedStore


def _filesystem(request: pytest.FixtureRequest, tmp: Path) -> BlobStore:
    return FilesystemStore(tmp / "store")


def _s3(request: pytest.FixtureRequest, tmp: Path) -> BlobStore:
    swift = request.getfixturevalue("swift_s3")
    swift.create_bucket("contract")
    return S3Store(S3Settings(bucket="contract", prefix=f"t-{uuid.uuid4().hex[:8]}", endpoint_url=swift.endpoint_url,
                              access_key=swift.access_key, secret_key=swift.secret_key, region=swift.region,
                              path_style=True, part_size=5 * 1024 * 1024))


def _timed_filesystem(request: pytest.FixtureRequest, tmp: Path) -> BlobStore:
    """The metrics wrapper the server puts around its store keeps the contract."""
    return TimedStore(FilesystemStore(tmp / "store"), lambda action, seconds: None)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BlobStore]] = {
    "filesystem": _filesystem,
    "s3": _s3,
    "timed-filesystem": _timed_filesystem,
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request, tmp_path) -> BlobStore:
    return BACKENDS[request.param](request, tmp_path)


def run(coro):
    return asyncio.run(coro)


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def put(store: BlobStore, upload_id: str, data: bytes) -> Digest:
    digest = digest_of(data)
    await store.start_upload(upload_id)
    await store.write_upload(upload_id, 0, chunks(data))
    await store.commit_upload(upload_id, digest)
    return digest


def test_put_stat_read(store):
    data = os.urandom(3 * 1024 * 1024 + 17)

    async def scenario():
        digest = await put(store, "u1", data)
        assert await store.stat(digest) == len(data)
        assert await collect(store.read(digest)) == data
        return digest

    run(scenario())


def test_ranged_read(store):
    data = os.urandom(2 * 1024 * 1024 + 5)

    async def scenario():
        digest = await put(store, "u1", data)
        assert await collect(store.read(digest, 10, 100)) == data[10:110]
        assert await collect(store.read(digest, len(data) - 3, 3)) == data[-3:]
        assert await collect(store.read(digest, 1024 * 1024 - 1, 1024 * 1024 + 2)) == \
            data[1024 * 1024 - 1: 2 * 1024 * 1024 + 1]
        assert await collect(store.read(digest, 5, 0)) == b""

    run(scenario())


def test_stat_of_absent_blob_is_none(store):
    assert run(store.stat(digest_of(b"never stored"))) is None


def test_chunked_upload_with_hasher_sees_every_byte(store):
    parts = [os.urandom(1000), os.urandom(1024 * 1024), os.urandom(1)]

    async def scenario():
        await store.start_upload("u1")
        hasher = hashlib.sha256()
        offset = 0
        for part in parts:
            offset = await store.write_upload("u1", offset, chunks(part[:500], part[500:]), hasher)
        assert offset == sum(map(len, parts)) == await store.upload_size("u1")
        data = b"".join(parts)
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
        assert await collect(store.read_upload("u1")) == data
        digest = digest_of(data)
        assert await store.commit_upload("u1", digest) is True
        assert await collect(store.read(digest)) == data

    run(scenario())


def test_write_at_wrong_offset_is_refused_and_nothing_changes(store):
    async def scenario():
        await store.start_upload("u1")
        await store.write_upload("u1", 0, chunks(b"abc"))
        for wrong in (0, 2, 4):
            with pytest.raises(UploadOffsetMismatch) as info:
                await store.write_upload("u1", wrong, chunks(b"zzz"))
            assert info.value.expected == 3
        assert await collect(store.read_upload("u1")) == b"abc"

    run(scenario())


def test_write_without_offset_appends_at_the_staged_end(store):
    big = os.urandom(2 * 1024 * 1024)  # large enough that the filesystem hashes beside the write

    async def scenario():
        await store.start_upload("u1")
        hasher = hashlib.sha256()
        assert await store.write_upload("u1", None, chunks(b"abc"), hasher) == 3
        assert await store.write_upload("u1", None, chunks(), hasher) == 3  # no body: just the size
        assert await store.write_upload("u1", None, chunks(big, b"z"), hasher) == 3 + len(big) + 1
        data = b"abc" + big + b"z"
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
        assert await collect(store.read_upload("u1")) == data
        with pytest.raises(UploadNotFound):
            await store.write_upload("never-started", None, chunks(b"x"))

    run(scenario())


def test_bytes_received_before_a_broken_body_stay_staged(store):
    async def broken() -> AsyncIterator[bytes]:
        yield b"first"
        raise ConnectionResetError("client went away")

    async def scenario():
        await store.start_upload("u1")
        with pytest.raises(ConnectionResetError):
            await store.write_upload("u1", 0, broken())
        assert await store.upload_size("u1") == 5
        assert await store.write_upload("u1", 5, chunks(b"second")) == 11

    run(scenario())


def test_commit_of_existing_digest_dedups(store):
    data = b"shared layer" * 1000

    async def scenario():
        digest = await put(store, "u1", data)
        await store.start_upload("u2")
        await store.write_upload("u2", 0, chunks(data))
        assert await store.commit_upload("u2", digest) is False
        with pytest.raises(UploadNotFound):
            await store.upload_size("u2")
        assert await collect(store.read(digest)) == data

    run(scenario())


def test_concurrent_commits_of_the_same_digest(store):
    data = os.urandom(512 * 1024)

    async def one(i: int) -> bool:
        await store.start_upload(f"c{i}")
        await store.write_upload(f"c{i}", 0, chunks(data))
        return await store.commit_upload(f"c{i}", digest_of(data))

    async def scenario():
        results = await asyncio.gather(*(one(i) for i in range(8)))
        assert results.count(True) >= 1
        assert await collect(store.read(digest_of(data))) == data

    run(scenario())


def test_delete(store):
    async def scenario():
        digest = await put(store, "u1", b"to delete")
        assert await store.delete(digest) is True
        assert await store.stat(digest) is None
        assert await store.delete(digest) is False

    run(scenario())


def test_abort_drops_staging_and_is_idempotent(store):
    async def scenario():
        await store.start_upload("u1")
        await store.write_upload("u1", 0, chunks(b"partial"))
        await store.abort_upload("u1")
        with pytest.raises(UploadNotFound):
            await store.upload_size("u1")
        await store.abort_upload("u1")
        await store.abort_upload("never-existed")

    run(scenario())


def test_unknown_or_hostile_upload_ids(store):
    async def scenario():
        for upload_id in ("nope", "../../etc/passwd", "a/b", ""):
            with pytest.raises(UploadNotFound):
                await store.upload_size(upload_id)
            with pytest.raises(UploadNotFound):
                await store.write_upload(upload_id, 0, chunks(b"x"))

    run(scenario())


def test_empty_blob(store):
    async def scenario():
        digest = await put(store, "u1", b"")
        assert await store.stat(digest) == 0
        assert await collect(store.read(digest)) == b""

    run(scenario())


def test_filesystem_write_cancelled_during_its_first_chunk_closes_the_file(tmp_path):
    store = FilesystemStore(tmp_path / "store")
    in_update, release = threading.Event(), threading.Event()

    class SlowHasher:  # holds the first chunk's thread job until the caller is cancelled
        def update(self, data: bytes) -> None:
            in_update.set()
            release.wait(10)

    def open_on(path: Path) -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path))

    async def scenario():
        await store.start_upload("u1")
        staged = (tmp_path / "store" / "uploads" / "u1").resolve()
        task = asyncio.create_task(store.write_upload("u1", 0, chunks(b"abc"), SlowHasher()))
        await asyncio.to_thread(in_update.wait, 10)
        assert open_on(staged) == 1
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # the thread finishes, then its file is closed
            if not open_on(staged):
                break
            await asyncio.sleep(0.01)
        assert open_on(staged) == 0
        assert await store.upload_size("u1") == 3  # what was written stays staged

    run(scenario())


def test_filesystem_layout_is_by_digest_only(tmp_path):
    """No repository name in a blob path: that is what makes one copy serve every repository."""
    fs = FilesystemStore(tmp_path / "store")
    digest = run(put(fs, "u1", b"layer"))
    files = [p for p in (tmp_path / "store" / "blobs").rglob("*") if p.is_file()]
    assert files == [tmp_path / "store" / "blobs" / "sha256" / digest.hex[:2] / digest.hex]


@pytest.mark.parametrize("size", [0, 1000, 12 * 1024 * 1024 + 3])
def test_put_blob_verifies_and_stores(store, size):
    data = os.urandom(size)

    async def scenario():
        digest = digest_of(data)
        assert await store.put_blob(digest, chunks(data[:700], data[700:])) == size
        assert await store.stat(digest) == size
        assert await collect(store.read(digest)) == data
        # Again: the digest exists, the bytes are still checked, and nothing changes.
        assert await store.put_blob(digest, chunks(data)) == size
        assert await collect(store.read(digest)) == data

    run(scenario())


@pytest.mark.parametrize("size", [10, 12 * 1024 * 1024])
def test_put_blob_with_wrong_digest_stores_nothing(store, size):
    data = os.urandom(size)

    async def scenario():
        wrong = digest_of(b"something else")
        hooked = []

        async def before_publish() -> None:
            hooked.append(True)

        with pytest.raises(DigestMismatch):
            await store.put_blob(wrong, chunks(data), before_publish)
        assert not hooked, "before_publish runs only for verified bytes"
        assert await store.stat(wrong) is None
        assert await store.stat(digest_of(data)) is None

    run(scenario())


@pytest.mark.parametrize("size", [1000, 12 * 1024 * 1024 + 3])
def test_put_blob_calls_before_publish_once_verified_and_not_yet_visible(store, size):
    """The caller coordinates with garbage collection there (registry/content/local.py)."""
    data = os.urandom(size)
    digest = digest_of(data)

    async def scenario():
        seen: list[int | None] = []

        async def before_publish() -> None:
            seen.append(await store.stat(digest))

        assert await store.put_blob(digest, chunks(data[:700], data[700:]), before_publish) == size
        assert seen == [None]
        assert await collect(store.read(digest)) == data

    run(scenario())


def test_put_file_stores_a_verified_local_file(store, tmp_path):
    data = os.urandom(6 * 1024 * 1024 + 11)
    source = tmp_path / "verified.partial"
    source.write_bytes(data)

    async def scenario():
        digest = digest_of(data)
        assert await store.put_file(digest, source) == len(data)
        assert await collect(store.read(digest)) == data
        assert source.read_bytes() == data  # the caller's file is left where it was
        source.unlink()  # and removing it does not touch the stored blob
        assert await collect(store.read(digest)) == data

    run(scenario())


def test_iter_blobs_lists_every_committed_blob_with_its_size(store):
    async def scenario():
        stored = {await put(store, f"u{i}", b"x" * i): i for i in range(5)}
        await store.start_upload("staged-only")
        await store.write_upload("staged-only", 0, chunks(b"not a blob yet"))
        listed = {digest: size async for digest, size in store.iter_blobs()}
        assert listed == stored
        assert [name async for name in store.iter_strays()] == []

    run(scenario())


def test_iter_stored_blobs_gives_each_blob_its_size_and_modification_time(store):
    """Streamed with each blob's time, which reclaiming unrecorded bytes compares with its grace period;
    staged uploads are not blobs and are not listed."""
    async def scenario():
        before = time.time()
        stored = {await put(store, f"u{i}", os.urandom(i + 1)): i + 1 for i in range(3)}
        await store.start_upload("staged-only")
        await store.write_upload("staged-only", 0, chunks(b"not a blob yet"))
        listing = store.iter_stored_blobs()
        first = await listing.__anext__()  # an iterator, not a list built up front
        listed = [first] + [blob async for blob in listing]
        assert {blob.digest: blob.size for blob in listed} == stored
        # Clocks of a remote store may differ a little from ours (and S3 keeps whole seconds).
        assert all(before - 60 <= blob.modified_at <= time.time() + 60 for blob in listed)

    run(scenario())


def test_iter_stored_blobs_lists_a_bucket_at_a_time_in_order(store):
    """fsck compares the store with the database a bucket (algorithm, two hex digits) at a time: each
    bucket's blobs come together, the buckets in ascending order."""
    async def scenario():
        stored = {await put(store, f"b{i}", os.urandom(16)) for i in range(60)}
        buckets = [bucket_of(blob.digest) async for blob in store.iter_stored_blobs()]
        assert len(buckets) == len(stored)
        runs = [bucket for i, bucket in enumerate(buckets) if i == 0 or buckets[i - 1] != bucket]
        assert runs == sorted(set(buckets)), runs

    run(scenario())


def test_quarantine_takes_a_blob_out_of_service(store):
    async def scenario():
        kept, moved = await put(store, "u1", b"kept"), await put(store, "u2", b"moved")
        where = await store.quarantine(moved, "digest-mismatch")
        assert "quarantine" in where
        assert await store.stat(moved) is None
        assert {digest async for digest, _ in store.iter_blobs()} == {kept}
        # The same bytes pushed again come back as a normal blob.
        assert await put(store, "u3", b"moved") == moved
        assert await store.stat(moved) == 5

    run(scenario())


def test_iter_uploads_lists_staged_uploads_until_they_are_gone(store):
    async def scenario():
        await store.start_upload("small")
        await store.write_upload("small", 0, chunks(b"abc"))
        await store.start_upload("parted")  # big enough for a multipart upload on S3
        await store.write_upload("parted", 0, chunks(os.urandom(6 * 1024 * 1024)))
        listed = {upload_id: when async for upload_id, when in store.iter_uploads()}
        assert set(listed) == {"small", "parted"}
        assert all(abs(when - time.time()) < 600 for when in listed.values())
        await store.abort_upload("small")
        await store.abort_upload("parted")
        assert [upload_id async for upload_id, _ in store.iter_uploads()] == []

    run(scenario())

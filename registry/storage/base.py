"""The BlobStore contract every backend honours (and tests/storage_contract checks).

A store holds committed blobs keyed by digest only (never by repository: that is what makes
a blob pushed to many repositories exist once) and staged uploads keyed by an upload id.
A committed blob's bytes always match its digest: `commit_upload` is only called after the
caller verified the digest of exactly the bytes staged, and it publishes them atomically.
Writes that find no room (start_upload, write_upload, commit_upload, put_blob, put_file) raise
StorageFull, whatever the backend's own words for it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import NamedTuple, Protocol
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator

from registry.digest import Digest


_PROBE_DIGEST = Digest("sha256", "0" * 64)


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


class UploadNotFound(Exception):
    pass


class DigestMismatch(Exception):
    """The bytes received do not hash to the digest the client named."""


class StorageUnavailable(Exception):
    """The backend cannot be reached or refuses our credentials: a 503, not a hang or a 500."""


class StorageFull(Exception):
    """No room for the bytes (a full disk, a quota): a 5xx the client retries once space is back.

    Not a client error: the same request succeeds later, unchanged.
    """


# ENOSPC: the filesystem is full; EDQUOT: the user's or project's quota on it is.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def full_disk_as_storage_full(where: object) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into StorageFull naming `where`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            raise
        raise StorageFull(f"{where}: {os.strerror(exc.errno)}") from exc


def require_free_space(directory: Path, floor: int) -> None:
    """Raise StorageFull when the filesystem holding `directory` has fewer than `floor` bytes free.

    Counts what an unprivileged writer may still use (f_bavail), not the blocks kept for root.
    """
    if floor <= 0:
        return
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    if free < floor:
        raise StorageFull(f"{directory} has {free} bytes free, below the floor of {floor} (storage.min_free_bytes)")


def bucket_of(digest: Digest) -> tuple[str, str]:
    """Where `iter_stored_blobs` lists a blob: its algorithm and the first two digits of its hex."""
    return digest.algorithm, digest.hex[:2]


class StoredBlob(NamedTuple):
    """A committed blob as its store lists it."""

    digest: Digest
    size: int
    modified_at: float  # epoch seconds its bytes were last written: a file's mtime, an object's LastModified


class UploadOffsetMismatch(Exception):
    """A write did not start where the staged data ends."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"upload is at offset {expected}, write started at {got}")
        self.expected = expected
        self.got = got


class BlobStore(abc.ABC):
    # Free bytes the store's disk must keep (storage.min_free_bytes): below it `ping` raises
    # StorageFull, so readiness fails before writes do. 0: not checked; backends without a local
    # disk ignore it.
    min_free_bytes: int = 0

    @property
    def backend_name(self) -> str:
        """What the admin views call the backend (the class, e.g. FilesystemStore)."""
        return type(self).__name__

    # -- committed blobs --------------------------------------------------------------
    @abc.abstractmethod
    async def stat(self, digest: Digest) -> int | None:
        """Size of the committed blob, or None when absent."""

    @abc.abstractmethod
    def read(self, digest: Digest, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream the committed blob's bytes [offset, offset+length)."""

    def local_path(self, digest: Digest) -> Path | None:
        """A path the server may sendfile() from, for backends on a local filesystem."""
        return None

    def redirect_url(self, digest: Digest, expires_in: int) -> str | None:
        """A pre-signed URL a client may fetch the blob from directly, where the backend has one."""
        return None

    @abc.abstractmethod
    async def delete(self, digest: Digest) -> bool:
        """Remove a committed blob; False when it was absent."""

    @abc.abstractmethod
    def iter_stored_blobs(self) -> AsyncIterator[StoredBlob]:
        """Every committed blob with its size and modification time, streamed (a store may hold millions):
        for fsck and for reclaiming bytes no row records.

        Grouped by bucket (`bucket_of`: the algorithm and the first two hex digits), buckets in ascending
        order, so a reader can compare the store with the database one bucket at a time; in no particular
        order inside a bucket.

        Files whose names are not digests are reported by `iter_strays`, not here.
        """

    async def iter_blobs(self) -> AsyncIterator[tuple[Digest, int]]:
        """Every committed blob with its size (`iter_stored_blobs` without the times)."""
        async for blob in self.iter_stored_blobs():
            yield blob.digest, blob.size

    def iter_strays(self) -> AsyncIterator[str]:
        """Names in the blob area that are not committed blobs (leftovers, foreign files)."""
        return _nothing()

    @abc.abstractmethod
    async def quarantine(self, digest: Digest, reason: str) -> str:
        """Move a committed blob out of the served area (kept for inspection); returns where it went."""

    @abc.abstractmethod
    async def quarantine_stray(self, name: str, reason: str) -> str:
        """Move a name reported by `iter_strays` out of the blob area; returns where it went."""

    # -- staged uploads ---------------------------------------------------------------
    @abc.abstractmethod
    async def start_upload(self, upload_id: str) -> None:
        """Create empty staging for a new upload."""

    @abc.abstractmethod
    async def upload_size(self, upload_id: str) -> int:
        """Bytes staged so far; raises UploadNotFound."""

    @abc.abstractmethod
    async def write_upload(self, upload_id: str, offset: int | None, chunks: AsyncIterable[bytes],
                           hasher: Hasher | None = None) -> int:
        """Append `chunks` at `offset` (which must equal the staged size, else UploadOffsetMismatch;
        None appends at the staged end, whatever it is).

        `hasher.update` sees every byte written, in order. Returns the new staged size; bytes
        received before a failure of `chunks` (a client gone mid-body) stay staged.
        """

    @abc.abstractmethod
    def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        """Stream the staged bytes (to hash them again when no running hash survived).

        Only called when the upload is being finished: a backend that cannot read unfinished
        staging (S3 parts) may seal the upload here, after which writes are refused.
        """

    @abc.abstractmethod
    async def commit_upload(self, upload_id: str, digest: Digest) -> bool:
        """Publish the staged bytes (already verified to match `digest`) durably and atomically.

        When the digest is already stored the staging is dropped instead. Returns True when
        this call stored new bytes.
        """

    @abc.abstractmethod
    async def abort_upload(self, upload_id: str) -> None:
        """Drop staging; no error when it is already gone."""

    @abc.abstractmethod
    def iter_uploads(self) -> AsyncIterator[tuple[str, float]]:
        """Every staged upload id with the time (epoch seconds) it was last written."""

    async def put_blob(self, digest: Digest, chunks: AsyncIterable[bytes],
                       before_publish: Callable[[], Awaitable[None]] | None = None) -> int:
        """Store a whole blob whose digest is known up front (a monolithic push); returns its size.

        The bytes are verified before they become visible: DigestMismatch leaves nothing stored.
        `before_publish` is awaited once the bytes are verified, right before they are published
        (the caller coordinates with garbage collection there). Backends may override this with
        something cheaper than an upload session.
        """
        upload_id = "put-" + secrets.token_urlsafe(18)
        await self.start_upload(upload_id)
        try:
            hasher = digest.hasher()
            size = await self.write_upload(upload_id, 0, chunks, hasher)
            if hasher.hexdigest() != digest.hex:
                raise DigestMismatch(str(digest))
            if before_publish is not None:
                await before_publish()
            await self.commit_upload(upload_id, digest)
        except BaseException:
            await self.abort_upload(upload_id)
            raise
        return size

    async def put_file(self, digest: Digest, path: Path) -> int:
        """Store a local file whose bytes the caller has already verified against `digest`.

        The file stays where it is (others may be reading it); a backend on the same
        filesystem may link it into place instead of copying.
        """
        return await self.put_blob(digest, _file_chunks(path))

    async def ping(self, timeout: float) -> None:
        """Raise when the backend cannot serve now (readiness); answer within about `timeout` seconds.

        StorageFull when it has no room for new blobs (below `min_free_bytes` on a local disk).

        The default looks up a digest no blob has: any answer, found or not, proves the backend works.
        """
        await self.stat(_PROBE_DIGEST)

    async def close(self) -> None:  # noqa: B027 - optional: a backend that holds nothing has nothing to do
        """Release connections and threads."""


async def _nothing() -> AsyncIterator[str]:
    return
    yield


async def _file_chunks(path: Path, chunk: int = 4 * 1024 * 1024) -> AsyncIterator[bytes]:
    fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
    try:
        offset = 0
        while data := await asyncio.to_thread(os.pread, fd, chunk, offset):
            offset += len(data)
            yield data
    finally:
        os.close(fd)

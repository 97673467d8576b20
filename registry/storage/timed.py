"""Any blob store, with the time each of its actions takes told to a recorder (the registry's
`registry_storage_action_seconds`, named as Distribution names it).

Actions are timed where the backend alone decides the time: a stat, a delete, a commit (the move and
fsync, or S3's multipart completion), opening a read up to its first bytes. Writes of an upload's body
and a monolithic push are not: their pace is the client's.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from registry.digest import Digest
from registry.storage.base import BlobStore, Hasher, StoredBlob

Recorder = Callable[[str, float], None]  # (action, seconds)


class TimedStore(BlobStore):
    def __init__(self, inner: BlobStore, record: Recorder) -> None:
        self.inner = inner
        self.record = record

    @property
    def backend_name(self) -> str:
        return self.inner.backend_name

    @property
    def min_free_bytes(self) -> int:
        return self.inner.min_free_bytes

    @min_free_bytes.setter
    def min_free_bytes(self, value: int) -> None:
        self.inner.min_free_bytes = value

    async def _timed(self, action: str, call: Awaitable[object]) -> object:
        started = time.perf_counter()
        try:
            return await call
        finally:
            self.record(action, time.perf_counter() - started)

    # -- committed blobs --------------------------------------------------------------
    async def stat(self, digest: Digest) -> int | None:
        return await self._timed("stat", self.inner.stat(digest))  # type: ignore[return-value]

    async def read(self, digest: Digest, offset: int = 0,
                   length: int | None = None) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        first = True
        try:
            async with contextlib.aclosing(self.inner.read(digest, offset, length)) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    if first:
                        self.record("read", time.perf_counter() - started)  # to the first bytes
                        first = False
                    yield chunk
        finally:
            if first:  # failed (or empty) before any bytes: still an answer from the backend
                self.record("read", time.perf_counter() - started)

    def local_path(self, digest: Digest) -> Path | None:
        return self.inner.local_path(digest)

    def redirect_url(self, digest: Digest, expires_in: int) -> str | None:
        return self.inner.redirect_url(digest, expires_in)

    async def delete(self, digest: Digest) -> bool:
        return await self._timed("delete", self.inner.delete(digest))  # type: ignore[return-value]

    def iter_stored_blobs(self) -> AsyncIterator[StoredBlob]:
        return self.inner.iter_stored_blobs()

    def iter_strays(self) -> AsyncIterator[str]:
        return self.inner.iter_strays()

    async def quarantine(self, digest: Digest, reason: str) -> str:
        return await self._timed("quarantine", self.inner.quarantine(digest, reason))  # type: ignore[return-value]

    async def quarantine_stray(self, name: str, reason: str) -> str:
        return await self._timed("quarantine", self.inner.quarantine_stray(name, reason))  # type: ignore[return-value]

    # -- staged uploads ---------------------------------------------------------------
    async def start_upload(self, upload_id: str) -> None:
        await self._timed("start_upload", self.inner.start_upload(upload_id))

    async def upload_size(self, upload_id: str) -> int:
        return await self._timed("upload_size", self.inner.upload_size(upload_id))  # type: ignore[return-value]

    async def write_upload(self, upload_id: str, offset: int | None, chunks: AsyncIterable[bytes],
                           hasher: Hasher | None = None) -> int:
        return await self.inner.write_upload(upload_id, offset, chunks, hasher)

    def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        return self.inner.read_upload(upload_id)

    async def commit_upload(self, upload_id: str, digest: Digest) -> bool:
        committed = self.inner.commit_upload(upload_id, digest)
        return await self._timed("commit_upload", committed)  # type: ignore[return-value]

    async def abort_upload(self, upload_id: str) -> None:
        await self._timed("abort_upload", self.inner.abort_upload(upload_id))

    def iter_uploads(self) -> AsyncIterator[tuple[str, float]]:
        return self.inner.iter_uploads()

    async def put_blob(self, digest: Digest, chunks: AsyncIterable[bytes],
                       before_publish: Callable[[], Awaitable[None]] | None = None) -> int:
        return await self.inner.put_blob(digest, chunks, before_publish)

    async def put_file(self, digest: Digest, path: Path) -> int:
        return await self._timed("put_file", self.inner.put_file(digest, path))  # type: ignore[return-value]

    async def ping(self, timeout: float) -> None:
        await self._timed("ping", self.inner.ping(timeout))

    async def close(self) -> None:
        await self.inner.close()

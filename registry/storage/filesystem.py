"""Filesystem BlobStore: blobs at ROOT/blobs/<alg>/<2 hex>/<hex>, uploads at ROOT/uploads/<id>.

Commits are temp file + fsync + rename + directory fsync, so a crash leaves either no blob or
the whole verified blob. Blocking calls run in the default executor so the event loop never
waits on the disk; writing a large chunk and hashing it run in two executor jobs at once,
overlapping the next network read. A full disk (ENOSPC, EDQUOT) anywhere on the write path
raises StorageFull.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import time
from pathlib import Path
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from registry.digest import ALGORITHMS, Digest, parse_digest
from registry.errors import RegistryError
from registry.storage.base import (BlobStore, Hasher, StoredBlob, UploadNotFound, UploadOffsetMismatch,
                                   full_disk_as_storage_full, require_free_space)

READ_CHUNK = 1024 * 1024
WRITEBACK_EVERY = 8 * 1024 * 1024
# From this chunk size on, hashing runs in its own thread beside the write; below it, a second
# thread hop costs more than the overlap saves.
PARALLEL_HASH_BYTES = 1024 * 1024
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def fsync_directory(path: Path) -> None:
    """Make a directory's new or removed entries durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directories(directory: Path) -> None:
    """mkdir -p, fsyncing each parent that gained an entry so the new path survives a crash."""
    if directory.is_dir():
        return
    make_directories(directory.parent)
    try:
        directory.mkdir()
    except FileExistsError:
        return
    fsync_directory(directory.parent)


def _start_writeback() -> Callable[[int, int, int], None]:
    """sync_file_range(SYNC_FILE_RANGE_WRITE): start flushing dirty pages without waiting.

    Uploads call it as they go, so the fsync at commit waits only for the tail instead of
    the whole blob. Durability is unchanged: commit still fsyncs. A no-op where unavailable.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        sync_file_range = libc.sync_file_range
        sync_file_range.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    sync_file_range_write = 2

    def start(fd: int, offset: int, length: int) -> None:
        sync_file_range(fd, offset, length, sync_file_range_write)

    return start


start_writeback = _start_writeback()


def _blob_name(algorithm: str, prefix: str, entry: os.DirEntry[str]) -> Digest | None:
    """The digest a directory entry stores, or None when it is not a well-placed blob file."""
    if not entry.is_file(follow_symlinks=False) or not entry.name.startswith(prefix):
        return None
    try:
        return parse_digest(f"{algorithm}:{entry.name}")
    except RegistryError:
        return None


class _Appender:
    """Writes an upload's chunks in order, starting writeback as it goes."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.flushed_to = offset
        self.offset = offset

    @classmethod
    def open(cls, path: Path, upload_id: str, offset: int | None) -> _Appender:
        """The staged file opened for appending, after checking it ends at `offset` (if given)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        size = os.fstat(fd).st_size
        if offset is not None and size != offset:
            os.close(fd)
            raise UploadOffsetMismatch(size, offset)
        return cls(fd, size)

    def write(self, data: bytes, hasher: Hasher | None = None) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.offset += len(data)
        if hasher is not None:
            hasher.update(data)
        if self.offset - self.flushed_to >= WRITEBACK_EVERY:
            start_writeback(self.fd, self.flushed_to, self.offset - self.flushed_to)
            self.flushed_to = self.offset

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        os.close(self.fd)


def _open_and_write(path: Path, upload_id: str, offset: int | None, chunk: bytes, hasher: Hasher | None) -> _Appender:
    """The first chunk: open, check and write in one thread job (a small upload is one chunk)."""
    appender = _Appender.open(path, upload_id, offset)
    try:
        appender.write(chunk, hasher)
    except BaseException:
        appender.close()
        raise
    return appender


def _close_when_opened(job: asyncio.Future[_Appender]) -> None:
    if not job.cancelled() and job.exception() is None:
        job.result().close()


class FilesystemStore(BlobStore):
    def __init__(self, root: Path, min_free_bytes: int = 0) -> None:
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self.blobs_dir = self.root / "blobs"
        self.uploads_dir = self.root / "uploads"
        self.quarantine_dir = self.root / "quarantine"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)

    # -- paths ------------------------------------------------------------------------
    def blob_path(self, digest: Digest) -> Path:
        return self.blobs_dir / digest.algorithm / digest.hex[:2] / digest.hex

    def _upload_path(self, upload_id: str) -> Path:
        # Upload ids come from URLs; refuse anything that could leave the uploads directory.
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise UploadNotFound(upload_id)
        return self.uploads_dir / upload_id

    async def ping(self, timeout: float) -> None:
        """Both directories are there (a lost mount leaves an empty mountpoint), a file can be made,
        and the disk has at least `min_free_bytes` free (else StorageFull)."""
        with full_disk_as_storage_full(self.uploads_dir):  # out of inodes
            await asyncio.to_thread(self._probe)
        await asyncio.to_thread(require_free_space, self.root, self.min_free_bytes)

    def _probe(self) -> None:
        for directory in (self.blobs_dir, self.uploads_dir):
            if not directory.is_dir():
                raise FileNotFoundError(f"{directory} is missing")
        try:  # an unnamed file: nothing to clean up, even after a crash
            os.close(os.open(self.uploads_dir, os.O_WRONLY | os.O_TMPFILE, 0o600))
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):  # filesystems without O_TMPFILE
                raise
            probe = self.uploads_dir / f".ready-{os.getpid()}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600))
            probe.unlink()

    # -- committed blobs --------------------------------------------------------------
    async def stat(self, digest: Digest) -> int | None:
        try:
            return (await asyncio.to_thread(os.stat, self.blob_path(digest))).st_size
        except FileNotFoundError:
            return None

    def local_path(self, digest: Digest) -> Path | None:
        return self.blob_path(digest)

    async def read(self, digest: Digest, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        async for chunk in self._read_file(self.blob_path(digest), offset, length):
            yield chunk

    async def _read_file(self, path: Path, offset: int, length: int | None) -> AsyncIterator[bytes]:
        fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
        try:
            remaining = length
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await asyncio.to_thread(os.pread, fd, size, offset)
                if not chunk:
                    break
                offset += len(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def delete(self, digest: Digest) -> bool:
        try:
            await asyncio.to_thread(os.unlink, self.blob_path(digest))
            return True
        except FileNotFoundError:
            return False

    async def iter_stored_blobs(self) -> AsyncIterator[StoredBlob]:
        for directory in await asyncio.to_thread(self._blob_dirs):
            for blob in await asyncio.to_thread(self._list_blob_dir, directory):
                yield blob

    async def iter_strays(self) -> AsyncIterator[str]:
        for directory in await asyncio.to_thread(self._blob_dirs):
            for name in await asyncio.to_thread(self._strays_in, directory):
                yield name

    def _blob_dirs(self) -> list[Path]:
        """The <alg>/<2 hex> directories; listed one at a time so a huge store never sits in memory."""
        found: list[Path] = []
        for algorithm in sorted(os.listdir(self.blobs_dir)):
            base = self.blobs_dir / algorithm
            if algorithm in ALGORITHMS and base.is_dir():
                found.extend(base / prefix for prefix in sorted(os.listdir(base)) if (base / prefix).is_dir())
        return found

    def _list_blob_dir(self, directory: Path) -> list[StoredBlob]:
        algorithm, prefix = directory.parent.name, directory.name
        found = []
        with os.scandir(directory) as entries:
            for entry in entries:
                digest = _blob_name(algorithm, prefix, entry)
                if digest is not None:
                    with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                        stat = entry.stat(follow_symlinks=False)
                        found.append(StoredBlob(digest, stat.st_size, stat.st_mtime))
        return found

    def _strays_in(self, directory: Path) -> list[str]:
        algorithm, prefix = directory.parent.name, directory.name
        strays = []
        with os.scandir(directory) as entries:
            for entry in entries:
                if _blob_name(algorithm, prefix, entry) is None:
                    strays.append(str(Path(entry.path).relative_to(self.root)))
        return strays

    async def quarantine(self, digest: Digest, reason: str) -> str:
        return await asyncio.to_thread(self._quarantine, self.blob_path(digest), f"{digest.algorithm}-{digest.hex}",
                                       reason)

    async def quarantine_stray(self, name: str, reason: str) -> str:
        """Move a stray file (a name from iter_strays) out of the blob area."""
        path = (self.root / name).resolve()
        if self.blobs_dir.resolve() not in path.parents:
            raise ValueError(f"{name} is not in the blob area")
        return await asyncio.to_thread(self._quarantine, path, path.name, reason)

    def _quarantine(self, source: Path, name: str, reason: str) -> str:
        make_directories(self.quarantine_dir)
        target = self.quarantine_dir / f"{name}.{int(time.time())}.{re.sub(r'[^a-z0-9-]', '-', reason)}"
        os.rename(source, target)
        fsync_directory(source.parent)
        fsync_directory(self.quarantine_dir)
        return str(target)

    # -- staged uploads ---------------------------------------------------------------
    async def iter_uploads(self) -> AsyncIterator[tuple[str, float]]:
        def listing() -> list[tuple[str, float]]:
            found = []
            with os.scandir(self.uploads_dir) as entries:
                for entry in entries:
                    with contextlib.suppress(FileNotFoundError):  # finished or aborted meanwhile
                        if _UPLOAD_ID.fullmatch(entry.name):
                            found.append((entry.name, entry.stat(follow_symlinks=False).st_mtime))
            return found

        for item in await asyncio.to_thread(listing):
            yield item

    async def start_upload(self, upload_id: str) -> None:
        path = self._upload_path(upload_id)
        with full_disk_as_storage_full(path):  # no inode or directory block left
            fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)

    async def upload_size(self, upload_id: str) -> int:
        try:
            return (await asyncio.to_thread(os.stat, self._upload_path(upload_id))).st_size
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None

    async def write_upload(self, upload_id: str, offset: int | None, chunks: AsyncIterable[bytes],
                           hasher: Hasher | None = None) -> int:
        path = self._upload_path(upload_id)
        with full_disk_as_storage_full(path):
            return await self._write_upload(path, upload_id, offset, chunks, hasher)

    async def _write_upload(self, path: Path, upload_id: str, offset: int | None, chunks: AsyncIterable[bytes],
                            hasher: Hasher | None) -> int:
        # The first chunk's job also opens the file and checks the offset (a small upload is one
        # chunk: one thread hop). Each job runs while the loop receives the next chunk.
        opening: asyncio.Future[_Appender] | None = None
        pending: asyncio.Future[Any] | None = None
        try:
            try:
                async for chunk in chunks:
                    if pending is not None:
                        await pending
                    beside = hasher is not None and len(chunk) >= PARALLEL_HASH_BYTES
                    in_job = None if beside else hasher
                    if opening is None:
                        opening = asyncio.ensure_future(
                            asyncio.to_thread(_open_and_write, path, upload_id, offset, chunk, in_job))
                        write: asyncio.Future[Any] = opening
                    else:
                        write = asyncio.ensure_future(asyncio.to_thread(opening.result().write, chunk, in_job))
                    if beside:  # hashing in a second thread at once (both release the GIL)
                        assert hasher is not None
                        pending = asyncio.gather(write, asyncio.to_thread(hasher.update, chunk))
                    else:
                        pending = write
            finally:
                if pending is not None:
                    await asyncio.shield(pending)
            if opening is None:  # no body: just check the upload and its offset
                opening = asyncio.ensure_future(asyncio.to_thread(_Appender.open, path, upload_id, offset))
            return (await opening).size()
        finally:
            if opening is not None:
                if opening.done():
                    _close_when_opened(opening)
                else:  # cancelled twice while the thread still opens the file
                    opening.add_done_callback(_close_when_opened)

    async def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        async for chunk in self._read_file(self._upload_path(upload_id), 0, None):
            yield chunk

    async def commit_upload(self, upload_id: str, digest: Digest) -> bool:
        final = self.blob_path(digest)
        with full_disk_as_storage_full(final):  # fsync, mkdir and rename can each need room
            return await asyncio.to_thread(self._commit, self._upload_path(upload_id), final)

    def _commit(self, staged: Path, final: Path) -> bool:
        published = self._publish(staged, final, os.rename)
        if not published:
            staged.unlink(missing_ok=True)  # the digest is stored already: drop the copy
        return published

    def _publish(self, source: Path, final: Path, place: Callable[[Path, Path], None]) -> bool:
        """Durably put `source` at `final` (by rename or link); False when `final` already exists.

        The file is fsynced before it gets its name and the directory after, so a crash leaves
        either no blob or the whole one.
        """
        if final.exists():
            return False
        fd = os.open(source, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        make_directories(final.parent)
        try:
            place(source, final)
        except FileExistsError:
            return False
        fsync_directory(final.parent)
        return True

    async def put_file(self, digest: Digest, path: Path) -> int:
        """Hard-link a verified local file into place (no copy); copy when on another filesystem."""
        final = self.blob_path(digest)
        try:
            with full_disk_as_storage_full(final):
                return await asyncio.to_thread(self._link_in, Path(path), final)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        return await super().put_file(digest, path)

    def _link_in(self, source: Path, final: Path) -> int:
        self._publish(source, final, os.link)
        return source.stat().st_size

    async def abort_upload(self, upload_id: str) -> None:
        try:
            await asyncio.to_thread(os.unlink, self._upload_path(upload_id))
        except (FileNotFoundError, UploadNotFound):
            pass
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

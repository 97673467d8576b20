"""Single-flight blob fills: one upstream GET per digest, however many clients ask at once.

The fill writes the upstream's bytes to a local temporary file while hashing them; every
client asking for the blob meanwhile reads that file as it grows (a tee through the disk, so
memory stays flat whatever the number of readers). At the end the digest is verified, the
bytes are put into the blob store and linked into the cache repository; only then is the
blob visible to later requests. A broken upstream stream or a digest mismatch fails every
reader mid-body (the connection is cut, the client sees a short read) and commits nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable

from registry.client import UpstreamError
from registry.digest import Digest
from registry.mirror.upstreams import Route

log = logging.getLogger("registry.mirror")

READ_CHUNK = 1024 * 1024

Commit = Callable[[Route, Digest, Path, int], Awaitable[None]]


class FillFailed(Exception):
    pass


class FillGone(FillFailed):
    """The fill finished and removed its file before this reader opened it: read the store."""


class Fill:
    def __init__(self, route: Route, digest: Digest, directory: Path) -> None:
        self.route = route
        self.digest = digest
        fd, name = tempfile.mkstemp(prefix=f"{digest.hex[:16]}-", suffix=".partial", dir=directory)
        os.close(fd)
        self.path = Path(name)
        self.size: int | None = None
        self.written = 0
        self.error: BaseException | None = None
        self.finished = False
        self.done = asyncio.Event()
        self.headers_known = asyncio.Event()
        self._progress = asyncio.Condition()

    async def run(self, commit: Commit) -> None:
        upstream = self.route.upstream
        hasher = hashlib.new(self.digest.algorithm)
        try:
            async with upstream.client.blob(self.route.name, str(self.digest)) as response:
                length = response.headers.get("Content-Length")
                self.size = int(length) if length is not None else None
                self.headers_known.set()
                fd = os.open(self.path, os.O_WRONLY)
                try:
                    async for chunk in response.content.iter_chunked(READ_CHUNK):
                        await asyncio.to_thread(_write_and_hash, fd, chunk, hasher)
                        self.written += len(chunk)
                        upstream.stats.bytes_from_upstream += len(chunk)
                        await self._notify()
                finally:
                    os.close(fd)
            if self.size is not None and self.written != self.size:
                raise FillFailed(f"upstream sent {self.written} of {self.size} bytes")
            if hasher.hexdigest() != self.digest.hex:
                raise FillFailed("upstream bytes do not match the digest")
            self.size = self.written
            await commit(self.route, self.digest, self.path, self.written)
        except BaseException as exc:  # noqa: BLE001 - every reader must learn the fill failed; cancellation re-raised
            self.error = exc if isinstance(exc, (UpstreamError, FillFailed)) else FillFailed(repr(exc))
            log.warning("fill of %s from %s failed: %s", self.digest, upstream.alias, self.error)
            self.headers_known.set()
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.finished = True
            self.done.set()
            await self._notify()
            try:
                self.path.unlink()  # readers that opened it keep reading their descriptor
            except FileNotFoundError:
                pass

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def read(self, offset: int, length: int) -> AsyncIterator[bytes]:
        """The blob's bytes [offset, offset+length) as they arrive; raises if the fill fails."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise FillGone("the fill ended before this reader started") from None
        try:
            position, end = offset, offset + length
            while position < end:
                if self.error is not None:
                    raise FillFailed(f"upstream fetch failed: {self.error}")
                available = min(self.written, end)
                if available > position:
                    chunk = await asyncio.to_thread(os.pread, fd, min(READ_CHUNK, available - position), position)
                    position += len(chunk)
                    yield chunk
                    continue
                if self.finished:
                    if self.error is None and position >= end:
                        break
                    raise FillFailed(f"upstream fetch failed: {self.error}")
                def moved(at: int = position) -> bool:
                    return self.written > at or self.finished
                async with self._progress:
                    await self._progress.wait_for(moved)
        finally:
            os.close(fd)


def _write_and_hash(fd: int, data: bytes, hasher: hashlib._Hash) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    hasher.update(data)


class Fills:
    """The fills under way in this process, by digest."""

    def __init__(self, directory: Path, commit: Commit) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.commit = commit
        self._running: dict[str, Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def join(self, route: Route, digest: Digest) -> Fill:
        """The running fill of this digest, or a new one; returns once the upstream answered."""
        key = str(digest)
        fill = self._running.get(key)
        if fill is None:
            route.upstream.stats.misses += 1
            fill = Fill(route, digest, self.directory)
            self._running[key] = fill
            task = asyncio.create_task(self._run(key, fill))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await fill.headers_known.wait()
        if fill.error is not None and fill.written == 0:
            raise fill.error
        return fill

    async def _run(self, key: str, fill: Fill) -> None:
        try:
            await fill.run(self.commit)
        finally:
            self._running.pop(key, None)

    def is_running(self, digest: Digest) -> bool:
        return str(digest) in self._running

    def running(self, digest: str) -> Fill | None:
        return self._running.get(digest)

    def in_progress(self) -> int:
        return len(self._running)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

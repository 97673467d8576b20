"""A lock file per blob being fetched, so that other processes on this host wait for the fetch to end
without polling: the kernel wakes them when the fetching process unlocks the file, or dies.

The database lease (registry/metadata/leases.py, MIRROR_FILL) decides who fetches; this lock is
only the signal. The fetching process takes the lock before the lease and drops it after, so on
one host "the lock is held" covers "the lease is held". A process on another host (PostgreSQL
scale-out) holds a lease but no lock here: its waiters can only check the lease now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from pathlib import Path


class HeldLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Unlink first: a process that opens the name later makes a new lock, never this one."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)  # closing drops the lock, and wakes the waiters
        self._fd = None


class FillLocks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._waits: dict[str, asyncio.Future[None]] = {}

    def _path(self, digest: str) -> Path:
        return self.directory / f"{digest.replace(':', '-')}.lock"

    def try_hold(self, digest: str) -> HeldLock | None:
        """The lock on `digest`, or None when another process on this host holds it."""
        path = self._path(digest)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(fd, path):
                    return HeldLock(path, fd)
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # locked a file its last holder had unlinked already: take the new one

    def held_elsewhere(self, digest: str) -> bool:
        """Another process on this host is fetching `digest` now. Looks without creating or removing
        the file, and without ever blocking."""
        try:
            fd = os.open(self._path(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # drops the shared lock, if taken
        return False

    async def wait_released(self, digest: str, timeout: float) -> None:
        """Return when the process holding `digest`'s lock drops it (or `timeout` passes)."""
        wait = self._waits.get(digest)
        if wait is None:
            loop = asyncio.get_running_loop()
            wait = self._waits[digest] = loop.create_future()
            wait.add_done_callback(lambda _: self._waits.pop(digest, None))
            # A daemon thread per blob waited for (its waiters share it), blocked in flock at no CPU
            # cost; daemon, so that a server stopping never waits for another process's fetch.
            threading.Thread(target=_block_until_unlocked, args=(self._path(digest), loop, wait),
                             name="fill-wait", daemon=True).start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(wait), timeout)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _block_until_unlocked(path: Path, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1  # released (and unlinked) already
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_SH)  # blocks until the holder unlocks; never held past this line
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(_resolve, done)


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)

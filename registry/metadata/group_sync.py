"""Group commit for SQLite: one fsync of the write-ahead log covers every commit before it.

SQLite's synchronous=FULL fsyncs the WAL inside each commit, while the one writer holds the
lock: concurrent pushes then queue behind each other's fsync. Instead, connections run with
synchronous=NORMAL (a commit writes its WAL frames without fsync; checkpoints still sync), and a
durable commit, after releasing the write lock, waits for an fsync of the WAL that started after
it committed. Concurrent committers share that fsync. The client still hears nothing before its
transaction is on disk.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


class GroupSync:
    def __init__(self, database: Path) -> None:
        self.database = database
        self.wal = database.with_name(database.name + "-wal")
        self._committed = 0  # commits announced so far
        self._synced = 0  # every commit up to this one is on disk
        self._lock = asyncio.Lock()
        self._directory_synced = False

    async def flush(self) -> None:
        """Return once the caller's (finished) commit is durable."""
        self._committed += 1
        ticket = self._committed
        async with self._lock:
            if self._synced >= ticket:
                return  # an fsync that began after our commit has finished
            covered = self._committed
            await asyncio.to_thread(self._fsync)
            self._synced = covered

    def _fsync(self) -> None:
        if not self._directory_synced:  # the WAL's own name, once, as SQLite's FULL mode would
            _fsync_path(self.database.parent)
            self._directory_synced = True
        for path in (self.wal, self.database):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                # No WAL: the last connection checkpointed and removed it, syncing the database.
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if path == self.wal:
                return  # the committed frames are in the WAL; the database file changes only at checkpoints


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

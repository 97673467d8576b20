"""Recency: when a repository's manifest or blob was last pulled, for retention's "keep what was pulled
lately", the admin view, and the mirror cache's least-recently-pulled eviction.

A write per GET would cost more than the GET, so pulls are kept in memory, `{(repository, digest): when}`,
and written in one transaction at a time (`durable=False`: a crash may lose a few seconds of recency).
One class for both uses: manifest pulls flush on their own every few seconds (`start()`); the mirror's
cache keeper flushes blob pulls from its own upkeep loop, before each eviction pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from registry.metadata.db import Connection, Database

log = logging.getLogger("registry.content.recency")

FLUSH_SECONDS = 5.0

Writer = Callable[[Connection, dict[tuple[str, str], float]], Awaitable[None]]


class RecencyLog:
    def __init__(self, db: Database, write: Writer, what: str, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.db = db
        self.write = write  # one statement for many rows: metadata's record_pulls or mirror_cache.touch
        self.what = what
        self.flush_seconds = flush_seconds
        self._seen: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task[None] | None = None

    def record(self, repository: str, digests: Iterable[str]) -> None:
        now = time.time()
        for digest in digests:
            self._seen[(repository, digest)] = now

    async def flush(self) -> None:
        seen, self._seen = self._seen, {}
        if not seen:
            return
        try:
            async with self.db.write(durable=False) as conn:
                await self.write(conn, seen)
        except BaseException:
            for key, at in seen.items():  # kept for the next round
                self._seen[key] = max(at, self._seen.get(key, 0.0))
            raise

    def start(self) -> None:
        """Flush every `flush_seconds` until `stop()`."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - stopping: a lost few seconds of recency is all it costs
            log.warning("could not record the last %s", self.what, exc_info=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the database may be away for a moment: the next round retries
                log.warning("could not record %s", self.what, exc_info=True)

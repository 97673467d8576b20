"""Recency: when a repository's manifest or blob was last pulled, for retention's "keep what was pulled
lately", the admin view, and the mirror cache's least-recently-pulled eviction.

A write per GET would cost more than the GET, so pulls are kept in memory, `{(repository, digest): when}`,
and written in one transaction at a time (`durable=False`: a crash may lose a few seconds of recency).
One class for both uses: manifest pulls flush on their own every few seconds (`start()`); the mirror's
cache keeper flushes blob pulls from its own upkeep loop, before each eviction pass.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from registry.metadata.db import Connection, Database, database_away
from registry.periodic import PeriodicFlush

FLUSH_SECONDS = 5.0

Writer = Callable[[Connection, dict[tuple[str, str], float]], Awaitable[None]]


class RecencyLog:
    def __init__(self, db: Database, write: Writer, what: str, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.db = db
        self.write = write  # one statement for many rows: metadata's record_pulls or mirror_cache.touch
        self.what = what
        self.flush_seconds = flush_seconds
        self._seen: dict[tuple[str, str], float] = {}
        self._periodic = PeriodicFlush(self.flush, flush_seconds, lambda: f"{len(self._seen)} {what}",
                                       database_away)

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
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

"""Recording manifest pulls (for retention's "keep what was pulled lately" and the admin view).

A write per GET would cost more than the GET, so pulls are kept in memory and written in one
transaction every few seconds; a crash loses at most those seconds of recency.
"""

from __future__ import annotations

import asyncio
import logging
import time

from registry.metadata import manifests as manifest_rows
from registry.metadata.db import Database

log = logging.getLogger("registry.content.pulls")

FLUSH_SECONDS = 5.0


class PullRecorder:
    def __init__(self, db: Database, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.db = db
        self.flush_seconds = flush_seconds
        self._pulled: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task[None] | None = None

    def record(self, repository: str, digest: str) -> None:
        self._pulled[(repository, digest)] = time.time()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.warning("could not record the last pulls", exc_info=True)

    async def flush(self) -> None:
        pulled, self._pulled = self._pulled, {}
        if not pulled:
            return
        try:
            async with self.db.write(durable=False) as conn:  # recency: a crash may lose a few seconds
                await manifest_rows.record_pulls(conn, pulled)
        except BaseException:
            for key, at in pulled.items():  # keep them for the next round
                self._pulled[key] = max(at, self._pulled.get(key, 0.0))
            raise

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception:  # the database may be away for a moment: the next round retries
                log.warning("could not record pulls", exc_info=True)

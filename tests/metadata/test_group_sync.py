"""Group commit: every durable commit waits for an fsync that began after it committed, and
concurrent commits share fsyncs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from registry.metadata.db import Database
from registry.metadata.group_sync import GroupSync


def test_each_flush_waits_for_an_fsync_that_started_after_it(tmp_path: Path, monkeypatch) -> None:
    sync = GroupSync(tmp_path / "db")
    started: list[float] = []

    def slow_fsync() -> None:
        started.append(time.monotonic())
        time.sleep(0.02)

    monkeypatch.setattr(sync, "_fsync", slow_fsync)

    async def committer() -> tuple[float, float]:
        called = time.monotonic()
        await sync.flush()
        return called, time.monotonic()

    async def scenario() -> list[tuple[float, float]]:
        return await asyncio.gather(*(committer() for _ in range(50)))

    results = asyncio.run(scenario())
    assert len(started) < 10, "concurrent commits should share fsyncs"
    for called, returned in results:
        # some fsync began after the commit and ended before the flush returned
        assert any(called <= begun and begun + 0.02 <= returned + 1e-3 for begun in started)


def test_durable_sqlite_commits_reach_the_wal_with_fsync(tmp_path: Path, monkeypatch) -> None:
    import os

    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    from registry.metadata.db import migrate
    from registry.metadata.schema import repositories

    migrate(url)
    db = Database(url)

    async def scenario() -> None:
        async with db.write() as conn:
            await conn.execute(repositories.insert().values(name="a", created_at=1.0))
        durable = [p for p in synced if p.endswith("registry.db-wal")]
        assert durable, synced
        synced.clear()
        async with db.write(durable=False) as conn:
            await conn.execute(repositories.insert().values(name="b", created_at=1.0))
        assert not [p for p in synced if p.endswith("-wal")]
        await db.close()

    asyncio.run(scenario())

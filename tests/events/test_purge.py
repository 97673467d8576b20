"""The audit purge (registry/events/audit.py Audit.purge) as the maintenance loop runs it
(registry/gc/jobs.py Maintenance.every): entries older than the retention go, except those an
enabled webhook endpoint has not been sent yet; a disabled endpoint holds nothing back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import select, update

from registry.events.audit import Audit
from registry.events.endpoints import Endpoint
from registry.events.journal import Change, Journal, Source
from registry.events.sender import Notifier
from registry.gc.jobs import Maintenance, Settings
from registry.metadata import events as rows
from registry.metadata import leases
from registry.metadata.db import Database, migrate
from registry.metadata.schema import events
from registry.storage.filesystem import FilesystemStore

DAY = 86400.0


async def _repositories(db: Database) -> list[str]:
    async with db.read() as conn:
        return list((await conn.execute(select(events.c.repository).order_by(events.c.seq))).scalars())


def test_the_maintenance_loop_purges_old_entries_an_endpoint_has_been_sent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    migrate(url)

    async def scenario() -> None:
        db = Database(url)
        journal = Journal(db, Source("test:5000", "i"))
        notifier = Notifier(db, journal, [Endpoint("ci", "http://127.0.0.1:9/"), Endpoint("off", "http://x/",
                                                                                          disabled=True)], "http")
        maintenance = Maintenance(db, FilesystemStore(tmp_path / "store"), Settings())
        try:
            async with db.write() as conn:
                await rows.ensure_endpoints(db, conn, ["ci", "off"])  # both start at the end: nothing yet
            for name in ("old-sent", "old-unsent", "new"):
                async with db.write() as conn:
                    await journal.record(conn, Change("push", "manifest", name, "sha256:" + "e" * 64))
            async with db.write() as conn:
                await conn.execute(update(events).where(events.c.repository != "new")
                                   .values(created_at=time.time() - 100 * DAY))
                first = (await rows.after(db, conn, (-1, -1), 1))[0]
                assert await leases.take(db, conn, leases.NOTIFICATION_ENDPOINT, "ci", "me", 30.0)
                assert await rows.advance(conn, "ci", "me", first.cursor, 1, time.time())  # sent: old-sent only

            audit = Audit(db)
            maintenance.every("audit purge", 0.05, lambda: audit.purge(90 * DAY, notifier.delivered_everywhere))
            maintenance.start()
            deadline = time.monotonic() + 10
            while await _repositories(db) != ["old-unsent", "new"]:
                assert time.monotonic() < deadline, await _repositories(db)
                await asyncio.sleep(0.05)
            await maintenance.stop()
            assert await audit.purge(10 * DAY, notifier.delivered_everywhere) == 0  # old-unsent waits for "ci"
            async with db.write(durable=False) as conn:
                everything = (await rows.after(db, conn, first.cursor, 10))[-1].cursor
                assert await rows.advance(conn, "ci", "me", everything, 2, time.time())
            assert await audit.purge(10 * DAY, notifier.delivered_everywhere) == 1
            assert await _repositories(db) == ["new"]
            assert await audit.purge(60.0, notifier.delivered_everywhere) == 0  # younger than a minute (seconds here)
            assert await audit.purge(1e-9, notifier.delivered_everywhere) == 1  # by age alone now
        finally:
            await maintenance.stop()
            await db.close()

    asyncio.run(scenario())

"""The one lease helper (registry/metadata/leases.py), on SQLite and PostgreSQL: one holder at a time
for each kind, a lapsed lease is taken over, renewal keeps it, release frees it (a fill's row goes)."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from registry.metadata import leases
from registry.metadata.db import Database
from registry.metadata.schema import mirror_fills, repositories, uploads



async def _with_upload(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(repositories.insert().values(id=1, name="team/app", created_at=1.0))
        await conn.execute(uploads.insert().values(id="u1", repository_id=1, size=0, created_at=1.0, updated_at=1.0))


async def _take(db: Database, kind: leases.LeaseKind, key: str, owner: str, seconds: float = 30.0,
                repository: str | None = None) -> bool:
    async with db.write(durable=False) as conn:
        return await leases.take(db, conn, kind, key, owner, seconds, repository)


async def _holder(db: Database, kind: leases.LeaseKind, key: str) -> str | None:
    async with db.read() as conn:
        return await leases.holder(conn, kind, key)


@pytest.mark.parametrize("kind", [leases.UPLOAD, leases.MAINTENANCE, leases.MIRROR_FILL], ids=lambda k: k.name)
def test_one_holder_then_takeover_after_expiry_then_release(database_url: str, kind: leases.LeaseKind) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            key = "u1" if kind is leases.UPLOAD else "gc" if kind is leases.MAINTENANCE else "sha256:" + "a" * 64
            if kind is leases.UPLOAD:
                await _with_upload(db)
            assert await _take(db, kind, key, "A", seconds=0.3)
            assert not await _take(db, kind, key, "B")
            assert await _take(db, kind, key, "A", seconds=0.3)  # the holder extends its own
            assert await _holder(db, kind, key) == "A"
            await asyncio.sleep(0.4)
            assert await _holder(db, kind, key) is None  # lapsed
            assert await _take(db, kind, key, "B")
            async with db.write(durable=False) as conn:
                await leases.release(conn, kind, key, "A")  # not A's any more: nothing happens
            assert await _holder(db, kind, key) == "B"
            async with db.write(durable=False) as conn:
                await leases.release(conn, kind, key, "B")
            assert await _holder(db, kind, key) is None
            if kind is leases.MIRROR_FILL:
                async with db.read() as conn:
                    assert (await conn.execute(select(mirror_fills))).all() == []
            assert await _take(db, kind, key, "C")
        finally:
            await db.close()

    asyncio.run(scenario())


def test_an_upload_is_leased_only_in_its_repository_and_only_if_it_exists(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            await _with_upload(db)
            assert not await _take(db, leases.UPLOAD, "u1", "A", repository="team/other")
            assert not await _take(db, leases.UPLOAD, "missing", "A", repository="team/app")
            assert await _take(db, leases.UPLOAD, "u1", "A", repository="team/app")
        finally:
            await db.close()

    asyncio.run(scenario())


def test_renewed_keeps_a_short_lease_alive_and_releases_it_after(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            assert await _take(db, leases.MAINTENANCE, "fsck", "A", seconds=0.3)
            async with leases.renewed(db, leases.MAINTENANCE, "fsck", "A", 0.3):
                started = time.monotonic()
                while time.monotonic() - started < 1.0:  # three lease lengths
                    assert not await _take(db, leases.MAINTENANCE, "fsck", "B", seconds=0.3)
                    await asyncio.sleep(0.05)
            assert await _holder(db, leases.MAINTENANCE, "fsck") is None
            assert await _take(db, leases.MAINTENANCE, "fsck", "B")
        finally:
            await db.close()

    asyncio.run(scenario())

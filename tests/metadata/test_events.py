"""Event rows (registry/metadata/events.py, registry/metadata/audit.py, registry/events/journal.py) on
SQLite and PostgreSQL: an event commits with its transaction or not at all, delivery order never lets
a cursor pass a row that commits late, only the lease holder moves a cursor, pending counts follow an
endpoint's ignores, and the purge keeps what an endpoint has not been sent."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select, update

from registry.events.journal import Change, Journal, Source
from registry.metadata import audit as audit_rows
from registry.metadata import events as rows
from registry.metadata import leases
from registry.metadata.db import Database, migrate
from registry.metadata.schema import events, repositories



def _journal(db: Database) -> Journal:
    return Journal(db, Source("test:5000", "instance-1"))


async def _all(db: Database) -> list[rows.EventRow]:
    async with db.read() as conn:
        return await rows.after(db, conn, (-1, -1), 1000)


def test_an_event_commits_with_its_change_or_not_at_all(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        journal = _journal(db)
        try:
            async with db.write() as conn:
                await journal.record(conn, Change("push", "blob", "team/app", "sha256:" + "a" * 64, size=3))
            with pytest.raises(RuntimeError):
                async with db.write() as conn:
                    await journal.record(conn, Change("push", "blob", "team/app", "sha256:" + "b" * 64, size=3))
                    raise RuntimeError("the change failed")
            journal.note(Change("pull", "blob", "team/app", "sha256:" + "a" * 64, size=3))
            assert [r.digest for r in await _all(db)] == ["sha256:" + "a" * 64]  # the note is not written yet
            await journal.flush()
            found = await _all(db)
            assert [(r.action, r.digest[-1]) for r in found] == [("push", "a"), ("pull", "a")]
            assert found[0].event_id != found[1].event_id and found[0].actor_kind == "system"
        finally:
            await db.close()

    asyncio.run(scenario())


def test_a_cursor_never_passes_an_event_whose_transaction_commits_late(postgres_url: str) -> None:
    """PostgreSQL: transaction A takes its id, then B writes an event and commits, then A writes its
    own. A reader between the two commits must not be handed B's event (a cursor moved past it would
    skip A's); once A commits, both come, A's first (its transaction is older)."""
    migrate(postgres_url)

    async def scenario() -> None:
        db = Database(postgres_url)
        journal = _journal(db)
        a_started, b_done = asyncio.Event(), asyncio.Event()

        async def transaction_a() -> None:
            async with db.write() as conn:
                await conn.execute(repositories.insert().values(name="team/a", created_at=1.0))  # takes an id
                a_started.set()
                await b_done.wait()
                await journal.record(conn, Change("push", "manifest", "team/a", "sha256:" + "a" * 64))
                seen_during_a.extend(await _all(db))

        async def transaction_b() -> None:
            await a_started.wait()
            async with db.write() as conn:
                await journal.record(conn, Change("push", "manifest", "team/b", "sha256:" + "b" * 64))
            b_done.set()

        seen_during_a: list[rows.EventRow] = []
        try:
            await asyncio.gather(transaction_a(), transaction_b())
            assert seen_during_a == []  # B committed, but A (older) still ran: B's event waits
            after = await _all(db)
            assert [r.repository for r in after] == ["team/a", "team/b"]
            assert after[0].seq > after[1].seq  # A's event took its seq later, yet comes first
        finally:
            await db.close()

    asyncio.run(scenario())


def test_only_the_lease_holder_moves_the_cursor_and_counts(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        journal = _journal(db)
        try:
            async with db.write() as conn:
                await journal.record(conn, Change("push", "blob", "team/app", "sha256:" + "a" * 64))
                await rows.ensure_endpoints(db, conn, ["ci"])  # starts at the newest event: not sent the old
            async with db.write() as conn:
                await journal.record(conn, Change("push", "blob", "team/app", "sha256:" + "b" * 64))
            async with db.read() as conn:
                start = (await rows.endpoints(conn, ["ci"]))["ci"].cursor
                fresh = await rows.after(db, conn, start, 10)
            assert [r.digest[-1] for r in fresh] == ["b"]
            async with db.write(durable=False) as conn:
                assert await leases.take(db, conn, leases.NOTIFICATION_ENDPOINT, "ci", "A", 30.0)
                assert not await leases.take(db, conn, leases.NOTIFICATION_ENDPOINT, "ci", "B", 30.0)
                assert not await rows.advance(conn, "ci", "B", fresh[-1].cursor, 1, time.time())
                assert not await rows.failed(conn, "ci", "B", time.time(), "nope")
                assert await rows.failed(conn, "ci", "A", time.time(), "answered 500")
                assert await rows.advance(conn, "ci", "A", fresh[-1].cursor, 1, time.time())
            async with db.read() as conn:
                row = (await rows.endpoints(conn, ["ci"]))["ci"]
                assert await rows.after(db, conn, row.cursor, 10) == []
            assert (row.cursor, row.sent, row.failed, row.last_error) == (fresh[-1].cursor, 1, 1, "answered 500")
        finally:
            await db.close()

    asyncio.run(scenario())


def test_pending_counts_what_the_endpoint_will_be_sent(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        journal = _journal(db)
        try:
            async with db.write() as conn:
                await rows.ensure_endpoints(db, conn, ["ci"])
                for change in (Change("push", "blob", "r", "sha256:" + "a" * 64, media_type="application/octet-stream"),
                               Change("push", "manifest", "r", "sha256:" + "b" * 64, media_type="m/x"),
                               Change("pull", "manifest", "r", "sha256:" + "b" * 64, media_type="m/x"),
                               Change("delete", "repository", "r"),
                               Change("login", "account", outcome="failed")):
                    await journal.record(conn, change)
            async with db.read() as conn:
                cursor = (await rows.endpoints(conn, ["ci"]))["ci"].cursor
                assert await rows.pending(conn, cursor, frozenset(), frozenset(), 100) == 4  # logins are audit only
                assert await rows.pending(conn, cursor, frozenset({"pull"}), frozenset({"application/octet-stream"}),
                                          100) == 2
                assert await rows.pending(conn, cursor, frozenset(), frozenset(), 3) == 3  # capped
        finally:
            await db.close()

    asyncio.run(scenario())


def test_the_purge_keeps_what_an_endpoint_has_not_been_sent(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        journal = _journal(db)
        try:
            for name in ("old1", "old2", "old3", "new"):
                async with db.write() as conn:
                    await journal.record(conn, Change("push", "manifest", name, "sha256:" + "c" * 64))
            async with db.write() as conn:
                await conn.execute(update(events).where(events.c.repository != "new").values(created_at=1000.0))
            found = await _all(db)
            delivered = found[0].cursor  # an endpoint was sent only old1
            async with db.write() as conn:
                assert await audit_rows.purge(conn, 2000.0, delivered, 1000) == 1
                assert await audit_rows.purge(conn, 2000.0, None, 1) == 1  # in batches
                assert await audit_rows.purge(conn, 2000.0, None, 1000) == 1
            async with db.read() as conn:
                left = list((await conn.execute(select(events.c.repository))).scalars())
            assert left == ["new"]
        finally:
            await db.close()

    asyncio.run(scenario())


def test_audit_pages_filter_and_go_back_in_time(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        journal = _journal(db)
        try:
            for index in range(5):
                journal.note(Change("push" if index % 2 else "pull", "manifest", f"team/{index % 2}",
                                    "sha256:" + "d" * 64))
            await journal.flush()
            async with db.read() as conn:
                first = await audit_rows.page(conn, audit_rows.Filters(), 2, None)
                second = await audit_rows.page(conn, audit_rows.Filters(), 2, (first[-1].created_at, first[-1].seq))
                pulls = await audit_rows.page(conn, audit_rows.Filters(action="pull"), 10, None)
                team1 = await audit_rows.page(conn, audit_rows.Filters(repository="team/1"), 10, None)
                none = await audit_rows.page(conn, audit_rows.Filters(since=time.time() + 60), 10, None)
            seqs = [r.seq for r in first + second]
            assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4
            assert len(pulls) == 3 and {r.action for r in pulls} == {"pull"}
            assert len(team1) == 2 and none == []
        finally:
            await db.close()

    asyncio.run(scenario())

"""Leases in the database: one holder at a time across processes, and a dead holder cannot block the
others for longer than the lease's length.

Five things are leased: an upload (one writer per session), a maintenance job (one gc, retention
or fsck run at a time), a mirror fill (one fetch of a blob from its upstream), a webhook
endpoint (one process sends to it, in order) and a replication rule (one run at a time; its
LeaseKind is in metadata/replication.py, beside its table). Each is a row
with an owner and an expiry; `LeaseKind` says which table and columns, and whether releasing
deletes the row (a fill's row is only its lease) or clears the owner (an upload's and a job's rows
hold more). `renewed()` is the one renewal loop: it extends the lease every third of its length
while its block runs, and releases it after.

Leases are written with `durable=False`: a crash of the database host ends its holders' work too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Column, Table, and_, bindparam, delete, or_, select, update

from registry.metadata.db import Connection, Database
from registry.metadata.schema import event_endpoints, maintenance, mirror_fills, repositories, uploads

log = logging.getLogger("registry.leases")


class LeaseKind:
    """Where one kind of lease lives. `new_row`: the row to create when none exists (None: the row
    must exist already, as an upload's does); `release_deletes`: releasing removes the row."""

    def __init__(self, name: str, table: Table, key: Column[Any], owner: Column[Any], expires: Column[Any],
                 new_row: Callable[[str], dict[str, Any]] | None = None, release_deletes: bool = False) -> None:
        self.name = name
        self.table = table
        self.key = key
        self.owner = owner
        self.expires = expires
        self.new_row = new_row
        self.release_deletes = release_deletes
        # Parameter names differ from every leased column's (SQLAlchemy refuses a clash in an UPDATE).
        free = or_(owner.is_(None), owner == bindparam("claimant"), expires < bindparam("now"))
        self.take_statement = (update(table).where(key == bindparam("key"), free)
                               .values({owner: bindparam("claimant"), expires: bindparam("until")}))
        mine = and_(key == bindparam("key"), owner == bindparam("claimant"))
        self.release_statement = (delete(table).where(mine) if release_deletes
                                  else update(table).where(mine).values({owner: None, expires: None}))
        self.holder_statement = select(owner).where(key == bindparam("key"), expires >= bindparam("now"))


UPLOAD = LeaseKind("upload", uploads, uploads.c.id, uploads.c.lease_owner, uploads.c.lease_expires)
MAINTENANCE = LeaseKind("maintenance", maintenance, maintenance.c.kind, maintenance.c.owner, maintenance.c.expires_at,
                        new_row=lambda kind: {"kind": kind, "owner": None, "expires_at": None, "last_report": None,
                                              "last_finished_at": None})
# A fill's row is created holding its lease (the owner column is NOT NULL): see take().
MIRROR_FILL = LeaseKind("mirror fill", mirror_fills, mirror_fills.c.digest, mirror_fills.c.owner,
                        mirror_fills.c.expires_at, release_deletes=True)
# An endpoint's row (its cursor and counters) is made at start-up: registry/metadata/events.py ensure_endpoints.
NOTIFICATION_ENDPOINT = LeaseKind("notification endpoint", event_endpoints, event_endpoints.c.name,
                                  event_endpoints.c.owner, event_endpoints.c.expires_at)

# An upload is leased only within the repository the request names: another's session is unknown to it.
_IN_REPOSITORY = uploads.c.repository_id == (select(repositories.c.id)
                                             .where(repositories.c.name == bindparam("repository"))
                                             .scalar_subquery())
_TAKE_UPLOAD_IN_REPOSITORY = UPLOAD.take_statement.where(_IN_REPOSITORY)


async def take(db: Database, conn: Connection, kind: LeaseKind, key: str, owner: str, seconds: float,
               repository: str | None = None) -> bool:
    """Claim or extend the lease on `key`; False while another owner holds a live one, or when the
    row does not exist and the kind makes none (an unknown upload, or, given `repository`, one of
    another repository)."""
    now = time.time()
    params = {"key": key, "claimant": owner, "now": now, "until": now + seconds}
    if kind.release_deletes:  # the row is the lease: an expired one goes, then a new one is ours unless taken
        await conn.execute(delete(kind.table).where(kind.key == key, kind.expires < now))
        await conn.execute(db.insert_ignore(kind.table), {kind.key.name: key, kind.owner.name: owner,
                                                          kind.expires.name: now + seconds})
    elif kind.new_row is not None:
        await conn.execute(db.insert_ignore(kind.table), kind.new_row(key))
    if repository is not None:
        assert kind is UPLOAD
        return (await conn.execute(_TAKE_UPLOAD_IN_REPOSITORY, {**params, "repository": repository})).rowcount == 1
    return (await conn.execute(kind.take_statement, params)).rowcount == 1


async def release(conn: Connection, kind: LeaseKind, key: str, owner: str) -> None:
    await conn.execute(kind.release_statement, {"key": key, "claimant": owner})


async def holder(conn: Connection, kind: LeaseKind, key: str) -> str | None:
    """Who holds a live lease on `key`, if anyone."""
    return (await conn.execute(kind.holder_statement, {"key": key, "now": time.time()})).scalar()


@contextlib.asynccontextmanager
async def renewed(db: Database, kind: LeaseKind, key: str, owner: str, seconds: float,
                  release_after: Callable[[], bool] = lambda: True) -> AsyncIterator[None]:
    """Keep a lease already taken alive while the block runs; release it after, unless
    `release_after()` says the row is gone already (an upload finished and deleted)."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(seconds / 3)
            try:
                async with db.write(durable=False) as conn:
                    await take(db, conn, kind, key, owner, seconds)
            except Exception:  # noqa: BLE001 - the next renewal, or the holder's own end, will tell
                log.warning("could not renew the %s lease on %s", kind.name, key, exc_info=True)

    renewal = asyncio.create_task(renew())
    try:
        yield
    finally:
        renewal.cancel()
        if release_after():
            async with db.write(durable=False) as conn:
                await release(conn, kind, key, owner)


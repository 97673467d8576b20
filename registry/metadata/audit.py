"""The audit trail's reads over the `events` table: newest first by when each happened (pulls and
logins are written in batches, after a push that followed them), filtered, a page at a time (keyset
on (created_at, seq)), and the purge of entries older than the retention."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, tuple_

from registry.metadata.db import Connection
from registry.metadata.events import COLUMNS, Cursor, EventRow, event_row
from registry.metadata.schema import events


@dataclass(frozen=True, slots=True)
class Filters:
    repository: str | None = None
    actor: str | None = None
    action: str | None = None
    since: float | None = None  # created_at >= since
    until: float | None = None  # created_at < until


Position = tuple[float, int]  # (created_at, seq) of an entry: where a page ends


async def page(conn: Connection, filters: Filters, limit: int, before: Position | None) -> list[EventRow]:
    """Up to `limit` entries matching `filters`, newest first, after the entry at `before`."""
    query = select(*COLUMNS).order_by(events.c.created_at.desc(), events.c.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(tuple_(events.c.created_at, events.c.seq) < tuple_(*before))
    if filters.repository is not None:
        query = query.where(events.c.repository == filters.repository)
    if filters.actor is not None:
        query = query.where(events.c.actor == filters.actor)
    if filters.action is not None:
        query = query.where(events.c.action == filters.action)
    if filters.since is not None:
        query = query.where(events.c.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(events.c.created_at < filters.until)
    return [event_row(r) for r in await conn.execute(query)]


async def purge(conn: Connection, older_than: float, delivered: Cursor | None, limit: int) -> int:
    """Delete up to `limit` entries written before `older_than`, only those at or before `delivered`
    (the cursor every webhook endpoint has passed; None: no endpoint waits). Returns how many went."""
    doomed = select(events.c.seq).where(events.c.created_at < older_than).order_by(events.c.seq).limit(limit)
    if delivered is not None:
        doomed = doomed.where(tuple_(events.c.txid, events.c.seq) <= tuple_(*delivered))
    result = await conn.execute(delete(events).where(events.c.seq.in_(doomed)))
    return result.rowcount

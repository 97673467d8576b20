"""Event rows (the `events` table) and webhook endpoints' rows: writing events, reading them in
delivery order after an endpoint's cursor, moving the cursor, and the endpoints' counters.

Delivery order is (txid, seq). On PostgreSQL `txid` is the writing transaction's id and a reader
takes only rows whose transaction is older than every transaction still running (the horizon): a
transaction that took its `seq` earlier but commits later is still running, so its rows are above
the horizon until they are visible, and a cursor can never pass them. On SQLite writers take turns
(one write transaction at a time), so `seq` alone is commit order and `txid` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Text, and_, bindparam, cast, func, insert, or_, select, tuple_, update

from registry.metadata.db import Connection, Database
from registry.metadata.schema import event_endpoints, events

NOTIFIED_ACTIONS = ("push", "pull", "mount", "delete")  # what webhook endpoints get; the rest is audit only
Cursor = tuple[int, int]  # (txid, seq)
END_OF_TIME = 2 ** 62  # SQLite's horizon: every row is final once visible

_TXID = cast(cast(func.pg_current_xact_id(), Text), BigInteger)
_HORIZON = select(cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger))


_INSERTS = {True: insert(events).values(txid=0), False: insert(events).values(txid=_TXID)}  # by is_sqlite


def insert_statement(db: Database) -> Any:
    """INSERT of one or many event rows (every column but seq and txid as parameters)."""
    return _INSERTS[db.is_sqlite]


async def write(db: Database, conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert_statement(db), rows if len(rows) > 1 else rows[0])


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    txid: int
    event_id: str
    created_at: float
    action: str
    target_type: str
    repository: str | None
    digest: str | None
    tag: str | None
    media_type: str | None
    size: int | None
    from_repository: str | None
    actor: str
    actor_kind: str
    address: str | None
    outcome: str
    detail: str | None
    request_id: str | None
    method: str | None
    host: str | None
    user_agent: str | None
    source_addr: str | None
    source_instance: str | None

    @property
    def cursor(self) -> Cursor:
        return (self.txid, self.seq)


COLUMNS = tuple(events.c[name] for name in EventRow.__dataclass_fields__)


def event_row(row: Any) -> EventRow:
    return EventRow(*row)


_AFTER = (select(*COLUMNS).where(tuple_(events.c.txid, events.c.seq) > tuple_(bindparam("txid"), bindparam("seq")),
                                 events.c.txid < bindparam("horizon"))
          .order_by(events.c.txid, events.c.seq).limit(bindparam("limit")))


async def horizon(db: Database, conn: Connection) -> int:
    """Rows with a txid below this are final: no transaction that could still add one is running."""
    if db.is_sqlite:
        return END_OF_TIME
    return int((await conn.execute(_HORIZON)).scalar_one())


async def after(db: Database, conn: Connection, cursor: Cursor, limit: int) -> list[EventRow]:
    """The next rows after `cursor` in delivery order, final ones only."""
    params = {"txid": cursor[0], "seq": cursor[1], "horizon": await horizon(db, conn), "limit": limit}
    return [event_row(r) for r in await conn.execute(_AFTER, params)]


_LAST = select(events.c.txid, events.c.seq).order_by(events.c.txid.desc(), events.c.seq.desc()).limit(1)


async def last_cursor(conn: Connection) -> Cursor:
    row = (await conn.execute(_LAST)).first()
    return (row.txid, row.seq) if row else (0, 0)


# -- endpoints --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EndpointRow:
    name: str
    owner: str | None
    expires_at: float | None
    cursor: Cursor
    sent: int
    failed: int
    last_success_at: float | None
    last_failure_at: float | None
    last_error: str | None


async def ensure_endpoints(db: Database, conn: Connection, names: list[str]) -> None:
    """A row for each endpoint not known yet, its cursor at the newest event: an endpoint added to
    the configuration gets what happens from now on, not the registry's whole history."""
    if not names:
        return
    start = await last_cursor(conn)
    await conn.execute(db.insert_ignore(event_endpoints), [
        {"name": name, "owner": None, "expires_at": None, "cursor_txid": start[0], "cursor_seq": start[1],
         "sent": 0, "failed": 0, "last_success_at": None, "last_failure_at": None, "last_error": None}
        for name in names])


async def endpoints(conn: Connection, names: list[str]) -> dict[str, EndpointRow]:
    if not names:
        return {}
    rows = await conn.execute(select(event_endpoints).where(event_endpoints.c.name.in_(names)))
    return {r.name: EndpointRow(r.name, r.owner, r.expires_at, (r.cursor_txid, r.cursor_seq), r.sent, r.failed,
                                r.last_success_at, r.last_failure_at, r.last_error) for r in rows}


_MINE = (event_endpoints.c.name == bindparam("endpoint")) & (event_endpoints.c.owner == bindparam("claimant"))
_ADVANCE = (update(event_endpoints).where(_MINE)
            .values(cursor_txid=bindparam("new_txid"), cursor_seq=bindparam("new_seq"),
                    sent=event_endpoints.c.sent + bindparam("delivered"),
                    last_success_at=func.coalesce(bindparam("success_at"), event_endpoints.c.last_success_at)))
_FAILED = (update(event_endpoints).where(_MINE)
           .values(failed=event_endpoints.c.failed + 1, last_failure_at=bindparam("at"), last_error=bindparam("error")))


async def advance(conn: Connection, name: str, owner: str, cursor: Cursor, delivered: int,
                  success_at: float | None) -> bool:
    """Move the endpoint's cursor past what was delivered (or skipped); False when `owner` no longer
    holds its lease (another process sends now, and moves the cursor itself)."""
    result = await conn.execute(_ADVANCE, {"endpoint": name, "claimant": owner, "new_txid": cursor[0],
                                           "new_seq": cursor[1], "delivered": delivered, "success_at": success_at})
    return result.rowcount == 1


async def failed(conn: Connection, name: str, owner: str, at: float, error: str) -> bool:
    result = await conn.execute(_FAILED, {"endpoint": name, "claimant": owner, "at": at, "error": error[:500]})
    return result.rowcount == 1


def _notified(ignored_actions: frozenset[str], ignored_media_types: frozenset[str]) -> Any:
    actions = [a for a in NOTIFIED_ACTIONS if a not in ignored_actions]
    if not ignored_media_types:
        return events.c.action.in_(actions)
    return and_(events.c.action.in_(actions),
                or_(events.c.media_type.is_(None), events.c.media_type.not_in(sorted(ignored_media_types))))


async def pending(conn: Connection, cursor: Cursor, ignored_actions: frozenset[str],
                  ignored_media_types: frozenset[str], cap: int) -> int:
    """Events after `cursor` the endpoint will be sent, counted up to `cap` (a far-behind endpoint
    costs one bounded scan)."""
    inner = (select(events.c.seq)
             .where(tuple_(events.c.txid, events.c.seq) > tuple_(bindparam("txid"), bindparam("seq")),
                    _notified(ignored_actions, ignored_media_types))
             .limit(cap).subquery())
    return int((await conn.execute(select(func.count()).select_from(inner),
                                   {"txid": cursor[0], "seq": cursor[1]})).scalar_one())

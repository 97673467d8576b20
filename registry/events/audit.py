"""The audit trail: the journal's rows as entries people read (who, what, when, the outcome), a page
at a time, exported whole, and purged once older than the retention.

Every push, pull, mount and delete is an entry, and every login (success and failure), policy denial
and admin action. Pulls are recorded one by one like the rest (a manifest and each blob fetched),
batched in memory for up to a second before they are written (registry/events/journal.py).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from registry.events.envelope import timestamp
from registry.metadata import audit as audit_rows
from registry.metadata.audit import Filters, Position
from registry.metadata.db import Database
from registry.metadata.events import Cursor, EventRow

log = logging.getLogger("registry.events")

ACTIONS = ("push", "pull", "mount", "delete", "login", "denied", "admin")
EXPORT_PAGE = 1000
PURGE_BATCH = 5000
CSV_COLUMNS = ("seq", "timestamp", "action", "outcome", "actor", "actor_kind", "address", "repository", "reference",
               "digest", "tag", "media_type", "size", "target", "from_repository", "detail", "request_id", "method",
               "user_agent")

__all__ = ["ACTIONS", "Audit", "Filters", "Position", "entry"]


def entry(row: EventRow) -> dict[str, Any]:
    """One audit entry as the admin API shows it."""
    detail = None
    if row.detail:
        try:
            detail = json.loads(row.detail)
        except ValueError:
            detail = {"text": row.detail}
    return {
        "seq": row.seq, "id": row.event_id, "time": row.created_at, "timestamp": timestamp(row.created_at),
        "action": row.action, "outcome": row.outcome,
        "actor": {"name": row.actor, "kind": row.actor_kind, "address": row.address},
        "target": row.target_type, "repository": row.repository, "reference": row.tag or row.digest,
        "digest": row.digest, "tag": row.tag, "media_type": row.media_type, "size": row.size,
        "from_repository": row.from_repository, "detail": detail,
        "request": {"id": row.request_id, "method": row.method, "host": row.host, "user_agent": row.user_agent},
    }


class Audit:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def page(self, filters: Filters, limit: int,
                   before: Position | None) -> tuple[list[dict[str, Any]], Position | None]:
        """Entries newest first; where the next page starts (None: this is the last)."""
        async with self.db.read() as conn:
            found = await audit_rows.page(conn, filters, limit + 1, before)
        more = len(found) > limit
        found = found[:limit]
        return [entry(row) for row in found], (found[-1].created_at, found[-1].seq) if more and found else None

    async def rows(self, filters: Filters) -> AsyncIterator[EventRow]:
        """Every matching entry, newest first, read a page at a time (an export of any size)."""
        before: Position | None = None
        while True:
            async with self.db.read() as conn:
                found = await audit_rows.page(conn, filters, EXPORT_PAGE, before)
            for row in found:
                yield row
            if len(found) < EXPORT_PAGE:
                return
            before = (found[-1].created_at, found[-1].seq)

    async def purge(self, retention_seconds: float, delivered: Callable[[], Awaitable[Cursor | None]]) -> int:
        """Delete entries older than the retention, in batches, keeping those a webhook endpoint has
        not been sent yet (`delivered`: the cursor every endpoint has passed)."""
        older_than = time.time() - retention_seconds
        bound = await delivered()
        total = 0
        while True:
            async with self.db.write(durable=False) as conn:
                deleted = await audit_rows.purge(conn, older_than, bound, PURGE_BATCH)
            total += deleted
            if deleted < PURGE_BATCH:
                break
        if total:
            log.info("audit: purged %d entries older than %.0f days", total, retention_seconds / 86400)
        return total


def csv_header() -> str:
    return _csv_line(CSV_COLUMNS)


def csv_line(row: EventRow) -> str:
    item = entry(row)
    values = {**item, "actor": row.actor, "actor_kind": row.actor_kind, "address": row.address,
              "detail": row.detail or "", "request_id": row.request_id, "method": row.method,
              "user_agent": row.user_agent}
    return _csv_line(tuple(_cell(values.get(column)) for column in CSV_COLUMNS))


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula (=, +, -, @ first) gets a leading quote:
    names in failed logins and user agents come from anyone."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_line(values: tuple[str, ...]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()

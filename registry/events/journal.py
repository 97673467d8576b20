"""The journal: every event written as a row of `events`, the one record the webhook sender and the
audit trail both read.

Two ways in:
- `record(conn, change)`: inside the caller's write transaction (a push, a mount, a delete), one
  INSERT, so the event commits with the change or not at all;
- `note(change)`: what changes nothing (a pull, a login, a denial, an admin action) is kept in
  memory and written in one transaction a second (`durable=False`, as pull recency is). A crash of
  the process loses at most the last second of these; the registry's state is not at stake.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from registry.events.context import RequestInfo, current
from registry.metadata import events as rows
from registry.metadata.db import Connection, Database, database_away
from registry.periodic import PeriodicFlush

log = logging.getLogger("registry.events")

FLUSH_SECONDS = 1.0
FLUSH_AT = 2000  # noted events that trigger a write before the second is up
MAX_BUFFERED = 200_000  # while the database is away; beyond it new notes are dropped, counted and logged
BLOB_MEDIA_TYPE = "application/octet-stream"  # what CNCF Distribution's events give blobs


@dataclass(frozen=True, slots=True)
class Change:
    """What happened to what. `target_type`: blob, manifest, repository, account or admin."""

    action: str  # push, pull, mount, delete (sent to webhooks); login, denied, admin (audit only)
    target_type: str
    repository: str | None = None
    digest: str | None = None
    tag: str | None = None
    media_type: str | None = None
    size: int | None = None
    from_repository: str | None = None
    outcome: str = "ok"  # ok, failed, denied
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """The registry process that writes events (Distribution's `source`)."""

    addr: str
    instance: str


class Journal:
    def __init__(self, db: Database, source: Source, flush_seconds: float = FLUSH_SECONDS,
                 max_buffered: int = MAX_BUFFERED) -> None:
        self.db = db
        self.source = source
        self.flush_seconds = flush_seconds
        self.max_buffered = max_buffered
        self.dropped = 0
        self.listeners: list[Callable[[], None]] = []  # told when events may have been written (the sender)
        self._buffer: list[dict[str, Any]] = []
        self._periodic = PeriodicFlush(self.flush, flush_seconds, lambda: f"{len(self._buffer)} events",
                                       database_away)

    # -- writing ----------------------------------------------------------------------------
    async def record(self, conn: Connection, change: Change) -> None:
        """Write the event inside the caller's transaction: it commits with the change."""
        await rows.write(self.db, conn, [self.row(change, current())])
        self._tell()

    def note(self, change: Change, request: RequestInfo | None = None) -> None:
        """Keep an event to be written within the second (`request`: when not the current one)."""
        if len(self._buffer) >= self.max_buffered:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 10_000 == 0:
                log.error("%d events dropped: the database has not taken the %d waiting", self.dropped,
                          len(self._buffer))
            return
        self._buffer.append(self.row(change, request or current()))
        if len(self._buffer) >= FLUSH_AT:
            self._periodic.wake()

    def row(self, change: Change, request: RequestInfo | None) -> dict[str, Any]:
        detail = json.dumps(change.detail, separators=(",", ":"), default=str) if change.detail else None
        who: dict[str, Any] = {"actor": "", "actor_kind": "system", "address": None, "request_id": None,
                               "method": None, "host": None, "user_agent": None}
        if request is not None:
            who = {"actor": _text(request.actor, 255), "actor_kind": request.actor_kind,
                   "address": _text(request.address, 64), "request_id": _text(request.id, 64),
                   "method": _text(request.method, 16), "host": _text(request.host, 255),
                   "user_agent": _text(request.user_agent, 255)}
        return {
            "event_id": str(uuid.uuid4()), "created_at": time.time(), "action": change.action,
            "target_type": change.target_type, "repository": _text(change.repository, 255),
            "digest": _text(change.digest, 150), "tag": _text(change.tag, 128),
            "media_type": _text(change.media_type, 255), "size": change.size,
            "from_repository": _text(change.from_repository, 255), "outcome": change.outcome,
            "detail": _text(detail, 4000), "source_addr": self.source.addr, "source_instance": self.source.instance,
            **who,
        }

    # -- the batches --------------------------------------------------------------------------
    async def flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            async with self.db.write(durable=False) as conn:
                await rows.write(self.db, conn, batch)
        except BaseException:
            self._buffer[:0] = batch  # kept, in order, for the next round
            raise
        self._tell()

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def _tell(self) -> None:
        for listener in self.listeners:
            listener()


def _text(value: str | None, limit: int) -> str | None:
    """Client-supplied text as a column takes it: cut to the column's length; NUL (PostgreSQL refuses
    it in text) and lone surrogates (not UTF-8) replaced."""
    if value is None:
        return None
    value = value[:limit]
    if value.isascii() and "\x00" not in value:
        return value
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")

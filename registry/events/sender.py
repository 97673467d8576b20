"""Webhook delivery: each endpoint is sent the events after its cursor, in order, at least once.

Per endpoint, one process of a scaled-out set sends at a time: the one holding the endpoint's lease
(registry/metadata/leases.py NOTIFICATION_ENDPOINT), which any process takes over once its holder
stops renewing it. The holder reads the next events in delivery order (registry/metadata/events.py),
posts the ones the endpoint wants in one envelope, and moves the cursor in the database only after a
2xx; a failure is retried with the same events, so a crash or a kill between the post and the cursor
repeats them with the same ids. An event the endpoint ignores moves the cursor without a post.

A 3xx is a failure here (Distribution counts it as delivered after following it): a redirect that
is not followed has delivered nothing, and the error names where it points.

Retries: while fewer than `threshold` attempts in a row failed, the next comes after 100 ms times
the count (capped at `backoff`); from then on after `backoff`, doubling with each further failure
up to 5 minutes (or `backoff`, if longer); never sooner than 100 ms.

The sender learns of new events at once when its own process wrote them (Journal.listeners); those
another process wrote are found by looking every POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from registry.events import envelope
from registry.events.context import RequestInfo
from registry.events.endpoints import Endpoint
from registry.events.journal import Journal
from registry.metadata import events as rows
from registry.metadata import leases
from registry.metadata.db import Database, database_away

log = logging.getLogger("registry.events")

LEASE_SECONDS = 15.0
BATCH = 100  # events read at once; those wanted go in one envelope
POLL_SECONDS = 1.0
PENDING_CAP = 100_000
MAX_BACKOFF = 300.0
MIN_RETRY = 0.1
RESPONSE_CAP = 64 * 1024  # of a receiver's answer body, read and dropped


@dataclass(frozen=True, slots=True)
class Delivery:
    delivered: bool
    status: int | None
    error: str | None
    seconds: float


class Notifier:
    def __init__(self, db: Database, journal: Journal, endpoints: list[Endpoint], scheme: str,
                 poll_seconds: float = POLL_SECONDS, lease_seconds: float = LEASE_SECONDS) -> None:
        self.db = db
        self.journal = journal
        self.endpoints = {endpoint.name: endpoint for endpoint in endpoints}
        self.scheme = scheme
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self._wake = {name: asyncio.Event() for name in self.endpoints}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        journal.listeners.append(self._written)

    # -- life -------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.endpoints:
            return
        async with self.db.write() as conn:
            await rows.ensure_endpoints(self.db, conn, list(self.endpoints))
        for endpoint in self.endpoints.values():
            log.info("notifications: endpoint %s (%s), timeout %gs, threshold %d, backoff %gs%s", endpoint.name,
                     endpoint.shown_url, endpoint.timeout, endpoint.threshold, endpoint.backoff,
                     " (disabled)" if endpoint.disabled else "")
            if not endpoint.disabled:
                self._tasks.append(asyncio.create_task(self._run(endpoint)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _written(self) -> None:
        for wake in self._wake.values():
            wake.set()

    # -- delivery ---------------------------------------------------------------------------
    async def _run(self, endpoint: Endpoint) -> None:
        """Hold the endpoint's lease (waiting while another process holds it) and deliver. The owner
        names this process (host:port/random), so the admin API can say which one sends."""
        owner = f"{self.journal.source.addr[:48]}/{secrets.token_hex(6)}"
        while True:
            try:
                async with self.db.write(durable=False) as conn:
                    mine = await leases.take(self.db, conn, leases.NOTIFICATION_ENDPOINT, endpoint.name, owner,
                                             self.lease_seconds)
                if not mine:
                    await asyncio.sleep(self.lease_seconds / 3)
                    continue
                async with leases.renewed(self.db, leases.NOTIFICATION_ENDPOINT, endpoint.name, owner,
                                          self.lease_seconds):
                    await self._deliver(endpoint, owner)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database may be away: try again, never stop sending
                log.warning("notifications: endpoint %s: delivery interrupted (%r); resuming", endpoint.name, exc,
                            exc_info=not database_away(exc))
                await asyncio.sleep(self.poll_seconds)

    async def _deliver(self, endpoint: Endpoint, owner: str) -> None:
        """Send until the lease is lost (another process moved on)."""
        async with self.db.read() as conn:
            cursor = (await rows.endpoints(conn, [endpoint.name]))[endpoint.name].cursor
        wake = self._wake[endpoint.name]
        failures = 0
        while True:
            wake.clear()
            async with self.db.read() as conn:
                batch = await rows.after(self.db, conn, cursor, BATCH)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await wake.wait()
                if wake.is_set():
                    await asyncio.sleep(0.05)  # told before the writer's commit: let it land
                continue
            wanted = [row for row in batch if endpoint.wants(row.action, row.media_type)]
            if wanted:
                result = await self.post(endpoint, envelope.envelope([envelope.event(r, self.scheme) for r in wanted]))
                if not result.delivered:
                    failures += 1
                    async with self.db.write(durable=False) as conn:
                        if not await rows.failed(conn, endpoint.name, owner, time.time(), result.error or "failed"):
                            return
                    delay = self._delay(endpoint, failures)
                    if failures == 1 or failures % endpoint.threshold == 0:
                        log.warning("notifications: endpoint %s: %s; %d failures in a row, retrying in %.1fs",
                                    endpoint.name, result.error, failures, delay)
                    await asyncio.sleep(delay)
                    continue
                if failures:
                    log.info("notifications: endpoint %s delivers again after %d failures", endpoint.name, failures)
                failures = 0
            async with self.db.write(durable=False) as conn:
                if not await rows.advance(conn, endpoint.name, owner, batch[-1].cursor, len(wanted),
                                          time.time() if wanted else None):
                    return
            cursor = batch[-1].cursor

    @staticmethod
    def _delay(endpoint: Endpoint, failures: int) -> float:
        """How long to wait before the next attempt; never less than MIN_RETRY (a backoff of 0 must
        not turn a refusing receiver into a busy loop)."""
        if failures < endpoint.threshold:
            return max(MIN_RETRY, min(0.1 * failures, endpoint.backoff))
        return max(MIN_RETRY, min(endpoint.backoff * 2 ** min(failures - endpoint.threshold, 30),
                                  max(endpoint.backoff, MAX_BACKOFF)))

    async def post(self, endpoint: Endpoint, body: bytes) -> Delivery:
        """POST one envelope; delivered on a 2xx answer within the endpoint's timeout."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = [*endpoint.headers, ("Content-Type", envelope.MEDIA_TYPE)]
        started = time.monotonic()
        try:
            async with asyncio.timeout(endpoint.timeout):
                async with self._session.post(endpoint.url, data=body, headers=headers,
                                              allow_redirects=False) as response:
                    status, location = response.status, response.headers.get("Location", "")
                    await _drain(response)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = f"no answer within {endpoint.timeout:g}s" if isinstance(exc, TimeoutError) else \
                f"cannot post: {exc.__class__.__name__}: {exc}"
            return Delivery(False, None, error, time.monotonic() - started)
        seconds = time.monotonic() - started
        if 200 <= status < 300:
            return Delivery(True, status, None, seconds)
        if 300 <= status < 400:
            return Delivery(False, status, f"answered {status}, a redirect to {location[:200]!r}: configure that "
                                           "URL (redirects are not followed)", seconds)
        return Delivery(False, status, f"answered {status}", seconds)

    # -- for the admin API and metrics ------------------------------------------------------------
    async def send_test(self, name: str, request: RequestInfo | None) -> dict[str, Any] | None:
        """Post one event with action `test` to the endpoint now, outside the queue; None for an
        unknown endpoint."""
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return None
        event_id = str(uuid.uuid4())
        source = self.journal.source
        event = {"id": event_id, "timestamp": envelope.timestamp(time.time()), "action": "test", "target": {},
                 "request": {"id": request.id if request else "", "addr": request.address if request else "",
                             "host": request.host if request else "", "method": request.method if request else "",
                             "useragent": request.user_agent if request else ""},
                 "actor": {"name": request.actor} if request and request.actor else {},
                 "source": {"addr": source.addr, "instanceID": source.instance}}
        result = await self.post(endpoint, envelope.envelope([event]))
        return {"endpoint": name, "event_id": event_id, "delivered": result.delivered, "status": result.status,
                "error": result.error, "seconds": round(result.seconds, 4)}

    async def status(self) -> list[dict[str, Any]]:
        """Each endpoint's counters from the database (the same whichever process sends)."""
        now = time.time()
        names = list(self.endpoints)
        result = []
        async with self.db.read() as conn:
            found = await rows.endpoints(conn, names)
            for endpoint in self.endpoints.values():
                row = found.get(endpoint.name)
                pending = 0 if row is None else await rows.pending(
                    conn, row.cursor, endpoint.ignored_actions, endpoint.ignored_media_types, PENDING_CAP)
                result.append({
                    "name": endpoint.name, "url": endpoint.shown_url, "disabled": endpoint.disabled,
                    "sent": row.sent if row else 0, "failed": row.failed if row else 0, "pending": pending,
                    "pending_capped": pending >= PENDING_CAP,
                    "last_success_at": row.last_success_at if row else None,
                    "last_failure_at": row.last_failure_at if row else None,
                    "last_error": row.last_error if row else None,
                    "sender": row.owner.rpartition("/")[0] if row and row.owner and row.expires_at
                    and row.expires_at >= now else None})
        return result

    async def delivered_everywhere(self) -> rows.Cursor | None:
        """The cursor every enabled endpoint has passed (None: no endpoint waits for anything): the
        audit purge keeps what an endpoint still has to be sent."""
        names = [name for name, endpoint in self.endpoints.items() if not endpoint.disabled]
        if not names:
            return None
        async with self.db.read() as conn:
            found = await rows.endpoints(conn, names)
        if len(found) < len(names):
            return (0, 0)  # an endpoint not started yet: keep everything for now
        return min(row.cursor for row in found.values())


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read the answer's body to its end, up to RESPONSE_CAP (then the connection is dropped)."""
    read = 0
    async for chunk in response.content.iter_chunked(16384):
        read += len(chunk)
        if read > RESPONSE_CAP:
            response.close()
            return

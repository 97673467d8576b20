"""/healthz and /readyz: the probes of load balancers, Docker's HEALTHCHECK and Kubernetes.

/healthz says the process answers and nothing more: it touches no database or store, so a slow
dependency never gets a healthy process restarted. /readyz says whether this process can serve
now: the metadata database and the blob store each answer within a short timeout, and the disks
they write to (the storage root; SQLite's directory) keep `storage.min_free_bytes` free, or the
answer is 503 naming what is down (`down: disk full` for a disk below the floor). Mirror
upstreams are not checked: while one fails the mirror serves what it has cached, which is still
useful work. Both are open to anyone (the gate treats paths outside /v2 and /admin as open); why
a check failed goes to the log, not to the anonymous caller.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import make_url

from registry.metadata.db import Database
from registry.storage import BlobStore, StorageFull, require_free_space

log = logging.getLogger("registry.health")

READY_TIMEOUT = 2.0  # seconds per check; probes usually give up after 1-5 s
NO_STORE = {"Cache-Control": "no-store"}


class Readiness:
    """Checks the database and the blob store concurrently, each bounded by `timeout`.

    Probes that arrive while a check runs share it, so a hanging backend never piles up checks.
    """

    def __init__(self, db: Database, store: BlobStore, timeout: float = READY_TIMEOUT) -> None:
        self.db = db
        self.store = store
        self.timeout = timeout
        self._running: asyncio.Future[dict[str, str]] | None = None
        self._last: dict[str, str] = {}
        self._sqlite_dir = _sqlite_directory(db)

    async def check(self) -> dict[str, str]:
        """{"database": "ok" | "down: ...", "storage": ...}."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._check_all())
        return await asyncio.shield(self._running)

    async def _check_all(self) -> dict[str, str]:
        database, storage = await asyncio.gather(self._bounded("database", self._database),
                                                 self._bounded("storage", self._storage))
        return {"database": database, "storage": storage}

    async def _database(self) -> None:
        async with self.db.read() as conn:
            await conn.execute(text("SELECT 1"))
        if self._sqlite_dir is not None:  # SQLite fails its writes on a full disk like the store does
            await asyncio.to_thread(require_free_space, self._sqlite_dir, self.store.min_free_bytes)

    async def _storage(self) -> None:
        await self.store.ping(self.timeout)

    async def _bounded(self, name: str, probe: Callable[[], Awaitable[None]]) -> str:
        try:
            await asyncio.wait_for(probe(), self.timeout)
        except TimeoutError:
            state, why = f"down: no answer within {self.timeout:g}s", "timed out"
        except StorageFull as exc:
            state, why = "down: disk full", str(exc)
        except Exception as exc:  # noqa: BLE001 - whatever the driver raises, the answer is "not ready"
            state, why = "down: unreachable or refusing requests", f"{type(exc).__name__}: {exc}"
        else:
            state, why = "ok", ""
        self._log_change(name, state, why)
        return state

    def _log_change(self, name: str, state: str, why: str) -> None:
        # Only transitions: a probe every few seconds must not flood the log while a backend is down.
        previous = self._last.get(name)
        self._last[name] = state
        if state == "ok" and previous not in (None, "ok"):
            log.warning("readiness: %s is back", name)
        elif state != "ok" and previous != state:
            # A full disk needs someone to free space: an error, not a passing outage.
            level = logging.ERROR if state == "down: disk full" else logging.WARNING
            log.log(level, "readiness: %s is down (%s)", name, why)


def _sqlite_directory(db: Database) -> Path | None:
    """The directory of an SQLite database file (its WAL grows beside it); None otherwise."""
    if not db.is_sqlite:
        return None
    database = make_url(db.url).database
    if not database or database == ":memory:":
        return None
    return Path(database).resolve().parent


READINESS_KEY = web.AppKey("readiness", Readiness)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers=NO_STORE)


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[READINESS_KEY].check()
    ready = all(state == "ok" for state in checks.values())
    return web.json_response({"status": "ready" if ready else "unready", "checks": checks},
                             status=200 if ready else 503, headers=NO_STORE)


def add_routes(app: web.Application, db: Database, store: BlobStore, timeout: float = READY_TIMEOUT) -> None:
    app[READINESS_KEY] = Readiness(db, store, timeout)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

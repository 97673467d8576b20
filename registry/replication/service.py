"""Replication in the server: which rule is due, one process running it (a lease per rule in the
database), and the record of each run.

A rule is due when:
- someone asked for a run (the admin API or page; `registry replicate RULE` runs it in its own process);
- its schedule says so (an interval, or cron in UTC; `next_run_at` in its row, shared by all processes);
- it runs on push, and a push or delete in a repository it covers was recorded after its cursor (the
  rule reads the events table like a webhook endpoint: a push made while this process was down, or
  during a run that was killed, is still after the cursor and is replicated when it comes back);
- its last run was killed midway (marked `running` with no live lease): it resumes at once.

Runs of one rule never overlap, across processes too: whoever takes its lease runs it, renews the
lease while it runs, and releases it after. A run that failed is retried after a pause that doubles
up to five minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from registry.client import RegistryClient
from registry.client.client import trust_context
from registry.content.local import LocalContent
from registry.events.context import RequestInfo, serving
from registry.metadata import events as event_rows
from registry.metadata import leases
from registry.metadata import replication as rows
from registry.metadata.db import Database, database_away
from registry.replication.ends import End, LocalEnd, RemoteEnd
from registry.replication.engine import Replicator, Tally, as_detail
from registry.replication.rules import ReplicationConfigError, Rule, parse_rule

log = logging.getLogger("registry.replication")

LEASE_SECONDS = 10.0  # renewed every third: a dead process holds a rule this long at most
TICK_SECONDS = 1.0
EVENT_BATCH = 1000
MAX_BACKOFF = 300.0
REPLICATED_ACTIONS = ("push", "delete")


class RuleBusy(Exception):
    """Another process is running the rule now."""


@dataclass(frozen=True)
class RunResult:
    run_id: int
    status: str
    tally: Tally


def rule_of(row: rows.RuleRow) -> Rule:
    return parse_rule(row.definition, f"replication rule {row.name}")


def next_run(rule: Rule, after: float) -> float | None:
    """When the rule's schedule fires next after `after` (epoch seconds); None without a schedule."""
    if rule.timing is None:
        return None
    moment = dt.datetime.fromtimestamp(after, dt.UTC)
    return rule.timing.next_after(moment).timestamp()


def client_for(rule: Rule) -> RegistryClient:
    cas = [Path(rule.ca_file)] if rule.ca_file else []
    return RegistryClient(rule.url, rule.username, rule.password, retries=3, tls=trust_context(cas))


async def sync_config_rules(db: Database, configured: list[Rule], drop_others: bool = True) -> None:
    """The config file's rules into the database (where every process, the API and the page read them);
    those it no longer names go, when the server starts (`drop_others`; a command started with another
    file must not take the server's rules away). Rules made through the API are left alone, unless the
    file now names one: the file wins."""
    async with db.write() as conn:
        for rule in configured:
            await rows.save_rule(db, conn, rule.name, rule.as_json(with_secret=True), "config")
        if drop_others:
            await rows.drop_config_rules_except(conn, [r.name for r in configured])


async def run_rule(db: Database, local: LocalContent, name: str, trigger: str, owner: str) -> RunResult:
    """Run one rule now, in this process, under its lease; RuleBusy when another holds it."""
    async with db.write(durable=False) as conn:
        row = await rows.rule(conn, name)
        if row is None:
            raise KeyError(name)
        if not await leases.take(db, conn, rows.RULE, name, owner, LEASE_SECONDS):
            raise RuleBusy(await leases.holder(conn, rows.RULE, name) or "another process")
    async with leases.renewed(db, rows.RULE, name, owner, LEASE_SECONDS):
        return await _run_held(db, local, rule_of(row), trigger, owner)


async def _run_held(db: Database, local: LocalContent, rule: Rule, trigger: str, owner: str) -> RunResult:
    started = time.time()
    async with db.write() as conn:
        if await rows.interrupt_stale_runs(conn, rule.name) and trigger != "manual":
            trigger = "resume"
        run_id = await rows.start_run(conn, rule.name, trigger, owner)
        await rows.clear_request(conn, rule.name, started)
        if rule.timing is not None:
            await rows.set_next_run(conn, rule.name, next_run(rule, started))
    tally = Tally()
    cursor: event_rows.Cursor | None = None
    try:
        repositories = None
        if rule.on_push:  # the events up to now are covered by this run: a full one covers them all
            pushed, cursor = await _pushed_repositories(db, rule)
            repositories = pushed if trigger in ("push", "resume") else None
        async with _ends(rule, local) as (source, destination):
            log.info("replication %s: run %d (%s) from %s to %s", rule.name, run_id, trigger, source.label,
                     destination.label)
            with serving(_actor(rule, run_id)):  # the run's writes are recorded as the rule's
                await Replicator(rule, source, destination, tally).run(repositories)
    except Exception as exc:  # noqa: BLE001 - the run fails, recorded; the server goes on
        tally.failed("run", exc)
    status = "succeeded" if tally.errors == 0 else "failed"
    async with db.write() as conn:
        await rows.finish_run(conn, run_id, status, tally.counts(), as_detail(tally))
        if cursor is not None and status == "succeeded":
            await rows.advance(conn, rule.name, owner, cursor)
    log.info("replication %s: run %d %s: %d manifests, %d blobs (%d bytes), %d mounted, %d present, %d errors",
             rule.name, run_id, status, tally.manifests, tally.blobs, tally.bytes, tally.mounted, tally.present,
             tally.errors)
    return RunResult(run_id, status, tally)


@contextlib.asynccontextmanager
async def _ends(rule: Rule, local: LocalContent) -> AsyncIterator[tuple[End, End]]:
    async with client_for(rule) as client:
        remote, here = RemoteEnd(client), LocalEnd(local)
        yield (remote, here) if rule.direction == "pull" else (here, remote)


def _actor(rule: Rule, run_id: int) -> RequestInfo:
    """Who the run's writes are recorded as (events, audit, "pushed by")."""
    return RequestInfo(id=f"replication-{run_id}", address="", host="", method="REPLICATE", user_agent="",
                       actor=f"replication:{rule.name}", actor_kind="system")


async def _pushed_repositories(db: Database, rule: Rule) -> tuple[list[str], event_rows.Cursor]:
    """Repositories the rule covers with a push or delete after its cursor, and the cursor past them."""
    async with db.read() as conn:
        row = await rows.rule(conn, rule.name)
        cursor = row.cursor if row else (0, 0)
        found: set[str] = set()
        while True:
            batch = await event_rows.after(db, conn, cursor, EVENT_BATCH)
            for event in batch:
                if _replicates(rule, event):
                    found.add(event.repository or "")
            if batch:
                cursor = batch[-1].cursor
            if len(batch) < EVENT_BATCH:
                return sorted(found), cursor


def _replicates(rule: Rule, event: event_rows.EventRow) -> bool:
    return (event.action in REPLICATED_ACTIONS and event.target_type == "manifest" and event.outcome == "ok"
            and event.repository is not None and rule.wants_repository(event.repository)
            and not event.actor.startswith(f"replication:{rule.name}"))


class Replication:
    """The loop that starts due rules in this process."""

    def __init__(self, db: Database, local: LocalContent, configured: list[Rule], instance: str = "") -> None:
        self.db = db
        self.local = local
        self.configured = configured
        self.owner = f"{instance or socket.gethostname()}/{uuid.uuid4().hex[:12]}"
        self._task: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, tuple[float, float]] = {}  # rule -> (not before, last pause)
        self._wake = asyncio.Event()
        self._scanned: dict[str, event_rows.Cursor] = {}  # rule -> events read up to, none of interest

    async def start(self) -> None:
        await sync_config_rules(self.db, self.configured)
        self._task = asyncio.create_task(self._loop(), name="replication")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def running(self) -> list[str]:
        return sorted(self._running)

    async def _loop(self) -> None:
        while True:
            try:
                await self._start_due()
            except Exception as exc:  # noqa: BLE001 - the next tick tries again
                if not database_away(exc):
                    log.exception("replication: could not look for due rules")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)
            self._wake.clear()

    async def _start_due(self) -> None:
        now = time.time()
        async with self.db.read() as conn:
            found = await rows.rules(conn)
        for row in found:
            paused = self._retry_at.get(row.name, (0.0, 0.0))[0] > now and row.run_requested_at is None
            if row.name in self._running or paused:  # a run asked for is not held back by a failure's pause
                continue
            if row.owner is not None and row.expires_at is not None and row.expires_at >= now:
                continue  # another process runs it
            try:
                rule = rule_of(row)
            except ReplicationConfigError as exc:
                log.warning("replication: %s", exc)
                continue
            trigger = await self._due(rule, row, now)
            if trigger is not None:
                self._running[rule.name] = asyncio.create_task(self._run(rule.name, trigger))

    async def _due(self, rule: Rule, row: rows.RuleRow, now: float) -> str | None:
        if row.run_requested_at is not None:
            return "manual"
        if not rule.enabled:
            return None
        async with self.db.read() as conn:
            if await rows.left_running(conn, rule.name):  # its process died midway: pick up where it stopped
                return "resume"
        if rule.timing is not None:
            if row.next_run_at is None:  # a new rule, or a new schedule: its first firing from now
                async with self.db.write(durable=False) as conn:
                    await rows.set_next_run(conn, rule.name, next_run(rule, now))
            elif row.next_run_at <= now:
                return "schedule"
        if rule.on_push and await self._pushed_since(rule, row.cursor):
            return "push"
        return None

    async def _pushed_since(self, rule: Rule, cursor: event_rows.Cursor) -> bool:
        """Whether an event after `cursor` is one the rule replicates. Events read and found of no
        interest are remembered, so each tick reads only what is new."""
        cursor = max(cursor, self._scanned.get(rule.name, cursor))
        async with self.db.read() as conn:
            while True:
                batch = await event_rows.after(self.db, conn, cursor, EVENT_BATCH)
                if any(_replicates(rule, e) for e in batch):
                    return True
                if batch:
                    cursor = self._scanned[rule.name] = batch[-1].cursor
                if len(batch) < EVENT_BATCH:
                    return False

    async def _run(self, name: str, trigger: str) -> None:
        try:
            result = await run_rule(self.db, self.local, name, trigger, self.owner)
        except RuleBusy:
            return
        except KeyError:
            return  # deleted meanwhile
        except Exception as exc:  # noqa: BLE001 - recorded by the next tick's retry
            if not database_away(exc):
                log.exception("replication %s: the run could not start", name)
            self._pause(name)
            return
        finally:
            self._running.pop(name, None)
        if result.status == "succeeded":
            self._retry_at.pop(name, None)
        else:
            self._pause(name)

    def _pause(self, name: str) -> None:
        last = self._retry_at.get(name, (0.0, 5.0))[1]
        pause = min(last * 2, MAX_BACKOFF)
        self._retry_at[name] = (time.time() + pause, pause)


"""Maintenance jobs: garbage collection, retention and fsck, run from the CLI, the admin API or
a schedule, one of a kind at a time across processes, each leaving a JSON report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import AsyncIterator, Awaitable, Callable

from registry.gc import fsck as fsck_check
from registry.gc.immutable import ImmutableTags
from registry.gc.plan import Outcome, mark
from registry.gc.policy import RetentionPolicy, parse_retention
from registry.gc.reclaim import Reclaimed, reclaim
from registry.gc.sweep import Sweeper
from registry.metadata import leases
from registry.metadata import maintenance as rows
from registry.metadata.db import Database
from registry.storage import BlobStore

log = logging.getLogger("registry.gc")

LEASE_SECONDS = 60.0
MAX_ITEMS = 10_000  # items listed in a report; counts are always complete
KINDS = ("gc", "retention", "fsck")


class MaintenanceBusy(Exception):
    """Another run of the same kind holds the lease."""


@dataclass(frozen=True)
class Settings:
    grace_seconds: float = 3600.0
    untagged_days: float | None = None  # None: keep untagged manifests
    upload_expiry_seconds: float = 86400.0
    orphan_grace_seconds: float = 3600.0  # negative: unrecorded bytes are never reclaimed
    batch_size: int = 500
    policies: tuple[RetentionPolicy, ...] = ()
    gc_interval: float = 0.0
    retention_interval: float = 0.0
    fsck_interval: float = 0.0
    fsck_sample: float | None = None
    immutable: ImmutableTags = field(default_factory=ImmutableTags)  # retention spares the tags they hold

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        gc = config.gc
        return cls(grace_seconds=gc.grace_period, untagged_days=None if gc.untagged_days < 0 else gc.untagged_days,
                   upload_expiry_seconds=gc.upload_expiry, orphan_grace_seconds=gc.orphan_grace_period,
                   batch_size=gc.batch_size,
                   policies=tuple(parse_retention(config.retention.policies)), gc_interval=gc.interval,
                   retention_interval=config.retention.interval, fsck_interval=config.fsck.interval,
                   fsck_sample=config.fsck.sample if config.fsck.sample < 1 else None,
                   immutable=ImmutableTags.from_config(config))


class Maintenance:
    def __init__(self, db: Database, store: BlobStore, settings: Settings) -> None:
        self.db = db
        self.store = store
        self.settings = settings
        self.sweeper = Sweeper(db, store, settings.batch_size)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []  # e.g. metrics
        self._tasks: list[asyncio.Task[None]] = []
        self._housekeeping: list[tuple[str, float, Callable[[], Awaitable[Any]]]] = []

    # -- the jobs ---------------------------------------------------------------------
    async def gc(self, dry_run: bool = False) -> dict[str, Any]:
        """Retention policies, then everything unreachable: manifests, links, blobs, stale uploads."""
        return await self._run("gc", dry_run, lambda: self._collect(dry_run, collect=True))

    async def retention(self, dry_run: bool = False) -> dict[str, Any]:
        """Retention policies only: tags, and the manifests only they kept (a later gc frees the bytes)."""
        return await self._run("retention", dry_run, lambda: self._collect(dry_run, collect=False))

    async def fsck(self, sample: float | None = None, repair: bool = False) -> dict[str, Any]:
        async def job() -> dict[str, Any]:
            found = await fsck_check.check(self.db, self.store, sample, repair)
            return {"checked": found.checked, "hashed": found.hashed, "hashed_bytes": found.hashed_bytes,
                    "sample": sample, "repair": repair, "problems": found.problems}
        return await self._run("fsck", not repair, job, exclusive=repair, scheduled=True)

    async def last_report(self, kind: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            return await rows.last_report(conn, kind)

    async def _collect(self, dry_run: bool, collect: bool) -> dict[str, Any]:
        settings, now = self.settings, time.time()
        held = await self._held_by_immutable_rules() if settings.policies else None
        async with mark(self.db, now=now, grace_seconds=settings.grace_seconds, untagged_days=settings.untagged_days,
                        policies=list(settings.policies), collect=collect, page_size=settings.batch_size,
                        spare=held) as plan:
            idle_before = now - settings.upload_expiry_seconds
            uploads = await self.sweeper.expired_uploads(idle_before) if collect else []
            if dry_run:
                outcome = await plan.outcome(MAX_ITEMS)
            else:
                purged = set(await self.sweeper.purge_uploads(uploads, idle_before))
                uploads = [u for u in uploads if u[0] in purged]
                outcome = await self.sweeper.sweep(plan, now - settings.grace_seconds, MAX_ITEMS)
        report = _describe(outcome, [u for u, _ in uploads], collect)
        if collect and settings.orphan_grace_seconds >= 0:  # bytes a crash left without their row
            _add_orphans(report, await reclaim(self.db, self.store, self.sweeper, now - settings.orphan_grace_seconds,
                                               dry_run, settings.batch_size, keep=MAX_ITEMS))
        return report

    async def _held_by_immutable_rules(self) -> Callable[[str, str], bool] | None:
        """Whether an immutable rule holds a tag (`repository`, `tag`): retention spares it, and so the
        manifest it points at stays a root. None while no rule is in force."""
        immutable = self.settings.immutable
        async with self.db.read() as conn:
            rules = await immutable.rules(conn)
        if not rules:
            return None
        return lambda repository, tag: immutable.rule_holding(rules, repository, tag) is not None

    # -- leases and reports -----------------------------------------------------------
    async def _run(self, kind: str, dry_run: bool, job: Callable[[], Any], exclusive: bool | None = None,
                   scheduled: bool | None = None) -> dict[str, Any]:
        """Run a job under its lease (unless it only reads) and keep its report. `scheduled`: the
        run counts as the schedule's (by default, real runs do and dry runs do not)."""
        started = time.time()
        async with self._lease(kind, needed=not dry_run if exclusive is None else exclusive):
            body = await job()
        report = {"kind": kind, "dry_run": dry_run, "started_at": started, "finished_at": time.time(), **body}
        async with self.db.write() as conn:
            await rows.save_report(self.db, conn, kind, report,
                                   finished=not dry_run if scheduled is None else scheduled)
        problems = report.get("problems") or []
        # Corruption is not news to file away: fsck's problems are a warning, each named (up to 20).
        log.log(logging.WARNING if problems else logging.INFO, "%s%s finished in %.1fs: %s", kind,
                " (dry run)" if dry_run else "", report["finished_at"] - started,
                _deleted_text(report) or f"{len(problems)} problems"
                + "".join(f"; {_problem_text(p)}" for p in problems[:20]) + ("; ..." if len(problems) > 20 else ""))
        for listener in self.listeners:
            listener(report)
        return report

    @contextlib.asynccontextmanager
    async def _lease(self, kind: str, needed: bool) -> AsyncIterator[None]:
        if not needed:  # dry runs only read
            yield
            return
        owner = secrets.token_hex(8)
        async with self.db.write(durable=False) as conn:
            if not await leases.take(self.db, conn, leases.MAINTENANCE, kind, owner, LEASE_SECONDS):
                raise MaintenanceBusy(f"another {kind} run is in progress")
        async with leases.renewed(self.db, leases.MAINTENANCE, kind, owner, LEASE_SECONDS):
            yield

    # -- schedules --------------------------------------------------------------------
    def start(self) -> None:
        schedule = {"gc": self.settings.gc_interval, "retention": self.settings.retention_interval,
                    "fsck": self.settings.fsck_interval}
        for kind, interval in schedule.items():
            if interval > 0:
                self._tasks.append(asyncio.create_task(self._every(kind, interval)))
        for what, interval, job in self._housekeeping:
            self._tasks.append(asyncio.create_task(self._repeat(what, interval, job)))

    def every(self, what: str, interval: float, job: Callable[[], Awaitable[Any]]) -> None:
        """Other features' housekeeping (the audit purge), run every `interval` seconds from start()."""
        self._housekeeping.append((what, interval, job))

    async def _repeat(self, what: str, interval: float, job: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(interval * random.uniform(0.5, 1.0))
            try:
                await job()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("%s failed; trying again at the next interval", what)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _every(self, kind: str, interval: float) -> None:
        """Run `kind` every `interval` seconds, counted from the last finished run in any process
        (so several workers or replicas do not multiply the runs)."""
        while True:
            await asyncio.sleep(min(interval, 60.0) * random.uniform(0.5, 1.0))
            try:
                async with self.db.read() as conn:
                    last = await rows.last_finished_at(conn, kind)
                if last is not None and time.time() - last < interval:
                    continue
                if kind == "fsck":
                    await self.fsck(self.settings.fsck_sample, repair=False)
                else:
                    await getattr(self, kind)(dry_run=False)
            except MaintenanceBusy:
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduled %s failed; trying again at the next interval", kind)


def _describe(outcome: Outcome, uploads: list[str], collect: bool) -> dict[str, Any]:
    items = [*outcome.items["tags"], *outcome.items["manifests"], *outcome.items["blobs"]]
    items += [{"type": "upload", "id": upload_id} for upload_id in uploads]
    counted = outcome.deleted["tags"] + outcome.deleted["manifests"] + outcome.deleted["blobs"] + len(uploads)
    report: dict[str, Any] = {
        "deleted": {**outcome.deleted, "uploads": len(uploads)},
        "freed_bytes": outcome.freed_bytes,
        "items": items[:MAX_ITEMS], "items_truncated": counted > MAX_ITEMS, "problems": []}
    if not collect:
        report["note"] = "retention only: the next gc frees the bytes of what it untagged"
    return report


def _add_orphans(report: dict[str, Any], orphans: Reclaimed) -> None:
    """Unrecorded bytes reclaimed: counted with the rest, their bytes both apart and in `freed_bytes`."""
    report["deleted"]["orphans"], report["orphan_bytes"] = orphans.count, orphans.bytes
    report["freed_bytes"] += orphans.bytes
    room = max(MAX_ITEMS - len(report["items"]), 0)
    report["items"] += [{"type": "orphan", "digest": digest, "size": size} for digest, size in orphans.blobs[:room]]
    report["items_truncated"] = report["items_truncated"] or orphans.count > room


def _deleted_text(report: dict[str, Any]) -> str:
    """`{'tags': 1, ..., 'orphans': 2}, freed_bytes=N, orphan_bytes=M` for gc and retention; empty for fsck."""
    if not report.get("deleted"):
        return ""
    sizes = "".join(f", {key}={report[key]}" for key in ("freed_bytes", "orphan_bytes") if key in report)
    return f"{report['deleted']}{sizes}"


def _problem_text(problem: dict[str, Any]) -> str:
    """One fsck problem as `corrupt sha256:... (content does not match the digest)`."""
    what = problem.get("digest") or problem.get("name") or ""
    why = problem.get("reason")
    return f"{problem.get('problem', 'problem')} {what}{f' ({why})' if why else ''}".strip()

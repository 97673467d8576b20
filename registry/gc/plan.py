"""The mark phase: what may go, computed in the database, never the whole graph in Python.

Roots are tagged manifests (after retention) and untagged manifests the untagged policy keeps.
Everything a root needs survives: index children, and referrers (signatures, SBOMs) of a
surviving manifest. A repository link survives while a surviving manifest of that repository
references the blob or while its grace period runs (a layer whose manifest is not pushed yet): the
period starts when the blob is linked and restarts when a client HEADs, GETs or mounts it (see
LocalContent.blob_head), so a layer a client was just told exists stays for its manifest. A blob
survives while any link, any surviving manifest or a mirror fill needs it.

`mark` reads one snapshot of the database (a REPEATABLE READ transaction on PostgreSQL, one read
transaction on SQLite) on a dedicated connection, and leaves the plan in its TEMP tables
(registry/metadata/gc_mark.py); Python only matches repositories to retention policies and tags to
`keep_tags`, a page at a time. A dry run reports the plan; a real run sweeps it page by page with
locked re-checks (registry/gc/sweep.py), so anything that changed since the snapshot is kept rather
than lost. Memory stays bounded by the page size whatever the registry's size.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import AsyncIterator, Callable

from registry.gc.policy import DAY, RetentionPolicy
from registry.metadata import gc_mark as marks
from registry.metadata.db import Database, Dedicated

# More generations than any real graph has (an index of images with signatures is 3 deep); only a
# cycle, which content addressing all but rules out, would reach it.
MAX_GENERATIONS = 64
KINDS = ("tags", "manifests", "links", "blobs")
Spare = Callable[[str, str], bool]  # (repository, tag) -> whether retention must leave the tag


@dataclass
class Outcome:
    """What a plan holds (a dry run) or what its sweep deleted: counts, the bytes freed, and the
    first `max_items` items of each kind for the report."""

    max_items: int
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    freed_bytes: int = 0
    items: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {kind: [] for kind in KINDS})

    def add(self, kind: str, rows: list[Any]) -> None:
        """Count rows of a plan page (tags, manifests, links, blobs) that went or would go."""
        self.deleted[kind] += len(rows)
        if kind == "blobs":
            self.freed_bytes += sum(row.size for row in rows)
        room = self.max_items - len(self.items[kind])
        if kind != "links" and room > 0:
            self.items[kind] += [_item(kind, row) for row in rows[:room]]


def _item(kind: str, row: Any) -> dict[str, Any]:
    if kind == "tags":
        return {"type": "tag", "repository": row.repository, "tag": row.name}
    if kind == "manifests":
        return {"type": "manifest", "repository": row.repository, "digest": row.digest, "size": row.size}
    return {"type": "blob", "digest": row.digest, "size": row.size}


class Plan:
    """A marked plan in the TEMP tables of `conn`, read back a page at a time."""

    def __init__(self, conn: Dedicated, page_size: int) -> None:
        self.conn = conn
        self.page_size = page_size

    async def pages(self, kind: str) -> AsyncIterator[list[Any]]:
        """The plan of one kind in sweep order, `page_size` rows at a time. Each page is read in a
        transaction of its own: nothing stays open while the caller sweeps it."""
        after = 0
        while True:
            rows = await marks.page(self.conn, kind, after, self.page_size)
            await self.conn.commit()
            if not rows:
                return
            yield rows
            after = rows[-1].seq

    async def outcome(self, max_items: int) -> Outcome:
        """The dry run's report: counts and bytes in SQL, the items of the first pages."""
        outcome = Outcome(max_items)
        for kind in KINDS:
            if kind != "links":
                async for rows in self.pages(kind):
                    outcome.add(kind, rows)
                    if len(outcome.items[kind]) >= max_items:
                        break
            outcome.deleted[kind] = await marks.count(self.conn, kind)
        outcome.freed_bytes = await marks.planned_bytes(self.conn)
        await self.conn.commit()
        return outcome


@contextlib.asynccontextmanager
async def mark(db: Database, *, now: float, grace_seconds: float, untagged_days: float | None,
               policies: list[RetentionPolicy], collect: bool = True, page_size: int = 500,
               spare: Spare | None = None) -> AsyncIterator[Plan]:
    """The whole plan, alive for the block. `untagged_days` None keeps untagged manifests; `collect`
    False plans retention only (tags, and the manifests only they kept), never links or blobs; `spare`
    (repository, tag) tells the tags retention must leave whatever the policies say (immutable rules)."""
    postgres = not db.is_sqlite
    async with db.dedicated() as conn:
        await conn.snapshot()
        await marks.create_tables(conn)
        await _retention(conn, policies, now, page_size, postgres, spare)
        untagged_since = None if untagged_days is None or not collect else now - untagged_days * DAY
        await marks.mark_roots(conn, untagged_since)
        await marks.index(conn, postgres, marks.live)
        for generation in range(MAX_GENERATIONS):
            if not await marks.spread(conn, first=generation == 0):
                break
        await marks.mark_doomed(conn)
        await marks.index(conn, postgres, marks.doomed)
        for level in range(1, MAX_GENERATIONS):
            if not await marks.level_doomed(conn, level):
                break
        await marks.plan_doomed(conn)
        if collect:
            await marks.plan_links_and_blobs(conn, now - grace_seconds, time.time(), postgres)
        await conn.commit()
        yield Plan(conn, page_size)


async def _retention(conn: Dedicated, policies: list[RetentionPolicy], now: float, page_size: int,
                     postgres: bool, spare: Spare | None) -> None:
    """Plan the tags the first matching policy of their repository deletes, but those `spare` holds."""
    used = await _assign_policies(conn, policies, page_size) if policies else set()
    for index in sorted(used):
        policy = policies[index]
        await marks.add_victims(
            conn, index, keep_last=policy.keep_last, postgres=postgres,
            pushed_before=None if policy.older_than_days is None else now - policy.older_than_days * DAY,
            pulled_before=None if policy.keep_pulled_within_days is None
            else now - policy.keep_pulled_within_days * DAY)
    await marks.index(conn, postgres, marks.victims)
    if used and (spare is not None or any(policies[index].keep_tags is not None for index in used)):
        await _spare_victims(conn, policies, spare, page_size)
    await marks.plan_victims(conn)


async def _assign_policies(conn: Dedicated, policies: list[RetentionPolicy], page_size: int) -> set[int]:
    """Record each repository's first matching policy (a glob, matched here); returns the policies used."""
    used: set[int] = set()
    after = 0
    while rows := await marks.repositories_after(conn, after, page_size):
        assigned = []
        for row in rows:
            index = next((i for i, p in enumerate(policies) if p.matches(row.name)), None)
            if index is not None:
                assigned.append({"repository_id": row.id, "policy": index})
                used.add(index)
        await marks.assign_policies(conn, assigned)
        after = rows[-1].id
    return used


async def _spare_victims(conn: Dedicated, policies: list[RetentionPolicy], spare: Spare | None,
                         page_size: int) -> None:
    """Take back from the victims the tags their policy's keep_tags pattern keeps, and those `spare` holds."""
    after: tuple[int, str] = (0, "")
    while rows := await marks.victims_after(conn, after, page_size):
        await marks.spare(conn, [(row.repository_id, row.name) for row in rows
                                 if policies[row.policy].keeps_by_name(row.name)
                                 or (spare is not None and spare(row.repository, row.name))])
        after = (rows[-1].repository_id, rows[-1].name)

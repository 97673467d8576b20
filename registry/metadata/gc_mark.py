"""Queries of garbage collection's mark phase: the plan computed set by set in TEMP tables.

Nothing here brings the graph into Python: each step is one INSERT ... SELECT (or UPDATE) into a TEMP
table of the dedicated connection (Database.dedicated), and what Python reads back, it reads a page at
a time (`page`). The same statements run on SQLite and PostgreSQL. Reachability grows the set of
surviving manifests a generation at a time (children listed by an index, referrers of a subject) until
a generation adds nothing; the doomed manifests get a level the same way, so that sweeping them in
level order lets every one go whatever the batch boundaries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (BigInteger, Column, ColumnElement, Float, Index, Integer, MetaData, Select, String, Table,
                        and_, delete, exists, func, insert, literal, or_, select, text, tuple_, union,
                        update)
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import FromClause

from registry.metadata.db import Connection
from registry.metadata.schema import (DIGEST, blobs, manifest_references, manifests, mirror_fills, repositories,
                                      repository_blobs, tags)

_temp = MetaData()


def _table(name: str, *items: Any) -> Table:
    return Table(name, _temp, *items, prefixes=["TEMPORARY"])


def _seq() -> Column[int]:
    """The order a plan is swept (and paged) in."""
    return Column("seq", BigInteger, primary_key=True, autoincrement=False)


# Which retention policy (its index in the configured list) governs a repository; repositories no
# policy matches have no row.
policy_of = _table("gc_policy_of", Column("repository_id", Integer, primary_key=True),
                   Column("policy", Integer, nullable=False))
# Tags a policy would delete, before its keep_tags pattern (Python's `re`) spares some.
victims = _table("gc_victims", Column("repository_id", Integer, nullable=False),
                 Column("name", String(128), nullable=False), Column("manifest_id", Integer, nullable=False),
                 Column("updated_at", Float, nullable=False), Column("policy", Integer, nullable=False),
                 Index("ix_gc_victims", "repository_id", "name", unique=True))
# Surviving manifests; a generation's frontier, and the next one while it is found.
live = _table("gc_live", Column("id", Integer, nullable=False), Index("ix_gc_live", "id", unique=True))
frontier = _table("gc_frontier", Column("id", Integer, nullable=False))
found = _table("gc_found", Column("id", Integer, nullable=False))
doomed = _table("gc_doomed", Column("id", Integer, nullable=False),
                Column("repository_id", Integer, nullable=False), Column("digest", DIGEST, nullable=False),
                Column("subject", DIGEST, nullable=True), Column("size", BigInteger, nullable=False),
                Column("level", Integer, nullable=False), Index("ix_gc_doomed_id", "id", unique=True),
                Index("ix_gc_doomed_digest", "repository_id", "digest"),
                Index("ix_gc_doomed_subject", "repository_id", "subject"))
# The plan, each in sweep order.
plan_tags = _table("gc_plan_tags", _seq(), Column("repository_id", Integer, nullable=False),
                   Column("name", String(128), nullable=False), Column("manifest_id", Integer, nullable=False),
                   Column("updated_at", Float, nullable=False))
plan_manifests = _table("gc_plan_manifests", _seq(), Column("id", Integer, nullable=False),
                        Column("repository_id", Integer, nullable=False), Column("digest", DIGEST, nullable=False),
                        Column("size", BigInteger, nullable=False))
plan_links = _table("gc_plan_links", _seq(), Column("repository_id", Integer, nullable=False),
                    Column("digest", DIGEST, nullable=False), Index("ix_gc_plan_links", "repository_id", "digest"))
plan_blobs = _table("gc_plan_blobs", _seq(), Column("digest", DIGEST, nullable=False, unique=True),
                    Column("size", BigInteger, nullable=False))
PLANS = {"tags": plan_tags, "manifests": plan_manifests, "links": plan_links, "blobs": plan_blobs}


async def create_tables(conn: Connection) -> None:
    """The tables only: an index is built once its table's bulk is in (`index`), by one sort rather than
    row by row (on PostgreSQL, a TEMP index larger than temp_buffers thrashes when filled a row at a time)."""
    for table in _temp.sorted_tables:
        await conn.execute(CreateTable(table))


async def index(conn: Connection, postgres: bool, table: Table) -> None:
    """Build the table's indexes, and on PostgreSQL gather its statistics: its planner has none of a TEMP
    table until told (autovacuum never sees one); SQLite's does without."""
    for table_index in table.indexes:
        await conn.execute(CreateIndex(table_index))
    if postgres:
        await conn.execute(text(f"ANALYZE {table.name}"))


# -- retention ---------------------------------------------------------------------------------
async def repositories_after(conn: Connection, after: int, limit: int) -> list[Any]:
    return list(await conn.execute(select(repositories.c.id, repositories.c.name).where(repositories.c.id > after)
                                   .order_by(repositories.c.id).limit(limit)))


async def assign_policies(conn: Connection, assigned: list[dict[str, int]]) -> None:
    if assigned:
        await conn.execute(insert(policy_of), assigned)


async def add_victims(conn: Connection, policy: int, *, keep_last: int | None, pushed_before: float | None,
                      pulled_before: float | None, postgres: bool) -> None:
    """Tags of the policy's repositories it deletes, but for keep_tags: those past its `keep_last` newest
    (by push time, then name, like Python's sort of the two), pushed before `pushed_before` and not pulled
    since `pulled_before` (each where set)."""
    name = tags.c.name.collate("C") if postgres else tags.c.name  # code-point order, as Python compares
    ranked = (select(tags.c.repository_id, tags.c.name, tags.c.manifest_id, tags.c.updated_at,
                     manifests.c.last_pulled_at,
                     func.row_number().over(partition_by=tags.c.repository_id,
                                            order_by=(tags.c.updated_at.desc(), name.desc())).label("position"))
              .select_from(tags.join(policy_of, and_(policy_of.c.repository_id == tags.c.repository_id,
                                                     policy_of.c.policy == policy))
                           .join(manifests, manifests.c.id == tags.c.manifest_id))
              .subquery())
    conditions: list[ColumnElement[bool]] = []
    if keep_last is not None:
        conditions.append(ranked.c.position > keep_last)
    if pushed_before is not None:
        conditions.append(ranked.c.updated_at < pushed_before)
    if pulled_before is not None:
        conditions.append(or_(ranked.c.last_pulled_at.is_(None), ranked.c.last_pulled_at < pulled_before))
    await conn.execute(insert(victims).from_select(
        ["repository_id", "name", "manifest_id", "updated_at", "policy"],
        select(ranked.c.repository_id, ranked.c.name, ranked.c.manifest_id, ranked.c.updated_at, literal(policy))
        .where(*conditions)))


async def victims_after(conn: Connection, after: tuple[int, str], limit: int) -> list[Any]:
    """A page of the victims (repository id, tag name, policy, repository name) after `after`."""
    key = tuple_(victims.c.repository_id, victims.c.name)
    return list(await conn.execute(
        select(victims.c.repository_id, victims.c.name, victims.c.policy, repositories.c.name.label("repository"))
        .select_from(victims.join(repositories, repositories.c.id == victims.c.repository_id))
        .where(key > tuple_(*after)).order_by(victims.c.repository_id, victims.c.name).limit(limit)))


async def spare(conn: Connection, keys: list[tuple[int, str]]) -> None:
    if keys:
        await conn.execute(delete(victims).where(tuple_(victims.c.repository_id, victims.c.name).in_(keys)))


async def plan_victims(conn: Connection) -> None:
    numbered = func.row_number().over(order_by=(victims.c.repository_id, victims.c.name))
    await conn.execute(insert(plan_tags).from_select(
        ["seq", "repository_id", "name", "manifest_id", "updated_at"],
        select(numbered, victims.c.repository_id, victims.c.name, victims.c.manifest_id, victims.c.updated_at)))


# -- reachability ------------------------------------------------------------------------------
async def mark_roots(conn: Connection, untagged_since: float | None) -> None:
    """Manifests with a tag retention leaves, and untagged ones created since `untagged_since` (all of
    them if None). One whose every tag is a victim is no root."""
    await conn.execute(insert(live).from_select(["id"], select(tags.c.manifest_id).distinct().where(
        ~exists().where(victims.c.repository_id == tags.c.repository_id, victims.c.name == tags.c.name))))
    untagged = select(manifests.c.id).where(~exists().where(tags.c.manifest_id == manifests.c.id))
    if untagged_since is not None:
        untagged = untagged.where(manifests.c.created_at >= untagged_since)
    await conn.execute(insert(live).from_select(["id"], untagged))


def _successors(nodes: Table, members: FromClause | None, ids: FromClause | None) -> Select[Any]:
    """Ids of `nodes` (manifests, or gc_doomed) that a node of `ids` (all of `nodes` if None) lists as
    a child or is the subject of, in its repository."""
    parent, child = nodes.alias("parent"), nodes.alias("child")
    subject = child.c.subject_digest if nodes is manifests else child.c.subject
    parents: FromClause = parent if ids is None else ids.join(parent, parent.c.id == ids.c.id)
    listed = (select(child.c.id).select_from(
        parents.join(manifest_references, and_(manifest_references.c.manifest_id == parent.c.id,
                                               manifest_references.c.kind == "manifest"))
        .join(child, and_(child.c.repository_id == parent.c.repository_id,
                          child.c.digest == manifest_references.c.digest))))
    referring = select(child.c.id).select_from(
        parents.join(child, and_(child.c.repository_id == parent.c.repository_id, subject == parent.c.digest)))
    if members is not None:  # only those not in `members` yet (an alias: `members` may also be `ids`)
        seen = members.alias("seen")
        listed = listed.where(~exists().where(seen.c.id == child.c.id))
        referring = referring.where(~exists().where(seen.c.id == child.c.id))
    return union(listed, referring)  # type: ignore[return-value]


async def _next_generation(conn: Connection, nodes: Table, members: Table | None, ids: Table | None) -> int:
    """gc_found := the next generation; returns its size."""
    await conn.execute(delete(found))
    generation = _successors(nodes, members, ids).subquery()
    result = await conn.execute(insert(found).from_select(["id"], select(generation.c.id)))
    return int(result.rowcount)


async def spread(conn: Connection, first: bool) -> int:
    """One generation of survivors: what the frontier (the roots, the `first` time) needs and is not yet
    live becomes live and the next frontier. Returns how many; 0 when reachability is complete."""
    added = await _next_generation(conn, manifests, live, live if first else frontier)
    if added:
        await conn.execute(insert(live).from_select(["id"], select(found.c.id)))
        await conn.execute(delete(frontier))
        await conn.execute(insert(frontier).from_select(["id"], select(found.c.id)))
    return added


async def mark_doomed(conn: Connection) -> None:
    await conn.execute(insert(doomed).from_select(
        ["id", "repository_id", "digest", "subject", "size", "level"],
        select(manifests.c.id, manifests.c.repository_id, manifests.c.digest, manifests.c.subject_digest,
               manifests.c.size, literal(0)).where(~exists().where(live.c.id == manifests.c.id))))


async def level_doomed(conn: Connection, level: int) -> int:
    """Raise to `level` the doomed manifests a doomed manifest of the previous level lists or is the
    subject of (level 1: of any doomed manifest); returns how many. Repeated until 0, each ends at the
    length of the longest chain of doomed manifests that leads to it."""
    if await _next_generation(conn, doomed, None, None if level == 1 else frontier) == 0:
        return 0
    result = await conn.execute(update(doomed).where(doomed.c.id.in_(select(found.c.id))).values(level=level))
    await conn.execute(delete(frontier))
    await conn.execute(insert(frontier).from_select(["id"], select(found.c.id)))
    return int(result.rowcount)


async def plan_doomed(conn: Connection) -> None:
    numbered = func.row_number().over(order_by=(doomed.c.level, doomed.c.repository_id, doomed.c.digest))
    await conn.execute(insert(plan_manifests).from_select(
        ["seq", "id", "repository_id", "digest", "size"],
        select(numbered, doomed.c.id, doomed.c.repository_id, doomed.c.digest, doomed.c.size)))


# -- links and blobs ---------------------------------------------------------------------------
def _referenced_by_survivor(digest: ColumnElement[Any], repository_id: ColumnElement[Any] | None = None) -> Any:
    """Whether a surviving manifest (of that repository, if given) references the blob."""
    conditions = [manifest_references.c.digest == digest, manifest_references.c.kind == "blob",
                  live.c.id == manifest_references.c.manifest_id]
    if repository_id is not None:
        conditions += [manifests.c.id == manifest_references.c.manifest_id, manifests.c.repository_id == repository_id]
    return exists().where(*conditions)


async def plan_links_and_blobs(conn: Connection, linked_before: float, now: float, postgres: bool) -> None:
    """Links no surviving manifest of their repository references, linked (or looked at) before
    `linked_before`; blobs that no surviving manifest references, no link left keeps and no mirror is
    fetching at `now`."""
    link_order = func.row_number().over(order_by=(repository_blobs.c.repository_id, repository_blobs.c.digest))
    await conn.execute(insert(plan_links).from_select(["seq", "repository_id", "digest"], select(
        link_order, repository_blobs.c.repository_id, repository_blobs.c.digest).where(
        repository_blobs.c.created_at < linked_before,
        ~_referenced_by_survivor(repository_blobs.c.digest, repository_blobs.c.repository_id))))
    await index(conn, postgres, plan_links)
    dropped = exists().where(plan_links.c.repository_id == repository_blobs.c.repository_id,
                             plan_links.c.digest == repository_blobs.c.digest)
    kept_link = exists().where(repository_blobs.c.digest == blobs.c.digest, ~dropped)
    await conn.execute(insert(plan_blobs).from_select(["seq", "digest", "size"], select(
        func.row_number().over(order_by=blobs.c.digest), blobs.c.digest, blobs.c.size).where(
        ~_referenced_by_survivor(blobs.c.digest),
        ~exists().where(mirror_fills.c.digest == blobs.c.digest, mirror_fills.c.expires_at >= now),
        ~kept_link)))


# -- reading the plan back ---------------------------------------------------------------------
def _named(table: Table) -> FromClause:
    return table.outerjoin(repositories, repositories.c.id == table.c.repository_id)


_PAGES: dict[str, Select[Any]] = {
    "tags": select(plan_tags, repositories.c.name.label("repository")).select_from(_named(plan_tags)),
    "manifests": select(plan_manifests, repositories.c.name.label("repository")).select_from(_named(plan_manifests)),
    "links": select(plan_links),
    "blobs": select(plan_blobs),
}


async def page(conn: Connection, kind: str, after: int, limit: int) -> list[Any]:
    """Up to `limit` rows of a plan ("tags", "manifests", "links" or "blobs") after `seq` `after`."""
    table = PLANS[kind]
    return list(await conn.execute(_PAGES[kind].where(table.c.seq > after).order_by(table.c.seq).limit(limit)))


async def count(conn: Connection, kind: str) -> int:
    return int((await conn.execute(select(func.count()).select_from(PLANS[kind]))).scalar() or 0)


async def planned_bytes(conn: Connection) -> int:
    return int((await conn.execute(select(func.coalesce(func.sum(plan_blobs.c.size), 0)))).scalar() or 0)

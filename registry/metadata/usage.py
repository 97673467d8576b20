"""Usage counters: the bytes of the distinct blobs linked into a set of repositories, read in
constant time.

A scope (a quota's namespace, the mirror cache) covers the repositories named by one of its
prefixes or under `prefix/`. Triggers on repository_blobs (migration 0010) keep `scope_blobs`
(how many of the scope's repositories link each blob) and `scope_usage` (their bytes, each blob
once) in the very transaction that links or unlinks, so a push can check its quota against the
total after its own link, and a concurrent one waits for it (PostgreSQL locks the scope's usage
row first). `track` makes the tracked scopes those the configuration wants, counting a new one
from scratch once.
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, func, insert, literal, or_, select, text

from registry.metadata.db import Connection, Database
from registry.metadata.schema import (blobs, repositories, repository_blobs, scope_blobs, scope_usage,
                                      usage_scopes)

MIRROR_CACHE = "mirror-cache"
TRIGGERS = ("count_link", "uncount_link")  # on repository_blobs (migration 0010)


def quota_scope(namespace: str) -> str:
    return f"quota:{namespace}"


_BYTES = select(scope_usage.c.bytes).where(scope_usage.c.scope == bindparam("scope"))


async def scope_bytes(conn: Connection, scope: str) -> int | None:
    """The scope's bytes, or None when it is not tracked (the configuration did not ask for it)."""
    value = (await conn.execute(_BYTES, {"scope": scope})).scalar()
    return None if value is None else int(value)


_HOLDS = select(scope_blobs.c.links).where(scope_blobs.c.scope == bindparam("scope"),
                                          scope_blobs.c.digest == bindparam("digest"))


async def holds(conn: Connection, scope: str, digest: str) -> bool:
    """Whether a repository of the scope links the blob already (linking it again costs nothing)."""
    return (await conn.execute(_HOLDS, {"scope": scope, "digest": digest})).first() is not None


async def blob_links(conn: Connection, scope: str, digest: str) -> int:
    """How many of the scope's repositories link the blob."""
    return int((await conn.execute(_HOLDS, {"scope": scope, "digest": digest})).scalar() or 0)


async def counted(db: Database, scope: str, prefixes: frozenset[str]) -> int:
    """The scope's bytes, counting it from scratch first if nothing tracks it yet (start-up tracks
    what the configuration names: this covers a scope dropped since by a process configured otherwise)."""
    async with db.read() as conn:
        used = await scope_bytes(conn, scope)
    if used is None:
        await track(db, {scope: prefixes}, keep_others=True)
        async with db.read() as conn:
            used = await scope_bytes(conn, scope)
    return used or 0


# -- keeping the tracked scopes in step with the configuration ---------------------------------
async def _tracked(conn: Connection) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for row in await conn.execute(select(usage_scopes.c.scope, usage_scopes.c.prefix)):
        found.setdefault(row.scope, set()).add(row.prefix)
    return {scope: frozenset(prefixes) for scope, prefixes in found.items()}


async def track(db: Database, wanted: dict[str, frozenset[str]], keep_others: bool = False) -> list[str]:
    """Track exactly the `wanted` scopes ({scope: prefixes}), and no other unless `keep_others`;
    returns those counted anew.

    A no-op read when nothing changed (every start but the first after a configuration change).
    Otherwise one write transaction: on PostgreSQL it first blocks new links and unlinks (a share
    lock on repository_blobs, which waits for those in flight), so the count from scratch and the
    triggers that take over from it agree.
    """
    def differs(tracked: dict[str, frozenset[str]]) -> list[str]:
        return [scope for scope, prefixes in tracked.items()
                if wanted.get(scope, None if keep_others else frozenset()) not in (None, prefixes)]

    async with db.read() as conn:
        tracked = await _tracked(conn)
    if not differs(tracked) and all(tracked.get(scope) == prefixes for scope, prefixes in wanted.items()):
        return []
    async with db.write() as conn:
        if not db.is_sqlite:  # waits for links in flight, and holds new ones until the count is in
            await conn.execute(text("LOCK TABLE repository_blobs IN ACCESS EXCLUSIVE MODE"))
        tracked = await _tracked(conn)
        stale = differs(tracked)
        fresh = [scope for scope, prefixes in wanted.items() if tracked.get(scope) != prefixes]
        for table in (usage_scopes, scope_usage, scope_blobs):
            if stale:
                await conn.execute(delete(table).where(table.c.scope.in_(stale)))
        for scope in fresh:
            await _count_from_scratch(conn, scope, wanted[scope])
        if not db.is_sqlite:
            # The triggers cost a function call per link; with no scope at all (no quota, no mirror)
            # they are off, and a garbage collection's unlinks run at full speed.
            switch = "ENABLE" if (set(tracked) - set(stale)) | set(fresh) else "DISABLE"
            for trigger in TRIGGERS:
                await conn.execute(text(f"ALTER TABLE repository_blobs {switch} TRIGGER {trigger}"))
    return sorted(fresh)


def covers(prefixes: frozenset[str]):
    """Repositories named by one of `prefixes` or under `prefix/` (the triggers' own test)."""
    return or_(*[(repositories.c.name == prefix) | (func.substr(repositories.c.name, 1, len(prefix) + 1)
                                                    == prefix + "/") for prefix in sorted(prefixes)])


async def _count_from_scratch(conn: Connection, scope: str, prefixes: frozenset[str]) -> None:
    await conn.execute(insert(usage_scopes), [{"scope": scope, "prefix": prefix} for prefix in sorted(prefixes)])
    # The scope's repositories first, then their links by the primary key: joined the other way, SQLite
    # walked all the links in digest order (10,000,000 of them: longer than a start-up may take).
    in_scope = select(repositories.c.id).where(covers(prefixes))
    counted = (select(literal(scope), repository_blobs.c.digest, func.count(), func.max(blobs.c.size))
               .select_from(repository_blobs.join(blobs, blobs.c.digest == repository_blobs.c.digest))
               .where(repository_blobs.c.repository_id.in_(in_scope)).group_by(repository_blobs.c.digest))
    await conn.execute(insert(scope_blobs).from_select(["scope", "digest", "links", "size"], counted))
    total = select(literal(scope), func.coalesce(func.sum(scope_blobs.c.size), 0)).where(scope_blobs.c.scope == scope)
    await conn.execute(insert(scope_usage).from_select(["scope", "bytes"], total))

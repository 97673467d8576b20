"""Immutable-tag rules added through the admin API: rows of a repository pattern and a tag pattern."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from registry.metadata.db import Connection, Database
from registry.metadata.schema import immutable_tag_rules as rules

MAX_ID = 2 ** 31 - 1  # the column is a 32-bit integer on PostgreSQL: a larger id names no row


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: int
    repositories: str
    tags: str
    created_at: float
    created_by: str | None


_ALL = (select(rules.c.id, rules.c.repositories, rules.c.tags, rules.c.created_at, rules.c.created_by)
        .order_by(rules.c.id))


async def list_rules(conn: Connection) -> list[RuleRow]:
    return [RuleRow(r.id, r.repositories, r.tags, r.created_at, r.created_by) for r in await conn.execute(_ALL)]


async def count(conn: Connection) -> int:
    return (await conn.execute(select(func.count()).select_from(rules))).scalar_one()


async def add_rule(db: Database, conn: Connection, repositories: str, tags: str,
                   created_by: str | None) -> tuple[RuleRow, bool]:
    """The rule's row, and whether this call added it (False: the same patterns were there already)."""
    inserted = await conn.execute(db.insert_ignore(rules), {"repositories": repositories, "tags": tags,
                                                            "created_at": time.time(), "created_by": created_by})
    found = (await conn.execute(_ALL.where(rules.c.repositories == repositories, rules.c.tags == tags))).one()
    return RuleRow(found.id, found.repositories, found.tags, found.created_at, found.created_by), inserted.rowcount > 0


async def delete_rule(conn: Connection, rule_id: int) -> bool:
    if not 0 < rule_id <= MAX_ID:
        return False
    return (await conn.execute(delete(rules).where(rules.c.id == rule_id))).rowcount > 0

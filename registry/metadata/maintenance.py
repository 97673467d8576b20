"""Maintenance jobs' rows: a lease so one job of a kind runs at a time across processes, and the
job's last report."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import or_, select, update

from registry.metadata.db import Connection, Database
from registry.metadata.schema import maintenance


async def take_lease(db: Database, conn: Connection, kind: str, owner: str, seconds: float) -> bool:
    """Claim (or extend) the job's lease; False while another owner holds a live one."""
    await conn.execute(db.insert_ignore(maintenance), {"kind": kind, "owner": None, "expires_at": None,
                                                       "last_report": None, "last_finished_at": None})
    now = time.time()
    result = await conn.execute(
        update(maintenance)
        .where(maintenance.c.kind == kind,
               or_(maintenance.c.owner.is_(None), maintenance.c.owner == owner, maintenance.c.expires_at < now))
        .values(owner=owner, expires_at=now + seconds))
    return result.rowcount == 1


async def release_lease(conn: Connection, kind: str, owner: str) -> None:
    await conn.execute(update(maintenance).where(maintenance.c.kind == kind, maintenance.c.owner == owner)
                       .values(owner=None, expires_at=None))


async def save_report(db: Database, conn: Connection, kind: str, report: dict[str, Any], finished: bool) -> None:
    """Keep the report; `finished` (a real run, not a dry run) also moves the schedule's clock."""
    await conn.execute(db.insert_ignore(maintenance), {"kind": kind, "owner": None, "expires_at": None,
                                                       "last_report": None, "last_finished_at": None})
    values: dict[str, Any] = {"last_report": json.dumps(report)}
    if finished:
        values["last_finished_at"] = report["finished_at"]
    await conn.execute(update(maintenance).where(maintenance.c.kind == kind).values(**values))


async def last_report(conn: Connection, kind: str) -> dict[str, Any] | None:
    text = (await conn.execute(select(maintenance.c.last_report).where(maintenance.c.kind == kind))).scalar()
    return json.loads(text) if text else None


async def last_finished_at(conn: Connection, kind: str) -> float | None:
    return (await conn.execute(select(maintenance.c.last_finished_at).where(maintenance.c.kind == kind))).scalar()

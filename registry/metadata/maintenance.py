"""Maintenance jobs' rows: the job's last report (its lease: registry/metadata/leases.py)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update

from registry.metadata.db import Connection, Database
from registry.metadata.schema import maintenance


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

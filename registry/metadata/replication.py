"""Replication rows: rules (their definition, lease, push-event cursor and schedule) and the history
of their runs. The rules' meaning lives in registry/replication/; here they are JSON text and numbers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update

from registry.metadata.db import Connection, Database
from registry.metadata.events import Cursor, last_cursor
from registry.metadata.leases import LeaseKind
from registry.metadata.schema import replication_rules, replication_runs

# One process runs a rule at a time; the row exists before its lease is taken (ensure_rules, save_rule).
RULE = LeaseKind("replication rule", replication_rules, replication_rules.c.name, replication_rules.c.owner,
                 replication_rules.c.expires_at)
COUNTERS = ("manifests", "blobs", "mounted", "present", "bytes", "deleted", "errors")


@dataclass(frozen=True, slots=True)
class RuleRow:
    name: str
    definition: dict[str, Any]
    origin: str
    owner: str | None
    expires_at: float | None
    cursor: Cursor
    next_run_at: float | None
    run_requested_at: float | None


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    rule: str
    trigger: str
    status: str
    owner: str
    started_at: float
    finished_at: float | None
    manifests: int
    blobs: int
    mounted: int
    present: int
    bytes: int
    deleted: int
    errors: int
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _rule(row: Any) -> RuleRow:
    return RuleRow(row.name, json.loads(row.definition), row.origin, row.owner, row.expires_at,
                   (row.cursor_txid, row.cursor_seq), row.next_run_at, row.run_requested_at)


def _run(row: Any) -> RunRow:
    detail = json.loads(row.detail) if row.detail else {}
    return RunRow(row.id, row.rule, row.trigger, row.status, row.owner, row.started_at, row.finished_at,
                  row.manifests, row.blobs, row.mounted, row.present, row.bytes, row.deleted, row.errors, detail)


async def rules(conn: Connection) -> list[RuleRow]:
    return [_rule(r) for r in await conn.execute(select(replication_rules).order_by(replication_rules.c.name))]


async def rule(conn: Connection, name: str) -> RuleRow | None:
    row = (await conn.execute(select(replication_rules).where(replication_rules.c.name == name))).first()
    return _rule(row) if row else None


async def save_rule(db: Database, conn: Connection, name: str, definition: dict[str, Any], origin: str) -> None:
    """Create or replace a rule's definition; a new rule's push cursor starts at the newest event
    (it replicates what is pushed from now on; a run by schedule or by hand copies what exists)."""
    text = json.dumps(definition, sort_keys=True)
    changed = await conn.execute(update(replication_rules).where(replication_rules.c.name == name)
                                 .values(definition=text, origin=origin, updated_at=time.time()))
    if changed.rowcount:
        return
    start = await last_cursor(conn)
    await conn.execute(db.insert_ignore(replication_rules), {
        "name": name, "definition": text, "origin": origin, "owner": None, "expires_at": None,
        "cursor_txid": start[0], "cursor_seq": start[1], "next_run_at": None, "run_requested_at": None,
        "updated_at": time.time()})


async def delete_rule(conn: Connection, name: str) -> bool:
    return (await conn.execute(delete(replication_rules).where(replication_rules.c.name == name))).rowcount == 1


async def drop_config_rules_except(conn: Connection, names: list[str]) -> None:
    """Rules the config file made and no longer names go (their history stays)."""
    await conn.execute(delete(replication_rules).where(replication_rules.c.origin == "config",
                                                       replication_rules.c.name.not_in(names)))


async def set_next_run(conn: Connection, name: str, at: float | None) -> None:
    await conn.execute(update(replication_rules).where(replication_rules.c.name == name).values(next_run_at=at))


async def request_run(conn: Connection, name: str) -> bool:
    result = await conn.execute(update(replication_rules).where(replication_rules.c.name == name)
                                .values(run_requested_at=time.time()))
    return result.rowcount == 1


async def clear_request(conn: Connection, name: str, before: float) -> None:
    """The request is served by a run that began after it was made."""
    await conn.execute(update(replication_rules).where(replication_rules.c.name == name,
                                                       replication_rules.c.run_requested_at <= before)
                       .values(run_requested_at=None))


_ADVANCE = (update(replication_rules)
            .where(replication_rules.c.name == bindparam("rule"), replication_rules.c.owner == bindparam("claimant"))
            .values(cursor_txid=bindparam("new_txid"), cursor_seq=bindparam("new_seq")))


async def advance(conn: Connection, name: str, owner: str, cursor: Cursor) -> bool:
    """Move the rule's push-event cursor; False when `owner` no longer holds the rule's lease."""
    result = await conn.execute(_ADVANCE, {"rule": name, "claimant": owner, "new_txid": cursor[0],
                                           "new_seq": cursor[1]})
    return result.rowcount == 1


# -- runs -------------------------------------------------------------------------------------
async def start_run(conn: Connection, rule_name: str, trigger: str, owner: str) -> int:
    result = await conn.execute(replication_runs.insert().values(
        rule=rule_name, trigger=trigger, status="running", owner=owner, started_at=time.time(), finished_at=None,
        detail=None, **{name: 0 for name in COUNTERS}))
    return int(result.inserted_primary_key[0])


async def finish_run(conn: Connection, run_id: int, status: str, counts: dict[str, int],
                     detail: dict[str, Any]) -> None:
    await conn.execute(update(replication_runs).where(replication_runs.c.id == run_id).values(
        status=status, finished_at=time.time(), detail=json.dumps(detail), **counts))


async def interrupt_stale_runs(conn: Connection, rule_name: str) -> int:
    """Runs of `rule_name` still marked running when its lease is taken anew: their process died
    (the lease had expired), so they are history now; the next run picks up where they stopped."""
    result = await conn.execute(update(replication_runs)
                                .where(replication_runs.c.rule == rule_name, replication_runs.c.status == "running")
                                .values(status="interrupted", finished_at=time.time()))
    return int(result.rowcount)


async def left_running(conn: Connection, rule_name: str) -> bool:
    """Whether a run of the rule is still marked running (asked when no process holds its lease: the run's
    process died)."""
    query = (select(replication_runs.c.id)
             .where(replication_runs.c.rule == rule_name, replication_runs.c.status == "running").limit(1))
    return (await conn.execute(query)).first() is not None


async def runs(conn: Connection, rule_name: str | None, limit: int, before: int | None = None) -> list[RunRow]:
    """Newest first; `before`: a run id, for the next page."""
    query = select(replication_runs).order_by(replication_runs.c.id.desc()).limit(limit)
    if rule_name is not None:
        query = query.where(replication_runs.c.rule == rule_name)
    if before is not None:
        query = query.where(replication_runs.c.id < before)
    return [_run(r) for r in await conn.execute(query)]


async def run(conn: Connection, run_id: int) -> RunRow | None:
    row = (await conn.execute(select(replication_runs).where(replication_runs.c.id == run_id))).first()
    return _run(row) if row else None


async def totals(conn: Connection) -> list[tuple[str, str, int, int, int]]:
    """(rule, status, runs, bytes, blobs) for the metrics, summed over the history."""
    query = (select(replication_runs.c.rule, replication_runs.c.status, func.count(),
                    func.coalesce(func.sum(replication_runs.c.bytes), 0),
                    func.coalesce(func.sum(replication_runs.c.blobs), 0))
             .group_by(replication_runs.c.rule, replication_runs.c.status))
    return [(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in await conn.execute(query)]

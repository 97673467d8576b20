"""Admin endpoints for replication rules and their runs.

GET    /admin/api/replication/rules                 every rule: its definition (no password), origin, last run,
                                                     next scheduled run, whether a process runs it now
PUT    /admin/api/replication/rules/{name}          create or replace a rule (a body without `password` keeps
                                                     the stored one); 403 for a rule of the config file
DELETE /admin/api/replication/rules/{name}          delete a rule made through the API (its history stays); 403
                                                     while a process runs it
POST   /admin/api/replication/rules/{name}/run      ask for a run now (202); one process takes it within a second
GET    /admin/api/replication/runs?rule=&limit=&last=   the history, newest first, paged by run id
GET    /admin/api/replication/runs/{id}             one run, with its errors and what it copied
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from registry.admin.common import bounded_number, json_body, paged
from registry.errors import RegistryError
from registry.http_errors import HTTPError
from registry.metadata import replication as rows
from registry.numbers import ascii_decimal
from registry.replication.rules import NAME, ReplicationConfigError, parse_rule
from registry.replication.service import Replication, rule_of

REPLICATION_KEY = web.AppKey("replication", Replication)
BASE = "/admin/api/replication"


def _service(request: web.Request) -> Replication:
    return request.app[REPLICATION_KEY]


def _rule_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not NAME.fullmatch(name):
        raise RegistryError("NOT_FOUND", "no such replication rule", detail={"name": name[:100]})
    return name


async def list_rules(request: web.Request) -> web.Response:
    service = _service(request)
    async with service.db.read() as conn:
        found = await rows.rules(conn)
        last = {row.name: newest[0] for row in found if (newest := await rows.runs(conn, row.name, 1))}
    shown: list[dict[str, Any]] = []
    for row in found:
        try:
            definition = rule_of(row).as_json()
        except ReplicationConfigError as exc:
            definition = {"name": row.name, "invalid": str(exc)}
        latest = last.get(row.name)
        running = row.expires_at is not None and row.expires_at >= time.time()
        shown.append({**definition, "origin": row.origin, "next_run_at": row.next_run_at,
                      "run_requested_at": row.run_requested_at, "running": running,
                      "last_run": latest.as_json() if latest else None})
    return web.json_response({"rules": shown})


async def put_rule(request: web.Request) -> web.Response:
    name = _rule_name(request)
    body = await json_body(request)
    if body.get("name") is None:
        body["name"] = name
    if body["name"] != name:
        raise HTTPError("UNSUPPORTED", "the body's name differs from the URL's", status=400)
    service = _service(request)
    async with service.db.read() as conn:
        existing = await rows.rule(conn, name)
    if existing is not None and existing.origin == "config":
        raise RegistryError("DENIED", "this rule is defined in the config file (replication.rules); change it there",
                            detail={"name": name})
    if body.get("password") is None and existing is not None:  # absent or null: the stored one stays
        body["password"] = existing.definition.get("password", "")
    try:
        rule = parse_rule(body, "rule")
    except ReplicationConfigError as exc:
        raise HTTPError("UNSUPPORTED", str(exc), status=400) from None
    async with service.db.write() as conn:
        await rows.save_rule(service.db, conn, name, rule.as_json(with_secret=True), "api")
        await rows.set_next_run(conn, name, None)  # the schedule may have changed: the loop sets it anew
    service.wake()
    return web.json_response(rule.as_json(), status=200 if existing else 201)


async def delete_rule(request: web.Request) -> web.Response:
    name = _rule_name(request)
    service = _service(request)
    async with service.db.write() as conn:
        existing = await rows.rule(conn, name)
        if existing is None:
            raise RegistryError("NOT_FOUND", "no such replication rule", detail={"name": name})
        if existing.origin == "config":
            raise RegistryError("DENIED", "this rule is defined in the config file (replication.rules); remove it "
                                "there", detail={"name": name})
        if existing.expires_at is not None and existing.expires_at >= time.time():
            # Its lease is its row: deleted now, a rule made again by the name could run beside this run.
            raise RegistryError("DENIED", "this rule is running now; delete it when the run has ended",
                                detail={"name": name, "owner": existing.owner})
        await rows.delete_rule(conn, name)
    return web.json_response({"deleted": name})


async def run_now(request: web.Request) -> web.Response:
    name = _rule_name(request)
    service = _service(request)
    async with service.db.write() as conn:
        if not await rows.request_run(conn, name):
            raise RegistryError("NOT_FOUND", "no such replication rule", detail={"name": name})
    service.wake()
    return web.json_response({"rule": name, "requested": True}, status=202)


async def list_runs(request: web.Request) -> web.Response:
    rule = request.query.get("rule") or None
    if rule is not None and not NAME.fullmatch(rule):
        raise HTTPError("UNSUPPORTED", "rule: a rule's name", status=400)
    limit = bounded_number(request, "limit", 50, 1, 500)
    raw_last = request.query.get("last") or None
    last = ascii_decimal(raw_last, 18) if raw_last is not None else None
    if raw_last is not None and last is None:
        raise HTTPError("UNSUPPORTED", "last: a run id from the previous page's `next`", status=400)
    async with _service(request).db.read() as conn:
        found = await rows.runs(conn, rule, limit + 1, last)
    return paged("runs", [r.as_json() for r in found], limit, "id")


async def show_run(request: web.Request) -> web.Response:
    run_id = ascii_decimal(request.match_info["id"], 18)
    found = None
    if run_id is not None:
        async with _service(request).db.read() as conn:
            found = await rows.run(conn, run_id)
    if found is None:
        raise RegistryError("NOT_FOUND", "no such replication run", detail={"id": request.match_info["id"][:40]})
    return web.json_response(found.as_json())


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{BASE}/rules", list_rules)
    app.router.add_put(f"{BASE}/rules/{{name}}", put_rule)
    app.router.add_delete(f"{BASE}/rules/{{name}}", delete_rule)
    app.router.add_post(f"{BASE}/rules/{{name}}/run", run_now)
    app.router.add_get(f"{BASE}/runs", list_runs)
    app.router.add_get(f"{BASE}/runs/{{id}}", show_run)

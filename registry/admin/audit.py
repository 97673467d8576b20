"""Admin endpoints for the audit trail, and the record of admin actions themselves.

GET /admin/api/audit          entries newest first: ?repository= &actor= &action= &since= &until=
                              &limit= (1-1000) &before= (the `next` of the previous page)
GET /admin/api/audit/export   the same filters, every matching entry: ?format=csv or json (a download)

`since` and `until` are seconds since the epoch or ISO 8601 (`2026-05-01`, `2026-05-01T12:00:00Z`;
UTC when no offset is given). Every admin request that is not a read (a delete, a gc run, a test
event, ...) is an audit entry of its own, with its outcome: `admin_actions` records it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from registry.admin.common import bounded_number
from registry.api.recording import note
from registry.errors import RegistryError
from registry.events.audit import ACTIONS, Audit, Filters, Position, csv_header, csv_line, entry
from registry.events.journal import Change
from registry.http_errors import HTTPError, http_status
from registry.reference import validate_name

AUDIT_KEY = web.AppKey("audit", Audit)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NUMBER = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_CURSOR = re.compile(r"([0-9]{1,12}\.?[0-9]{0,9})-([0-9]{1,19})")  # `next`: when-seq of the page's last entry
MAX_ACTOR_LENGTH = 255


def _bad(message: str, name: str, value: str) -> HTTPError:
    return HTTPError("UNSUPPORTED", message, detail={name: value[:100]}, status=400)


def _time(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    if _NUMBER.fullmatch(raw):
        return float(raw)
    try:
        when = dt.datetime.fromisoformat(raw) if len(raw) <= 40 and raw.isascii() else None
    except ValueError:
        when = None
    if when is None:
        raise _bad(f"{name}: seconds since the epoch, or an ISO 8601 date or time (2026-05-01T12:00:00Z)", name, raw)
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def filters(request: web.Request) -> Filters:
    query = request.query
    repository = query.get("repository") or None
    if repository is not None:
        validate_name(repository)  # 400 NAME_INVALID
    actor = query.get("actor") or None
    if actor is not None and (len(actor) > MAX_ACTOR_LENGTH or not actor.isprintable()):  # NUL, surrogates
        raise _bad(f"actor: an account name, at most {MAX_ACTOR_LENGTH} printable characters", "actor", actor)
    action = query.get("action") or None
    if action is not None and action not in ACTIONS:
        raise _bad(f"action: one of {', '.join(ACTIONS)}", "action", action)
    return Filters(repository, actor, action, _time(request, "since"), _time(request, "until"))


def _before(request: web.Request) -> Position | None:
    raw = request.query.get("before") or None
    if raw is None:
        return None
    match = _CURSOR.fullmatch(raw)
    if match is None or int(match[2]) >= 2 ** 63:
        raise RegistryError("PAGINATION_NUMBER_INVALID", "before: the `next` of the previous page",
                            detail={"before": raw[:40]})
    return float(match[1]), int(match[2])


def _cursor(position: Position | None) -> str | None:
    return None if position is None else f"{position[0]!r}-{position[1]}"


async def list_entries(request: web.Request) -> web.Response:
    limit = bounded_number(request, "limit", 100, 1, 1000)
    found, following = await request.app[AUDIT_KEY].page(filters(request), limit, _before(request))
    return web.json_response({"entries": found, "next": _cursor(following)})


async def export(request: web.Request) -> web.StreamResponse:
    kind = request.query.get("format", "json")
    if kind not in ("csv", "json"):
        raise _bad("format: csv or json", "format", kind)
    chosen = filters(request)
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if kind == "csv" else "application/json",
        "Content-Disposition": f'attachment; filename="audit.{kind}"', "Cache-Control": "no-store"})
    await response.prepare(request)
    first = True
    await response.write((csv_header() if kind == "csv" else "[").encode())
    async for row in request.app[AUDIT_KEY].rows(chosen):
        if kind == "csv":
            await response.write(csv_line(row).encode())
        else:
            await response.write(((",\n" if not first else "\n") + json.dumps(entry(row))).encode())
        first = False
    if kind == "json":
        await response.write(b"\n]\n")
    await response.write_eof()
    return response


@web.middleware
async def admin_actions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every admin request that changes something (not GET, HEAD or OPTIONS) becomes an audit entry
    with its outcome. Requests no route took are not actions."""
    if (request.method in ("GET", "HEAD", "OPTIONS") or not request.path.startswith("/admin/api/")
            or request.match_info.http_exception is not None):
        return await handler(request)
    try:
        response = await handler(request)
    except Exception as exc:
        _record(request, http_status(exc) if isinstance(exc, RegistryError) else
                exc.status if isinstance(exc, web.HTTPException) else 500)
        raise
    _record(request, response.status)
    return response


def _record(request: web.Request, status: int) -> None:
    info = request.match_info
    outcome = "ok" if status < 400 else "denied" if status in (401, 403) else "failed"
    note(request, Change("admin", "admin", info.get("name"), digest=info.get("digest"), tag=info.get("tag"),
                         outcome=outcome, detail={"method": request.method, "path": request.path[:300],
                                                  "status": status}))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/api/audit", list_entries)
    app.router.add_get("/admin/api/audit/export", export)

"""Admin endpoints for maintenance: run gc, retention or fsck (or dry-run them), read the last report.

POST /admin/api/gc         {"dry_run": bool}
POST /admin/api/retention  {"dry_run": bool}
POST /admin/api/fsck       {"sample": float | null, "repair": bool}
GET  the same paths        the last report (404 when there is none yet)
"""

from __future__ import annotations

from aiohttp import web

from registry.admin.common import json_body
from registry.errors import RegistryError
from registry.http_errors import HTTPError
from registry.gc.jobs import KINDS, Maintenance, MaintenanceBusy

MAINTENANCE_KEY = web.AppKey("maintenance", Maintenance)


async def run(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    body = await json_body(request)
    maintenance = request.app[MAINTENANCE_KEY]
    try:
        if kind == "fsck":
            sample = body.get("sample")
            if sample is not None and (isinstance(sample, bool) or not isinstance(sample, (int, float))
                                       or not 0 <= sample <= 1):
                raise HTTPError("UNSUPPORTED", "sample must be a number from 0 to 1, or null for all",
                                    status=400)
            report = await maintenance.fsck(sample, repair=_flag(body, "repair"))
        else:
            report = await getattr(maintenance, kind)(dry_run=_flag(body, "dry_run"))
    except MaintenanceBusy as exc:
        raise HTTPError("UNSUPPORTED", str(exc), status=409) from None
    return web.json_response(report)


async def last(request: web.Request) -> web.Response:
    report = await request.app[MAINTENANCE_KEY].last_report(request.match_info["kind"])
    if report is None:
        raise RegistryError("NOT_FOUND", f"no {request.match_info['kind']} report yet")
    return web.json_response(report)


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise HTTPError("UNSUPPORTED", f"{name} must be true or false", status=400)
    return value


def add_routes(app: web.Application) -> None:
    from registry.admin.metrics import record_maintenance  # late: metrics pick their directory at start-up

    app[MAINTENANCE_KEY].listeners.append(record_maintenance)
    kinds = "|".join(KINDS)
    app.router.add_post(f"/admin/api/{{kind:{kinds}}}", run)
    app.router.add_get(f"/admin/api/{{kind:{kinds}}}", last)

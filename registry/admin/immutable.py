"""Admin endpoints for immutable-tag rules (registry/gc/immutable.py).

GET    /admin/api/immutable-tags       every rule in force, the configuration's first (read-only: no id)
POST   /admin/api/immutable-tags       {"repositories": "prod/**", "tags": "v*"}: 201 and the rule; 200 and
                                       the stored rule when the database has the same patterns already
DELETE /admin/api/immutable-tags/ID    a rule the admin API added

A change applies at once in every process: each move or delete of a tag reads the rules in its transaction.
"""

from __future__ import annotations

from aiohttp import web

from registry.admin.common import inventory, json_body
from registry.auth.gate import identity_of
from registry.errors import RegistryError
from registry.gc.immutable import ImmutableRuleError, parse_rule
from registry.http_errors import HTTPError
from registry.numbers import ascii_decimal

BASE = "/admin/api/immutable-tags"


async def list_rules(request: web.Request) -> web.Response:
    return web.json_response({"rules": await inventory(request).immutable_rules()})


async def add_rule(request: web.Request) -> web.Response:
    try:
        rule = parse_rule(await json_body(request), "rule")
    except ImmutableRuleError as exc:
        raise HTTPError("UNSUPPORTED", str(exc), status=400) from None
    identity = identity_of(request)
    by = identity.name or f"anonymous from {identity.address}"
    stored, added = await inventory(request).add_immutable_rule(rule, by[:255])
    return web.json_response(stored, status=201 if added else 200)


async def delete_rule(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    rule_id = ascii_decimal(raw, 18)
    if rule_id is None:
        raise RegistryError("NOT_FOUND", "no such immutable-tag rule: ids are numbers", detail={"id": raw[:40]})
    await inventory(request).delete_immutable_rule(rule_id)
    return web.json_response({"deleted": rule_id})


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, list_rules)
    app.router.add_post(BASE, add_rule)
    app.router.add_delete(f"{BASE}/{{id}}", delete_rule)

"""Admin endpoints under /admin/ (the gate requires the admin role for all of them), the page for
people, and /metrics."""

from aiohttp import web

from registry.auth.gate import GATE_KEY, identity_of


async def whoami(request: web.Request) -> web.Response:
    identity = identity_of(request)
    return web.json_response({"name": identity.name, "kind": identity.kind, "groups": list(identity.groups),
                              "admin": request.app[GATE_KEY].is_admin(identity), "address": identity.address})


def add_routes(app: web.Application) -> None:
    from registry.admin import (audit, immutable, maintenance, metrics, mirror, notifications, page, replication,
                                repositories, storage, uploads)
    from registry.admin.common import INVENTORY_KEY
    from registry.api.common import CONTENT_KEY
    from registry.content.inventory import Inventory

    app[INVENTORY_KEY] = Inventory(app[CONTENT_KEY])
    app.router.add_get("/admin/api/whoami", whoami)
    mirror.add_routes(app)
    maintenance.add_routes(app)
    immutable.add_routes(app)
    repositories.add_routes(app)
    storage.add_routes(app)
    uploads.add_routes(app)
    notifications.add_routes(app)
    replication.add_routes(app)
    audit.add_routes(app)
    page.add_routes(app)
    metrics.add_routes(app)

"""Admin endpoints under /admin/ (the gate requires the admin role for all of them)."""

from aiohttp import web

from registry.auth.gate import GATE_KEY, identity_of


async def whoami(request: web.Request) -> web.Response:
    identity = identity_of(request)
    return web.json_response({"name": identity.name, "kind": identity.kind, "groups": list(identity.groups),
                              "admin": request.app[GATE_KEY].is_admin(identity), "address": identity.address})


def add_routes(app: web.Application) -> None:
    from registry.admin import maintenance, mirror

    app.router.add_get("/admin/api/whoami", whoami)
    mirror.add_routes(app)
    maintenance.add_routes(app)

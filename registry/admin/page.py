"""The web page for people (/admin/) and the OpenAPI description of the admin API.

Plain files shipped in the package: no build step, nothing fetched from elsewhere at run time.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
OPENAPI = HERE / "openapi.json"
# The page loads only its own files; the API answers JSON to the same origin.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP,
                                                            "Cache-Control": "no-cache"})


async def to_index(request: web.Request) -> web.Response:
    # Returned, not raised: the error middleware renders raised HTTP exceptions as JSON errors.
    return web.Response(status=302, headers={"Location": "/admin/"})


async def openapi(request: web.Request) -> web.FileResponse:
    return web.FileResponse(OPENAPI, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin", to_index)
    app.router.add_get("/admin/", index)
    app.router.add_get("/admin/api/openapi.json", openapi)
    app.router.add_static("/admin/static", STATIC, append_version=False)

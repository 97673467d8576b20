"""Admin endpoints for blob upload sessions in progress."""

from __future__ import annotations

from aiohttp import web

from registry.admin.common import inventory, page_params, paged
from registry.api.common import upload_id


async def list_uploads(request: web.Request) -> web.Response:
    limit, last = page_params(request)
    return paged("uploads", await inventory(request).uploads(limit + 1, last), limit, "id")


async def cancel_upload(request: web.Request) -> web.Response:
    session = upload_id(request, "id")
    await inventory(request).cancel_upload(session)
    return web.json_response({"cancelled": session})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/api/uploads", list_uploads)
    app.router.add_delete("/admin/api/uploads/{id}", cancel_upload)

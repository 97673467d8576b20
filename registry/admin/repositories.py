"""Admin endpoints for repositories, their tags and manifests, and deleting any of them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from registry.admin.common import inventory, name_param, page_params, paged
from registry.api.common import MIRROR_KEY, is_printable_key, require_deletes
from registry.http_errors import HTTPError
from registry.reference import validate_tag

NAME = "{name:.+}"
FLAG_VALUES = {"": False, "0": False, "false": False, "1": True, "true": True}


async def list_repositories(request: web.Request) -> web.Response:
    limit, last = page_params(request)
    search = request.query.get("q", "").strip() or None
    if search is not None and not is_printable_key(search):  # names are printable ASCII; NUL breaks PostgreSQL
        raise HTTPError("UNSUPPORTED", "q: at most 255 printable ASCII characters", status=400,
                            detail={"q": search[:100]})
    found = await inventory(request).repositories(search, limit + 1, last)
    return paged("repositories", [_with_origin(request, r) for r in found], limit, "name")


async def get_repository(request: web.Request) -> web.Response:
    return web.json_response(_with_origin(request, await inventory(request).repository(name_param(request))))


def _with_origin(request: web.Request, repository: dict[str, Any]) -> dict[str, Any]:
    """`mirror_of`: the alias of the upstream whose cache this repository is, or None for a local one."""
    mirror = request.app.get(MIRROR_KEY)
    owner = mirror.router.cache_owner(repository["name"]) if mirror is not None else None
    return {**repository, "mirror_of": owner.alias if owner is not None else None}


async def delete_repository(request: web.Request) -> web.Response:
    name = name_param(request)
    require_deletes(request)
    return web.json_response(await inventory(request).delete_repository(name))


async def list_tags(request: web.Request) -> web.Response:
    name = name_param(request)
    limit, last = page_params(request)
    return paged("tags", await inventory(request).tags(name, limit + 1, last), limit, "tag")


async def delete_tag(request: web.Request) -> web.Response:
    name = name_param(request)
    tag = validate_tag(request.match_info["tag"])
    require_deletes(request)
    await inventory(request).delete_tag(name, tag)
    return web.json_response({"deleted": f"{name}:{tag}"})


async def list_untagged(request: web.Request) -> web.Response:
    name = name_param(request)
    limit, last = page_params(request)
    return paged("manifests", await inventory(request).untagged(name, limit + 1, last), limit, "cursor")


async def get_manifest(request: web.Request) -> web.Response:
    return web.json_response(await inventory(request).manifest(name_param(request), request.match_info["digest"]))


async def delete_manifest(request: web.Request) -> web.Response:
    name = name_param(request)
    digest = request.match_info["digest"]
    with_referrers = _flag(request, "referrers")
    require_deletes(request)
    referrers = await inventory(request).delete_manifest(name, digest, with_referrers)
    return web.json_response({"deleted": f"{name}@{digest}", "referrers": referrers})


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "")
    if value not in FLAG_VALUES:
        raise HTTPError("UNSUPPORTED", f"{name}: true or false", status=400, detail={name: value[:20]})
    return FLAG_VALUES[value]


def add_routes(app: web.Application) -> None:
    r = app.router
    base = "/admin/api/repositories"
    r.add_get(base, list_repositories)
    # The longer routes first: `{name:.+}` would swallow `/tags` (as in the v2 API, a repository
    # whose name ends in /tags or /manifests/... is reached by those routes).
    r.add_get(f"{base}/{NAME}/tags", list_tags)
    r.add_delete(f"{base}/{NAME}/tags/{{tag}}", delete_tag)
    r.add_get(f"{base}/{NAME}/untagged", list_untagged)
    r.add_get(f"{base}/{NAME}/manifests/{{digest}}", get_manifest)
    r.add_delete(f"{base}/{NAME}/manifests/{{digest}}", delete_manifest)
    r.add_get(f"{base}/{NAME}", get_repository)
    r.add_delete(f"{base}/{NAME}", delete_repository)

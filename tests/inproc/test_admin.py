"""The admin JSON API under /admin/api (registry/admin/openapi.json): repositories, their tags and
manifests, deletes, upload sessions, storage totals, maintenance reports, and who may call it: with
auth mode none the loopback callers that may push; with basic auth only the configured admins."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest

from tests.inproc.conftest import MakeClient
from tests.inproc.helpers import Client, OCI_MANIFEST, error_code, push_image, put_manifest, repository_name

pytestmark = pytest.mark.asyncio

REPOSITORIES = "/admin/api/repositories"


async def test_whoami_says_a_loopback_caller_is_admin_without_auth(api: Client) -> None:
    resp = await api.get("/admin/api/whoami")
    assert resp.status == 200
    body = await resp.json()
    assert body["admin"] is True and body["address"] == "127.0.0.1"


async def test_repositories_are_listed_in_pages_and_searched(api: Client) -> None:
    for name in ("admin/b", "admin/a", "other/c"):
        await push_image(api, name, "latest")
    first = await (await api.get(REPOSITORIES, params={"limit": "2"})).json()
    assert [r["name"] for r in first["repositories"]] == ["admin/a", "admin/b"]
    assert first["next"] == "admin/b"
    rest = await (await api.get(REPOSITORIES, params={"limit": "2", "last": first["next"]})).json()
    assert [r["name"] for r in rest["repositories"]] == ["other/c"] and rest["next"] is None
    found = await (await api.get(REPOSITORIES, params={"q": "other"})).json()
    assert [r["name"] for r in found["repositories"]] == ["other/c"]
    assert found["repositories"][0]["tag_count"] == 1


async def test_a_repository_and_its_tags(api: Client) -> None:
    name = repository_name()
    digest, body = await push_image(api, name, "v1")
    assert (await put_manifest(api, name, "v2", body)).status == 201
    repository = await (await api.get(f"{REPOSITORIES}/{name}")).json()
    assert repository["name"] == name and repository["tag_count"] == 2 and repository["manifest_count"] == 1
    tags = await (await api.get(f"{REPOSITORIES}/{name}/tags")).json()
    assert [(t["tag"], t["digest"]) for t in tags["tags"]] == [("v1", digest), ("v2", digest)]
    assert tags["next"] is None
    manifest = await (await api.get(f"{REPOSITORIES}/{name}/manifests/{digest}")).json()
    assert manifest["digest"] == digest and sorted(manifest["tags"]) == ["v1", "v2"]
    assert manifest["media_type"] == OCI_MANIFEST


async def test_deleting_a_tag_removes_it_from_the_v2_api_too(api: Client) -> None:
    name = repository_name()
    digest, body = await push_image(api, name, "v1")
    assert (await put_manifest(api, name, "v2", body)).status == 201
    resp = await api.delete(f"{REPOSITORIES}/{name}/tags/v1")
    assert resp.status == 200 and await resp.json() == {"deleted": f"{name}:v1"}
    assert (await (await api.get(f"/v2/{name}/tags/list")).json())["tags"] == ["v2"]
    assert await error_code(await api.get(f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST}),
                            404) == "MANIFEST_UNKNOWN"
    assert (await api.head(f"/v2/{name}/manifests/{digest}")).status == 200
    assert await error_code(await api.delete(f"{REPOSITORIES}/{name}/tags/v1"), 404) == "MANIFEST_UNKNOWN"


async def test_deleting_a_manifest_and_a_repository(api: Client) -> None:
    name = repository_name()
    digest, _ = await push_image(api, name, "v1")
    other, _ = await push_image(api, name, "v2")
    resp = await api.delete(f"{REPOSITORIES}/{name}/manifests/{digest}")
    assert resp.status == 200 and await resp.json() == {"deleted": f"{name}@{digest}", "referrers": []}
    assert (await api.head(f"/v2/{name}/manifests/{digest}")).status == 404
    gone = await api.delete(f"{REPOSITORIES}/{name}")
    assert gone.status == 200
    assert await gone.json() == {"deleted": name, "tags": 1, "manifests": 1, "uploads": 0}
    assert await error_code(await api.get(f"{REPOSITORIES}/{name}"), 404) == "NAME_UNKNOWN"
    assert await error_code(await api.get(f"/v2/{name}/manifests/{other}"), 404) == "NAME_UNKNOWN"


async def test_admin_errors_are_the_spec_json(api: Client) -> None:
    name = repository_name()
    await push_image(api, name, "v1")
    for path, status, code in [
        (f"{REPOSITORIES}/never/pushed", 404, "NAME_UNKNOWN"),
        (f"{REPOSITORIES}/never/pushed/tags", 404, "NAME_UNKNOWN"),
        (f"{REPOSITORIES}/{name}/manifests/sha256:{'0' * 64}", 404, "MANIFEST_UNKNOWN"),
        (f"{REPOSITORIES}?limit=0", 400, "PAGINATION_NUMBER_INVALID"),
        (f"{REPOSITORIES}?limit=1001", 400, "PAGINATION_NUMBER_INVALID"),
        (f"{REPOSITORIES}/Bad/Name", 400, "NAME_INVALID"),
        ("/admin/api/mirror", 404, "NOT_FOUND"),  # no upstreams configured
        ("/admin/api/nothing-here", 404, "NOT_FOUND"),
    ]:
        assert await error_code(await api.get(path), status) == code, path


async def test_upload_sessions_are_listed_and_cancelled(api: Client) -> None:
    name = repository_name()
    started = await api.post(f"/v2/{name}/blobs/uploads/")
    session = started.headers["Docker-Upload-UUID"]
    listed = await (await api.get("/admin/api/uploads")).json()
    assert [(u["id"], u["repository"]) for u in listed["uploads"]] == [(session, name)]
    resp = await api.delete(f"/admin/api/uploads/{session}")
    assert resp.status == 200 and await resp.json() == {"cancelled": session}
    assert await error_code(await api.get(started.headers["Location"]), 404) == "BLOB_UPLOAD_UNKNOWN"
    assert (await (await api.get("/admin/api/uploads")).json())["uploads"] == []


async def test_storage_totals_count_what_was_pushed(api: Client) -> None:
    await push_image(api, repository_name(), "v1")
    totals = await (await api.get("/admin/api/storage")).json()
    assert (totals["repositories"], totals["manifests"], totals["tags"], totals["blobs"]) == (1, 1, 1, 2)
    assert totals["physical_bytes"] > 0
    history = await api.get("/admin/api/storage/history", params={"points": "5"})
    assert history.status == 200 and isinstance((await history.json())["points"], list)


async def test_a_gc_dry_run_reports_and_is_the_last_report(api: Client) -> None:
    assert await error_code(await api.get("/admin/api/gc"), 404) == "NOT_FOUND"
    await push_image(api, repository_name(), "v1")
    run = await api.post("/admin/api/gc", json={"dry_run": True})
    assert run.status == 200, await run.text()
    report = await run.json()
    last = await api.get("/admin/api/gc")
    assert last.status == 200 and await last.json() == report
    bad = await api.post("/admin/api/gc", json={"dry_run": "yes"})
    assert await error_code(bad, 400) == "UNSUPPORTED"


async def test_admin_deletes_follow_delete_enabled(make_client: MakeClient) -> None:
    client = await make_client(delete_enabled="false")
    name = repository_name()
    await push_image(client, name, "v1")
    assert await error_code(await client.delete(f"{REPOSITORIES}/{name}/tags/v1"), 405) == "UNSUPPORTED"
    assert (await (await client.get(f"{REPOSITORIES}/{name}/tags")).json())["tags"][0]["tag"] == "v1"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    """alice (an admin) and bob (not one); bcrypt at its lowest cost, as checks here need no strength."""
    path = tmp_path / "htpasswd"
    path.write_text("".join(f"{user}:{bcrypt.hashpw(user.encode() + b'-pw', bcrypt.gensalt(rounds=4)).decode()}\n"
                            for user in ("alice", "bob")))
    return path


async def test_with_basic_auth_only_admins_may_call_the_admin_api(make_client: MakeClient, htpasswd: Path) -> None:
    client = await make_client(auth_mode="basic", auth_htpasswd=str(htpasswd), auth_admins="alice")
    anonymous = await client.get(REPOSITORIES)
    assert await error_code(anonymous, 401) == "UNAUTHORIZED"
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = await client.get(REPOSITORIES, headers=basic("alice", "not-her-password"))
    assert await error_code(wrong, 401) == "UNAUTHORIZED"
    assert await error_code(await client.get(REPOSITORIES, headers=basic("bob", "bob-pw")), 403) == "DENIED"
    assert await error_code(await client.delete(f"{REPOSITORIES}/any/thing/tags/v1"), 401) == "UNAUTHORIZED"
    admin = await client.get(REPOSITORIES, headers=basic("alice", "alice-pw"))
    assert admin.status == 200 and await admin.json() == {"repositories": [], "next": None}
    whoami = await (await client.get("/admin/api/whoami", headers=basic("alice", "alice-pw"))).json()
    assert whoami["name"] == "alice" and whoami["admin"] is True

"""Every admin endpoint against a real server: answers, pages, searches, deletes and errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import (OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, assert_error, descriptor, encode, push_blob,
                               push_image, push_index, push_manifest, random_bytes, sha256, start_upload,
                               unique_name)
from tests.support.backends import SETUPS, postgres_s3_registry
from tests.support.server import RegistryProcess

ACCEPT = {"Accept": OCI_MANIFEST}


@pytest.fixture(scope="module", params=SETUPS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """The queries behind the API run on SQLite and on PostgreSQL (with S3 for the image configs)."""
    root = tmp_path_factory.mktemp(request.param.replace("+", "-"))
    if request.param == "sqlite+filesystem":
        registry = RegistryProcess(root / "data")
    else:
        registry = postgres_s3_registry(root / "data", request.getfixturevalue("postgres"),
                                        request.getfixturevalue("swift_s3"))
    with registry:
        yield registry


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: " \
                                           f"{response.status_code} {response.text[:500]}"
    return response.json()


def push_labelled_image(client: httpx.Client, name: str, tag: str, layers: list[bytes]) -> tuple[str, dict]:
    """An image whose config has created, entrypoint, env and labels; returns (digest, config)."""
    config = {"created": "2025-05-01T12:00:00Z", "architecture": "arm64", "os": "linux", "variant": "v8",
              "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "MODE=prod"],
                         "Labels": {"org.opencontainers.image.source": "https://example.test/app"},
                         "WorkingDir": "/srv", "ExposedPorts": {"8080/tcp": {}}},
              "rootfs": {"type": "layers", "diff_ids": []}, "history": [{"created_by": "a"}, {"created_by": "b"}]}
    config_bytes = encode(config)
    push_blob(client, name, config_bytes)
    for layer in layers:
        push_blob(client, name, layer)
    manifest = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config_bytes),
                       "layers": [descriptor(OCI_LAYER, layer) for layer in layers]})
    return push_manifest(client, name, tag, manifest), config


# -- repositories ---------------------------------------------------------------------------------

def test_repository_list_has_sizes_activity_and_pages(admin: httpx.Client):
    prefix = unique_name("list")
    names = [f"{prefix}/r{i}" for i in range(5)]
    shared = random_bytes(1000)
    for name in names:
        push_blob(admin, name, shared)  # one blob in every repository: stored once
        push_image(admin, name, "1.0")
    found, last, pages = [], None, 0
    while True:
        params = {"q": prefix, "limit": 2, **({"last": last} if last else {})}
        page = ok(admin.get("/admin/api/repositories", params=params))
        pages += 1
        assert len(page["repositories"]) <= 2
        found += page["repositories"]
        last = page["next"]
        if last is None:
            break
    assert pages == 3
    assert [r["name"] for r in found] == names
    for repo in found:
        assert repo["tag_count"] == 1 and repo["manifest_count"] == 1
        assert repo["last_push"] is not None and repo["last_pull"] is None
        # config + one 128-byte layer + the shared blob; only the shared blob is not unique.
        assert repo["size"] - repo["unique_size"] == 1000
        assert repo["unique_size"] > 128


def test_repository_search_is_a_substring_match(admin: httpx.Client):
    name = unique_name("needle")
    push_image(admin, name, "x")
    page = ok(admin.get("/admin/api/repositories", params={"q": name.split("/")[1][3:11].upper()}))
    assert [r["name"] for r in page["repositories"]] == [name]
    assert ok(admin.get("/admin/api/repositories", params={"q": "no-such-repository-%_"}))["repositories"] == []


def test_one_repository_and_unknown_or_invalid_names(admin: httpx.Client):
    name = unique_name("one")
    push_image(admin, name, "a")
    push_image(admin, name, "b")
    repo = ok(admin.get(f"/admin/api/repositories/{name}"))
    assert repo["name"] == name and repo["tag_count"] == 2 and repo["manifest_count"] == 2
    assert_error(admin.get("/admin/api/repositories/nobody/here"), 404, "NAME_UNKNOWN")
    assert_error(admin.get("/admin/api/repositories/Not_Valid"), 400, "NAME_INVALID")


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "1e3", ""])
def test_bad_page_sizes(admin: httpx.Client, limit: str):
    for path in ("/admin/api/repositories", "/admin/api/uploads"):
        response = admin.get(path, params={"limit": limit})
        if limit == "":
            assert response.status_code == 200  # empty means the default
        else:
            assert_error(response, 400, "PAGINATION_NUMBER_INVALID")


def test_last_pull_comes_from_the_manifests(tmp_path):
    """`last_pull` is manifests.last_pulled_at (set by manifest GETs, in batches); here it is set as
    that batch would, straight in the database, since the batching is not part of this suite."""
    import sqlite3

    with RegistryProcess(tmp_path / "data") as registry, httpx.Client(base_url=registry.url) as admin:
        name = unique_name("pulled")
        pushed = push_image(admin, name, "v")
        with sqlite3.connect(registry.data_dir / "registry.db") as db:
            db.execute("UPDATE manifests SET last_pulled_at = 1700000000.5 WHERE digest = ?", (pushed.digest,))
        assert ok(admin.get(f"/admin/api/repositories/{name}"))["last_pull"] == 1700000000.5
        tag = ok(admin.get(f"/admin/api/repositories/{name}/tags"))["tags"][0]
        assert tag["last_pulled_at"] == 1700000000.5


# -- tags and manifests ---------------------------------------------------------------------------

def test_tags_have_digest_size_platforms_and_pages(admin: httpx.Client):
    name = unique_name("tags")
    layers = [random_bytes(300), random_bytes(500)]
    digest, config = push_labelled_image(admin, name, "t0", layers)
    for i in range(1, 5):
        push_manifest(admin, name, f"t{i}", admin.get(f"/v2/{name}/manifests/t0", headers=ACCEPT).content)
    seen, last = [], None
    while True:
        page = ok(admin.get(f"/admin/api/repositories/{name}/tags", params={"limit": 3, **({"last": last} if last else {})}))
        seen += page["tags"]
        if page["next"] is None:
            break
        last = page["next"]
    assert [t["tag"] for t in seen] == [f"t{i}" for i in range(5)]
    first = seen[0]
    assert first["digest"] == digest and first["media_type"] == OCI_MANIFEST
    assert first["size"] == len(encode(config)) + 800
    assert first["platforms"] == ["linux/arm64/v8"]
    assert first["created"] == "2025-05-01T12:00:00Z"


def test_tags_of_unknown_repository(admin: httpx.Client):
    assert_error(admin.get("/admin/api/repositories/nobody/x/tags"), 404, "NAME_UNKNOWN")


def test_manifest_details_config_layers_and_tags(admin: httpx.Client):
    name = unique_name("detail")
    layers = [random_bytes(200)]
    digest, _ = push_labelled_image(admin, name, "v1", layers)
    push_manifest(admin, name, "stable", admin.get(f"/v2/{name}/manifests/v1", headers=ACCEPT).content)
    m = ok(admin.get(f"/admin/api/repositories/{name}/manifests/{digest}"))
    assert m["tags"] == ["stable", "v1"]
    assert m["config"]["entrypoint"] == ["/bin/app"] and m["config"]["cmd"] == ["--serve"]
    assert m["config"]["env"] == ["PATH=/bin", "MODE=prod"]
    assert m["config"]["labels"] == {"org.opencontainers.image.source": "https://example.test/app"}
    assert m["config"]["exposed_ports"] == ["8080/tcp"] and m["config"]["history"] == 2
    assert m["layers"] == [{"digest": sha256(layers[0]), "media_type": OCI_LAYER, "size": 200, "stored": True}]
    assert m["referrers"] == [] and m["parents"] == []


def test_index_details_platforms_and_children(admin: httpx.Client):
    name = unique_name("index")
    index = push_index(admin, name, "multi")
    tag = ok(admin.get(f"/admin/api/repositories/{name}/tags"))["tags"][0]
    assert tag["platforms"] == ["linux/amd64", "linux/arm64"]
    child_sizes = [ok(admin.get(f"/admin/api/repositories/{name}/manifests/{c.digest}"))["size"] for c in index.children]
    assert tag["size"] == sum(child_sizes)
    detail = ok(admin.get(f"/admin/api/repositories/{name}/manifests/{index.digest}"))
    assert [c["digest"] for c in detail["manifests"]] == [c.digest for c in index.children]
    assert all(c["stored"] for c in detail["manifests"])
    child = ok(admin.get(f"/admin/api/repositories/{name}/manifests/{index.children[0].digest}"))
    assert child["parents"] == [index.digest] and child["tags"] == []


def test_referrers_are_listed_with_their_artifact_type(admin: httpx.Client):
    name = unique_name("refs")
    subject = push_image(admin, name, "app")
    signature = push_image(admin, name, artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
                           subject=subject.descriptor(), empty_config=True)
    detail = ok(admin.get(f"/admin/api/repositories/{name}/manifests/{subject.digest}"))
    assert [(r["digest"], r["artifact_type"]) for r in detail["referrers"]] == \
        [(signature.digest, "application/vnd.dev.cosign.artifact.sig.v1+json")]
    assert ok(admin.get(f"/admin/api/repositories/{name}/manifests/{signature.digest}"))["subject"] == subject.digest


def test_manifest_errors(admin: httpx.Client):
    name = unique_name("merr")
    push_image(admin, name, "v")
    assert_error(admin.get(f"/admin/api/repositories/{name}/manifests/sha256:{'0' * 64}"), 404, "MANIFEST_UNKNOWN")
    assert_error(admin.get(f"/admin/api/repositories/{name}/manifests/sha256:nothex"), 400, "DIGEST_INVALID")
    assert_error(admin.get(f"/admin/api/repositories/{name}/manifests/latest"), 400, "DIGEST_INVALID")
    assert_error(admin.get(f"/admin/api/repositories/nobody/manifests/sha256:{'0' * 64}"), 404, "NAME_UNKNOWN")


# -- deletes --------------------------------------------------------------------------------------

def test_delete_tag_keeps_the_manifest(admin: httpx.Client):
    name = unique_name("deltag")
    pushed = push_image(admin, name, "gone")
    push_manifest(admin, name, "kept", pushed.body)
    assert ok(admin.delete(f"/admin/api/repositories/{name}/tags/gone")) == {"deleted": f"{name}:gone"}
    assert_error(admin.get(f"/v2/{name}/manifests/gone", headers=ACCEPT), 404, "MANIFEST_UNKNOWN")
    assert admin.get(f"/v2/{name}/manifests/kept", headers=ACCEPT).status_code == 200
    assert_error(admin.delete(f"/admin/api/repositories/{name}/tags/gone"), 404, "MANIFEST_UNKNOWN")
    assert_error(admin.delete(f"/admin/api/repositories/{name}/tags/bad:tag"), 400, "TAG_INVALID")
    assert_error(admin.delete("/admin/api/repositories/nobody/tags/x"), 404, "NAME_UNKNOWN")


def test_delete_manifest_takes_its_tags(admin: httpx.Client):
    name = unique_name("delman")
    pushed = push_image(admin, name, "a")
    push_manifest(admin, name, "b", pushed.body)
    ok(admin.delete(f"/admin/api/repositories/{name}/manifests/{pushed.digest}"))
    assert_error(admin.get(f"/v2/{name}/manifests/{pushed.digest}", headers=ACCEPT), 404, "MANIFEST_UNKNOWN")
    assert ok(admin.get(f"/admin/api/repositories/{name}/tags"))["tags"] == []
    assert_error(admin.delete(f"/admin/api/repositories/{name}/manifests/{pushed.digest}"), 404, "MANIFEST_UNKNOWN")
    assert_error(admin.delete(f"/admin/api/repositories/{name}/manifests/sha256:zz"), 400, "DIGEST_INVALID")


def test_delete_repository_removes_everything_but_shared_blobs(admin: httpx.Client):
    name, other = unique_name("delrepo"), unique_name("keeper")
    shared = random_bytes(700)
    push_blob(admin, name, shared)
    push_blob(admin, other, shared)
    pushed = push_image(admin, name, "v1")
    push_image(admin, name, "v2")
    upload = start_upload(admin, name).headers["Location"]
    result = ok(admin.delete(f"/admin/api/repositories/{name}"))
    assert result == {"deleted": name, "tags": 2, "manifests": 2, "uploads": 1}
    assert_error(admin.get(f"/admin/api/repositories/{name}"), 404, "NAME_UNKNOWN")
    assert_error(admin.get(f"/v2/{name}/manifests/v1", headers=ACCEPT), 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")
    assert_error(admin.get(f"/v2/{name}/blobs/{pushed.blobs[0]}"), 404, "BLOB_UNKNOWN")
    assert_error(admin.get(upload), 404, "BLOB_UPLOAD_UNKNOWN")
    assert admin.get(f"/v2/{other}/blobs/{sha256(shared)}").content == shared
    assert name not in admin.get("/v2/_catalog").json()["repositories"]
    assert_error(admin.delete(f"/admin/api/repositories/{name}"), 404, "NAME_UNKNOWN")


def test_deletes_refused_when_disabled(tmp_path):
    with RegistryProcess(tmp_path / "data", args=["--no-delete-enabled"]) as server, \
            httpx.Client(base_url=server.url) as client:
        pushed = push_image(client, "keep/me", "v")
        for path in ("/admin/api/repositories/keep/me", "/admin/api/repositories/keep/me/tags/v",
                     f"/admin/api/repositories/keep/me/manifests/{pushed.digest}"):
            assert_error(client.delete(path), 405, "UNSUPPORTED")
        assert client.get("/v2/keep/me/manifests/v", headers=ACCEPT).status_code == 200


# -- storage --------------------------------------------------------------------------------------

def test_storage_totals_count_dedup(tmp_path):
    with RegistryProcess(tmp_path / "data") as server, httpx.Client(base_url=server.url) as client:
        empty = ok(client.get("/admin/api/storage"))
        assert empty["physical_bytes"] == 0 and empty["dedup_ratio"] is None
        assert ok(client.get("/admin/api/storage/history"))["points"] == []
        data = random_bytes(4096)
        for i in range(3):
            push_blob(client, f"dedup/r{i}", data)
        start_upload(client, "dedup/r0")
        totals = ok(client.get("/admin/api/storage"))
        assert totals["physical_bytes"] == 4096 and totals["logical_bytes"] == 3 * 4096
        assert totals["dedup_saved_bytes"] == 2 * 4096 and totals["dedup_ratio"] == 3.0
        assert totals["blobs"] == 1 and totals["repositories"] == 3 and totals["uploads"] == 1
        assert totals["backend"] == "FilesystemStore"
        points = ok(client.get("/admin/api/storage/history", params={"points": 5}))["points"]
        assert len(points) == 5
        assert points[-1]["physical_bytes"] == 4096 and points[-1]["logical_bytes"] == 3 * 4096
        assert [p["time"] for p in points] == sorted(p["time"] for p in points)


@pytest.mark.parametrize("points", ["1", "501", "x", "-3"])
def test_storage_history_bad_points(admin: httpx.Client, points: str):
    assert_error(admin.get("/admin/api/storage/history", params={"points": points}), 400, "PAGINATION_NUMBER_INVALID")


# -- uploads --------------------------------------------------------------------------------------

def test_uploads_in_progress_pages_and_cancel(admin: httpx.Client):
    name = unique_name("uploads")
    locations = [start_upload(admin, name).headers["Location"] for _ in range(3)]
    chunk = random_bytes(1234)
    patched = admin.patch(locations[0], content=chunk, headers={"Content-Type": "application/octet-stream"})
    assert patched.status_code == 202
    mine, last = [], None
    while True:
        page = ok(admin.get("/admin/api/uploads", params={"limit": 2, **({"last": last} if last else {})}))
        mine += [u for u in page["uploads"] if u["repository"] == name]
        if page["next"] is None:
            break
        last = page["next"]
    assert len(mine) == 3
    sizes = {u["id"]: u["size"] for u in mine}
    first_id = locations[0].rstrip("/").split("/")[-1].split("?")[0]
    assert sizes[first_id] == 1234 and sorted(sizes.values()) == [0, 0, 1234]
    assert not any(u["writing"] for u in mine)
    assert ok(admin.delete(f"/admin/api/uploads/{first_id}")) == {"cancelled": first_id}
    assert_error(admin.get(locations[0]), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(admin.delete(f"/admin/api/uploads/{first_id}"), 404, "BLOB_UPLOAD_UNKNOWN")


# -- mirror, page, description, access --------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("GET", "/admin/api/mirror"), ("GET", "/admin/api/mirror/history"), ("GET", "/admin/api/mirror/pins"),
    ("POST", "/admin/api/mirror/evict")])
def test_mirror_endpoints_without_upstreams(admin: httpx.Client, method: str, path: str):
    assert_error(admin.request(method, path), 404, "NOT_FOUND")


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"image": 3}', b"{}"])
def test_mirror_actions_check_their_body(admin: httpx.Client, body: bytes):
    for method, path in (("POST", "/admin/api/mirror/prewarm"), ("POST", "/admin/api/mirror/pins"),
                         ("DELETE", "/admin/api/mirror/pins")):
        assert_error(admin.request(method, path, content=body), 400, "UNSUPPORTED")


def test_openapi_describes_every_admin_route(admin: httpx.Client, server: RegistryProcess):
    spec = ok(admin.get("/admin/api/openapi.json"))
    assert spec["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    served = {
        ("/admin/api/whoami", "GET"), ("/admin/api/repositories", "GET"),
        ("/admin/api/repositories/{name}", "GET"), ("/admin/api/repositories/{name}", "DELETE"),
        ("/admin/api/repositories/{name}/tags", "GET"), ("/admin/api/repositories/{name}/tags/{tag}", "DELETE"),
        ("/admin/api/repositories/{name}/untagged", "GET"),
        ("/admin/api/repositories/{name}/manifests/{digest}", "GET"),
        ("/admin/api/repositories/{name}/manifests/{digest}", "DELETE"),
        ("/admin/api/storage", "GET"), ("/admin/api/storage/history", "GET"), ("/admin/api/uploads", "GET"),
        ("/admin/api/uploads/{id}", "DELETE"), ("/admin/api/mirror", "GET"), ("/admin/api/mirror/history", "GET"),
        ("/admin/api/mirror/prewarm", "POST"), ("/admin/api/mirror/pins", "GET"), ("/admin/api/mirror/pins", "POST"),
        ("/admin/api/mirror/pins", "DELETE"), ("/admin/api/mirror/evict", "POST"),
        *{(f"/admin/api/{kind}", method) for kind in ("gc", "retention", "fsck") for method in ("GET", "POST")},
        ("/admin/api/immutable-tags", "GET"), ("/admin/api/immutable-tags", "POST"),
        ("/admin/api/immutable-tags/{id}", "DELETE"),
        ("/admin/api/notifications", "GET"), ("/admin/api/notifications/{name}/test", "POST"),
        ("/admin/api/audit", "GET"), ("/admin/api/audit/export", "GET"),
        ("/admin/api/replication/rules", "GET"), ("/admin/api/replication/rules/{name}", "PUT"),
        ("/admin/api/replication/rules/{name}", "DELETE"), ("/admin/api/replication/rules/{name}/run", "POST"),
        ("/admin/api/replication/runs", "GET"), ("/admin/api/replication/runs/{id}", "GET"),
    }
    assert documented == served


def test_whoami_and_the_page_files(admin: httpx.Client):
    me = ok(admin.get("/admin/api/whoami"))
    assert me["admin"] is True and me["kind"] == "anonymous"
    redirect = admin.get("/admin")
    assert redirect.status_code == 302 and redirect.headers["Location"] == "/admin/"
    page = admin.get("/admin/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("admin.js", "charts.js", "admin.css"):
        assert admin.get(f"/admin/static/{asset}").status_code == 200
    # Nothing on the page comes from elsewhere.
    for text in (page.text, admin.get("/admin/static/admin.js").text, admin.get("/admin/static/admin.css").text):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert_error(admin.get("/admin/static/../openapi.json"), 404)


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """Mode none, but loopback may not push, so it is not an admin either."""
    args = ["--auth-anonymous-push-networks", "10.99.0.0/16"]
    with RegistryProcess(tmp_path_factory.mktemp("locked") / "data", args=args) as registry:
        yield registry


@pytest.mark.parametrize("method, path", [
    ("GET", "/admin/"), ("GET", "/admin/static/admin.js"), ("GET", "/admin/api/openapi.json"),
    ("GET", "/admin/api/repositories"), ("DELETE", "/admin/api/repositories/a/b"), ("GET", "/admin/api/storage"),
    ("GET", "/admin/api/uploads"), ("DELETE", "/admin/api/uploads/x"), ("GET", "/admin/api/immutable-tags"),
    ("POST", "/admin/api/immutable-tags"), ("DELETE", "/admin/api/immutable-tags/1")])
def test_everything_under_admin_needs_the_admin_role(locked: RegistryProcess, method: str, path: str):
    response = httpx.request(method, f"{locked.url}{path}")
    assert_error(response, 403, "DENIED")


def test_errors_are_json_with_the_registry_shape(admin: httpx.Client):
    body = admin.get("/admin/api/no/such/endpoint").json()
    assert body["errors"][0]["code"] == "NOT_FOUND"
    response = admin.put("/admin/api/storage")
    assert_error(response, 405, "UNSUPPORTED")
    assert json.loads(response.text)["errors"][0]["message"]

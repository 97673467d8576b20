"""Bad input: each gets the spec's error in JSON, and nothing is stored."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.support.http import request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _stored(registry, digest: str) -> bool:
    hexpart = digest.split(":")[1]
    return (Path(registry.data_dir) / "blobs" / "sha256" / hexpart[:2] / hexpart).exists()


def _db_count(registry, sql: str, *args) -> int:
    with sqlite3.connect(Path(registry.data_dir) / "registry.db") as conn:
        return conn.execute(sql, args).fetchone()[0]


def _error_code(response) -> str:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    return body["errors"][0]["code"]


@pytest.fixture
def repo() -> str:
    return f"bad/{uuid.uuid4().hex[:10]}"


def test_wrong_digest_at_put_stores_nothing(client, registry, repo):
    data = os.urandom(4096)
    wrong = _sha(b"something else")
    location = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    response = client.put(location, params={"digest": wrong}, content=data)
    assert response.status_code == 400 and _error_code(response) == "DIGEST_INVALID"
    assert not _stored(registry, wrong) and not _stored(registry, _sha(data))
    assert client.head(f"/v2/{repo}/blobs/{wrong}").status_code == 404
    # The session is gone with its bytes: nothing lingers in staging.
    assert client.get(location).status_code == 404
    assert _db_count(registry, "select count(*) from blobs where digest in (?, ?)", wrong, _sha(data)) == 0


def test_wrong_digest_monolithic_stores_nothing(client, registry, repo):
    data = os.urandom(4096)
    wrong = _sha(b"not this")
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": wrong}, content=data)
    assert response.status_code == 400 and _error_code(response) == "DIGEST_INVALID"
    assert not _stored(registry, wrong) and not _stored(registry, _sha(data))


def test_size_mismatch_between_content_range_and_length(client, registry, repo):
    location = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    response = client.patch(location, content=b"x" * 10, headers={"Content-Range": "0-19"})
    assert response.status_code == 400 and _error_code(response) == "SIZE_INVALID"
    status = client.get(location)
    assert status.status_code == 204 and status.headers["Range"] == "0-0"
    assert _db_count(registry, "select size from uploads where id = ?", location.rsplit("/", 1)[1]) == 0


def test_manifest_referencing_missing_blob_stores_nothing(client, registry, repo):
    config = b"{}"
    client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": _sha(config)}, content=config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": _sha(config), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _sha(b"missing"), "size": 7}],
    }).encode()
    response = client.put(f"/v2/{repo}/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert response.status_code == 400 and _error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 404
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == []
    assert _db_count(registry, "select count(*) from manifests where digest = ?", _sha(manifest)) == 0


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b'{"schemaVersion": 2, "mediaType": 5}',
                                  b'{"schemaVersion": 1, "name": "x", "fsLayers": []}', b"\xff\xfe"])
def test_malformed_manifest_stores_nothing(client, registry, repo, body):
    response = client.put(f"/v2/{repo}/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert response.status_code == 400 and _error_code(response) == "MANIFEST_INVALID"
    assert _db_count(registry, "select count(*) from manifests where digest = ?", _sha(body)) == 0


@pytest.mark.parametrize("name", ["bad/../b", "..", "bad/..", "Upper/case", "b" * 300, "bad//b", "-lead",
                                  "trail-", "bad/.b", "bad/./b", "bad/%2e%2e/y", "bad%2Fslash", "bad/%2F/x"])
def test_invalid_names_are_name_invalid(registry, name):
    # Raw requests: an HTTP library would normalise the dot segments away before sending.
    for method, path in (("POST", f"/v2/{name}/blobs/uploads/"), ("GET", f"/v2/{name}/tags/list"),
                         ("GET", f"/v2/{name}/manifests/latest"), ("PUT", f"/v2/{name}/manifests/latest")):
        status, headers, body = request(registry.host, method, path, body=b"{}" if method == "PUT" else None)
        assert status == 400, (method, path, status, body)
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["errors"][0]["code"] == "NAME_INVALID"
    assert _db_count(registry, "select count(*) from repositories where name like 'bad/%' and name not like "
                               "'bad/__________'") == 0
    assert _db_count(registry, "select count(*) from repositories where name = ?", name.lower()) == 0


def test_longest_valid_name_works(client):
    name = "/".join(["c" * 50] * 4) + "/" + "c" * 51  # 255 characters
    assert len(name) == 255
    assert client.post(f"/v2/{name}/blobs/uploads/").status_code == 202
    response = client.post(f"/v2/{name}c/blobs/uploads/")
    assert response.status_code == 400 and _error_code(response) == "NAME_INVALID"


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_unknown_upload_id(client, repo, method):
    params = {"digest": _sha(b"")} if method == "PUT" else None
    response = client.request(method, f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}", params=params)
    assert response.status_code == 404 and _error_code(response) == "BLOB_UPLOAD_UNKNOWN"


def test_upload_id_of_another_repository_is_unknown(client, repo):
    location = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    response = client.patch(f"/v2/{repo}-other/blobs/uploads/{upload_id}", content=b"data")
    assert response.status_code == 404 and _error_code(response) == "BLOB_UPLOAD_UNKNOWN"


@pytest.mark.parametrize("upload_id", ["..%2F..%2Fregistry.db", "%2e%2e", "a%00b"])
def test_traversal_in_upload_id(client, registry, repo, upload_id):
    response = client.get(f"/v2/{repo}/blobs/uploads/{upload_id}")
    assert response.status_code in (400, 404)
    assert (Path(registry.data_dir) / "registry.db").exists()


@pytest.mark.parametrize("digest", ["sha256:xyz", "notadigest", "sha256:" + "a" * 63, "md5:" + "a" * 32,
                                    "sha256:" + "A" * 64, "sha256:", ":" + "a" * 64])
def test_malformed_digests_are_400_json_never_500(client, repo, digest):
    for method, path in (("GET", f"/v2/{repo}/blobs/{digest}"), ("DELETE", f"/v2/{repo}/blobs/{digest}"),
                         ("GET", f"/v2/{repo}/referrers/{digest}"),
                         ("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}"),
                         ("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from=x")):
        response = client.request(method, path)
        assert response.status_code == 400, (method, path, response.status_code, response.text)
        assert _error_code(response) == "DIGEST_INVALID", response.text
    # A manifest by a malformed digest names nothing: 404, as Distribution reads it (a tag it does not
    # have). Without a colon it is a well-formed tag that does not exist, perhaps in no repository.
    response = client.get(f"/v2/{repo}/manifests/{digest}")
    assert response.status_code == 404, response.text
    assert _error_code(response) == ("MANIFEST_UNKNOWN" if ":" in digest else "NAME_UNKNOWN"), response.text

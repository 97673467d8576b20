"""Cross-repository blob mount: POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.api.helpers import (
    assert_error,
    blob_file,
    path_of,
    push_blob,
    random_bytes,
    random_digest,
    sha256,
    unique_name,
    with_query,
)


def mount(client: httpx.Client, name: str, digest: str, source: str | None) -> httpx.Response:
    params = {"mount": digest}
    if source is not None:
        params["from"] = source
    return client.post(f"/v2/{name}/blobs/uploads/", params=params, headers={"Content-Length": "0"})


def files_under(root: Path) -> list[Path]:
    return sorted(Path(dirpath) / f for dirpath, _, files in os.walk(root) for f in files)


def test_mount_existing_blob_is_201(client: httpx.Client) -> None:
    source, target = unique_name("mount"), unique_name("mount")
    digest = push_blob(client, source, random_bytes(64))
    resp = mount(client, target, digest, source)
    assert resp.status_code == 201, resp.content


def test_mount_sets_location_to_blob_url(client: httpx.Client) -> None:
    source, target = unique_name("mount"), unique_name("mount")
    digest = push_blob(client, source, random_bytes(64))
    resp = mount(client, target, digest, source)
    assert path_of(resp.headers.get("Location", "")) == f"/v2/{target}/blobs/{digest}"


def test_mount_sets_docker_content_digest(client: httpx.Client) -> None:
    source, target = unique_name("mount"), unique_name("mount")
    digest = push_blob(client, source, random_bytes(64))
    resp = mount(client, target, digest, source)
    assert resp.headers.get("Docker-Content-Digest") == digest


def test_mounted_blob_is_readable_in_target(client: httpx.Client) -> None:
    source, target = unique_name("mount"), unique_name("mount")
    data = random_bytes(64)
    digest = push_blob(client, source, data)
    assert mount(client, target, digest, source).status_code == 201
    resp = client.get(f"/v2/{target}/blobs/{digest}")
    assert resp.status_code == 200
    assert resp.content == data
    assert client.head(f"/v2/{target}/blobs/{digest}").status_code == 200


def test_mounted_blob_stays_readable_in_source(client: httpx.Client) -> None:
    source, target = unique_name("mount"), unique_name("mount")
    data = random_bytes(64)
    digest = push_blob(client, source, data)
    assert mount(client, target, digest, source).status_code == 201
    assert client.get(f"/v2/{source}/blobs/{digest}").content == data


def test_mount_into_existing_target_is_201(client: httpx.Client) -> None:
    source, target = unique_name("mount"), unique_name("mount")
    digest = push_blob(client, source, random_bytes(64))
    push_blob(client, target, random_bytes(8))
    assert mount(client, target, digest, source).status_code == 201


def test_mount_unknown_digest_starts_upload_202(client: httpx.Client) -> None:
    source, target = unique_name("mount"), unique_name("mount")
    push_blob(client, source, random_bytes(64))
    resp = mount(client, target, random_digest(), source)
    assert resp.status_code == 202
    assert path_of(resp.headers.get("Location", "")).startswith(f"/v2/{target}/blobs/uploads/")
    assert resp.headers.get("Docker-Upload-UUID")


def test_mount_from_unknown_repository_starts_upload_202(client: httpx.Client) -> None:
    holder, target = unique_name("mount"), unique_name("mount")
    digest = push_blob(client, holder, random_bytes(64))
    resp = mount(client, target, digest, unique_name("nowhere"))
    assert resp.status_code == 202
    assert path_of(resp.headers.get("Location", "")).startswith(f"/v2/{target}/blobs/uploads/")


def test_mount_without_from_starts_upload_202(client: httpx.Client) -> None:
    source, target = unique_name("mount"), unique_name("mount")
    digest = push_blob(client, source, random_bytes(64))
    resp = mount(client, target, digest, None)
    assert resp.status_code == 202
    assert path_of(resp.headers.get("Location", "")).startswith(f"/v2/{target}/blobs/uploads/")


def test_mount_from_repository_without_the_blob_starts_upload_202(client: httpx.Client) -> None:
    """The blob exists in the registry, but not in `from`: no mount, so nothing leaks across repositories."""
    holder, source, target = unique_name("mount"), unique_name("mount"), unique_name("mount")
    digest = push_blob(client, holder, random_bytes(64))
    push_blob(client, source, random_bytes(8))
    resp = mount(client, target, digest, source)
    assert resp.status_code == 202
    assert_error(client.get(f"/v2/{target}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_failed_mount_session_accepts_upload(client: httpx.Client) -> None:
    source, target = unique_name("mount"), unique_name("mount")
    push_blob(client, source, random_bytes(8))
    data = random_bytes(64)
    resp = mount(client, target, sha256(data), source)
    assert resp.status_code == 202
    done = client.put(with_query(resp.headers["Location"], digest=sha256(data)), content=data,
                      headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201
    assert client.get(f"/v2/{target}/blobs/{sha256(data)}").content == data


def test_mount_does_not_copy_blob_file(fresh_registry) -> None:
    with httpx.Client(base_url=fresh_registry.url, timeout=60) as client:
        source, target = unique_name("mount"), unique_name("mount")
        data = random_bytes(4096)
        digest = push_blob(client, source, data)
        blobs_root = fresh_registry.data_dir / "blobs"
        before = files_under(blobs_root)
        assert mount(client, target, digest, source).status_code == 201
        after = files_under(blobs_root)
        assert after == before
        assert blob_file(fresh_registry.data_dir, digest).read_bytes() == data
        hex_ = digest.split(":")[1]
        assert [p for p in after if p.name == hex_] == [blob_file(fresh_registry.data_dir, digest)]

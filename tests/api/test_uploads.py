"""Blob uploads: POST /v2/<name>/blobs/uploads/ and GET/PATCH/PUT/DELETE on the upload URL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import (
    assert_error,
    path_of,
    push_blob_single_post,
    random_bytes,
    random_digest,
    sha256,
    start_upload,
    unique_name,
    with_query,
)

OCTET = {"Content-Type": "application/octet-stream"}


def patch_chunk(client: httpx.Client, location: str, data: bytes, start: int | None = None) -> httpx.Response:
    headers = dict(OCTET)
    if start is not None:
        headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
    return client.patch(location, content=data, headers=headers)


def finish(client: httpx.Client, location: str, digest: str, data: bytes = b"") -> httpx.Response:
    return client.put(with_query(location, digest=digest), content=data, headers=OCTET)


@pytest.fixture
def name() -> str:
    return unique_name("uploads")


# -- POST: starting an upload ----------------------------------------------------------------

def test_post_starts_upload_with_202(client: httpx.Client, name: str) -> None:
    resp = client.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    assert resp.status_code == 202


def test_post_sets_location_to_upload_url(client: httpx.Client, name: str) -> None:
    resp = start_upload(client, name)
    assert path_of(resp.headers["Location"]).startswith(f"/v2/{name}/blobs/uploads/")


def test_post_sets_docker_upload_uuid_contained_in_location(client: httpx.Client, name: str) -> None:
    resp = start_upload(client, name)
    upload_id = resp.headers.get("Docker-Upload-UUID")
    assert upload_id
    assert upload_id in resp.headers["Location"]


def test_post_sets_range_0_0(client: httpx.Client, name: str) -> None:
    resp = start_upload(client, name)
    assert resp.headers.get("Range") == "0-0"


def test_two_posts_get_distinct_sessions(client: httpx.Client, name: str) -> None:
    first, second = start_upload(client, name), start_upload(client, name)
    assert first.headers["Location"] != second.headers["Location"]
    assert first.headers["Docker-Upload-UUID"] != second.headers["Docker-Upload-UUID"]


# -- single-POST monolithic upload -----------------------------------------------------------

def test_single_post_with_digest_is_201(client: httpx.Client, name: str) -> None:
    resp = push_blob_single_post(client, name, random_bytes(33))
    assert resp.status_code == 201


def test_single_post_location_is_blob_url(client: httpx.Client, name: str) -> None:
    data = random_bytes(33)
    resp = push_blob_single_post(client, name, data)
    assert path_of(resp.headers.get("Location", "")) == f"/v2/{name}/blobs/{sha256(data)}"


def test_single_post_sets_docker_content_digest(client: httpx.Client, name: str) -> None:
    data = random_bytes(33)
    resp = push_blob_single_post(client, name, data)
    assert resp.headers.get("Docker-Content-Digest") == sha256(data)


def test_single_post_blob_is_pullable_at_location(client: httpx.Client, name: str) -> None:
    data = random_bytes(33)
    resp = push_blob_single_post(client, name, data)
    pulled = client.get(resp.headers["Location"])
    assert pulled.status_code == 200
    assert pulled.content == data


def test_single_post_with_wrong_digest_is_400_digest_invalid(client: httpx.Client, name: str) -> None:
    data = random_bytes(33)
    wrong = random_digest()
    resp = push_blob_single_post(client, name, data, wrong)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert client.get(f"/v2/{name}/blobs/{wrong}").status_code == 404
    assert client.get(f"/v2/{name}/blobs/{sha256(data)}").status_code == 404


@pytest.mark.parametrize("digest", ["notadigest", "sha256:xyz", "sha256:abc"])
def test_single_post_with_malformed_digest_is_400_digest_invalid(client: httpx.Client, name: str,
                                                                 digest: str) -> None:
    resp = push_blob_single_post(client, name, random_bytes(10), digest)
    assert_error(resp, 400, "DIGEST_INVALID")


def test_pushing_existing_blob_again_is_201(client: httpx.Client, name: str) -> None:
    data = random_bytes(33)
    assert push_blob_single_post(client, name, data).status_code == 201
    resp = push_blob_single_post(client, name, data)
    assert resp.status_code == 201
    assert resp.headers.get("Docker-Content-Digest") == sha256(data)
    assert client.get(f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_two_concurrent_uploads_of_same_content_both_complete(client: httpx.Client, registry, name: str) -> None:
    """Layer upload de-duplication: "both operations will proceed and the first to complete will be stored"."""
    data = random_bytes(2000)
    first = start_upload(client, name).headers["Location"]
    second = start_upload(client, name).headers["Location"]
    first = patch_chunk(client, first, data[:1000]).headers["Location"]
    second = patch_chunk(client, second, data[:1000]).headers["Location"]
    assert finish(client, first, sha256(data), data[1000:]).status_code == 201
    assert finish(client, second, sha256(data), data[1000:]).status_code == 201
    assert client.get(f"/v2/{name}/blobs/{sha256(data)}").content == data
    assert registry.storage.blob_bytes(sha256(data)) == data


# -- POST then PUT ---------------------------------------------------------------------------

def test_post_then_put_whole_blob_is_201(client: httpx.Client, name: str) -> None:
    data = random_bytes(500)
    location = start_upload(client, name).headers["Location"]
    resp = finish(client, location, sha256(data), data)
    assert resp.status_code == 201
    assert path_of(resp.headers.get("Location", "")) == f"/v2/{name}/blobs/{sha256(data)}"
    assert resp.headers.get("Docker-Content-Digest") == sha256(data)
    pulled = client.get(f"/v2/{name}/blobs/{sha256(data)}")
    assert pulled.content == data


def test_put_without_digest_is_400_digest_invalid(client: httpx.Client, name: str) -> None:
    location = start_upload(client, name).headers["Location"]
    resp = client.put(location, content=random_bytes(20), headers=OCTET)
    assert_error(resp, 400, "DIGEST_INVALID")


def test_put_with_wrong_digest_is_400_digest_invalid(client: httpx.Client, name: str) -> None:
    data = random_bytes(20)
    location = start_upload(client, name).headers["Location"]
    resp = finish(client, location, random_digest(), data)
    assert_error(resp, 400, "DIGEST_INVALID")


def test_put_with_wrong_digest_stores_nothing(client: httpx.Client, registry, name: str) -> None:
    data = random_bytes(20)
    wrong = random_digest()
    location = start_upload(client, name).headers["Location"]
    assert finish(client, location, wrong, data).status_code == 400
    assert_error(client.get(f"/v2/{name}/blobs/{wrong}"), 404, "BLOB_UNKNOWN")
    assert_error(client.get(f"/v2/{name}/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")
    assert registry.storage.blob_bytes(wrong) is None


def test_put_with_malformed_digest_is_400_digest_invalid(client: httpx.Client, name: str) -> None:
    location = start_upload(client, name).headers["Location"]
    resp = finish(client, location, "sha256:nothex", random_bytes(20))
    assert_error(resp, 400, "DIGEST_INVALID")


def test_completed_upload_session_is_gone(client: httpx.Client, name: str) -> None:
    data = random_bytes(20)
    location = start_upload(client, name).headers["Location"]
    assert finish(client, location, sha256(data), data).status_code == 201
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_completed_upload_leaves_no_staged_file(client: httpx.Client, registry, name: str) -> None:
    data = random_bytes(20)
    started = start_upload(client, name)
    upload_id = started.headers["Docker-Upload-UUID"]
    assert finish(client, started.headers["Location"], sha256(data), data).status_code == 201
    assert not registry.storage.staging_exists(upload_id)


# -- PATCH: streamed -------------------------------------------------------------------------

def test_streamed_patch_is_202_with_range(client: httpx.Client, name: str) -> None:
    data = random_bytes(1000)
    location = start_upload(client, name).headers["Location"]
    resp = patch_chunk(client, location, data)
    assert resp.status_code == 202
    assert resp.headers.get("Range") == "0-999"
    assert resp.headers.get("Location")


def test_streamed_patch_with_chunked_transfer_encoding(client: httpx.Client, name: str) -> None:
    data = random_bytes(5 * 1024 * 1024 + 3)

    def body() -> Iterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            yield data[start:start + 256 * 1024]

    location = start_upload(client, name).headers["Location"]
    resp = client.patch(location, content=body(), headers=OCTET)
    assert resp.status_code == 202
    assert resp.headers.get("Range") == f"0-{len(data) - 1}"
    done = finish(client, resp.headers["Location"], sha256(data))
    assert done.status_code == 201
    pulled = client.get(f"/v2/{name}/blobs/{sha256(data)}")
    assert pulled.content == data


def test_streamed_patch_then_put_completes(client: httpx.Client, name: str) -> None:
    data = random_bytes(1000)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data).headers["Location"]
    resp = finish(client, location, sha256(data))
    assert resp.status_code == 201
    assert client.get(f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_two_streamed_patches_append(client: httpx.Client, name: str) -> None:
    data = random_bytes(300)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data[:100]).headers["Location"]
    resp = patch_chunk(client, location, data[100:])
    assert resp.status_code == 202
    assert resp.headers.get("Range") == "0-299"
    assert finish(client, resp.headers["Location"], sha256(data)).status_code == 201
    assert client.get(f"/v2/{name}/blobs/{sha256(data)}").content == data


# -- PATCH: chunked with Content-Range -------------------------------------------------------

def test_chunked_patches_in_order_are_202(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    for start in (0, 10, 20):
        resp = patch_chunk(client, location, data[start:start + 10], start)
        assert resp.status_code == 202, resp.content
        assert resp.headers.get("Range") == f"0-{start + 9}"
        location = resp.headers["Location"]


def test_chunked_upload_put_produces_blob(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    for start in (0, 10, 20):
        location = patch_chunk(client, location, data[start:start + 10], start).headers["Location"]
    resp = finish(client, location, sha256(data))
    assert resp.status_code == 201
    assert resp.headers.get("Docker-Content-Digest") == sha256(data)
    assert client.get(f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_final_chunk_in_put_body(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data[:20], 0).headers["Location"]
    resp = finish(client, location, sha256(data), data[20:])
    assert resp.status_code == 201
    assert client.get(f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_final_chunk_in_put_body_with_content_range(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data[:20], 0).headers["Location"]
    resp = client.put(with_query(location, digest=sha256(data)), content=data[20:],
                      headers={**OCTET, "Content-Range": "20-29"})
    assert resp.status_code == 201
    assert client.get(f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_out_of_order_chunk_is_416(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data[:10], 0).headers["Location"]
    resp = patch_chunk(client, location, data[20:30], 20)
    assert resp.status_code == 416


def test_repeated_chunk_is_416(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data[:10], 0).headers["Location"]
    resp = patch_chunk(client, location, data[:10], 0)
    assert resp.status_code == 416


def test_out_of_order_chunk_416_reports_current_range(client: httpx.Client, name: str) -> None:
    """Docker API v2: the 416 "will include a Range header indicating the current status"."""
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data[:10], 0).headers["Location"]
    resp = patch_chunk(client, location, data[20:30], 20)
    assert resp.status_code == 416
    assert resp.headers.get("Range") == "0-9"


def test_out_of_order_chunk_416_body_is_json(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data[:10], 0).headers["Location"]
    resp = patch_chunk(client, location, data[20:30], 20)
    assert resp.status_code == 416
    if resp.content:
        assert_error(resp, 416)


def test_first_chunk_not_starting_at_zero_is_416(client: httpx.Client, name: str) -> None:
    location = start_upload(client, name).headers["Location"]
    resp = patch_chunk(client, location, random_bytes(10), 5)
    assert resp.status_code == 416


def test_status_after_out_of_order_chunk_keeps_old_range(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    started = start_upload(client, name)
    location = patch_chunk(client, started.headers["Location"], data[:10], 0).headers["Location"]
    assert patch_chunk(client, location, data[20:30], 20).status_code == 416
    status = client.get(location)
    assert status.status_code == 204
    assert status.headers.get("Range") == "0-9"
    assert status.headers.get("Location")
    assert status.headers.get("Docker-Upload-UUID") == started.headers["Docker-Upload-UUID"]


def test_status_after_repeated_chunk_keeps_old_range(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data[:10], 0).headers["Location"]
    assert patch_chunk(client, location, data[:10], 0).status_code == 416
    status = client.get(location)
    assert status.status_code == 204
    assert status.headers.get("Range") == "0-9"


def test_upload_continues_after_out_of_order_chunk(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data[:10], 0).headers["Location"]
    assert patch_chunk(client, location, data[20:30], 20).status_code == 416
    location = client.get(location).headers["Location"]
    resp = patch_chunk(client, location, data[10:20], 10)
    assert resp.status_code == 202
    assert resp.headers.get("Range") == "0-19"
    resp = patch_chunk(client, resp.headers["Location"], data[20:30], 20)
    assert resp.status_code == 202
    done = finish(client, resp.headers["Location"], sha256(data))
    assert done.status_code == 201
    assert done.headers.get("Docker-Content-Digest") == sha256(data)
    assert client.get(f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_upload_continues_after_repeated_chunk(client: httpx.Client, name: str) -> None:
    data = random_bytes(30)
    location = start_upload(client, name).headers["Location"]
    location = patch_chunk(client, location, data[:10], 0).headers["Location"]
    assert patch_chunk(client, location, data[:10], 0).status_code == 416
    location = client.get(location).headers["Location"]
    location = patch_chunk(client, location, data[10:20], 10).headers["Location"]
    done = finish(client, location, sha256(data), data[20:])
    assert done.status_code == 201
    assert client.get(f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_content_range_length_mismatch_is_400_size_invalid(client: httpx.Client, name: str) -> None:
    location = start_upload(client, name).headers["Location"]
    resp = client.patch(location, content=random_bytes(10), headers={**OCTET, "Content-Range": "0-19"})
    assert_error(resp, 400, "SIZE_INVALID")


@pytest.mark.parametrize("content_range", ["0-", "abc", "9-0", "-9"])
def test_malformed_content_range_is_rejected(client: httpx.Client, name: str, content_range: str) -> None:
    location = start_upload(client, name).headers["Location"]
    resp = client.patch(location, content=random_bytes(10), headers={**OCTET, "Content-Range": content_range})
    # "A 416 will be returned under the following conditions: Invalid Content-Range header format"
    assert resp.status_code in (400, 416), resp.status_code


# -- GET: upload status ----------------------------------------------------------------------

def test_status_of_new_upload_is_204(client: httpx.Client, name: str) -> None:
    location = start_upload(client, name).headers["Location"]
    resp = client.get(location)
    assert resp.status_code == 204
    assert resp.headers.get("Range") == "0-0"


def test_status_reports_range_location_and_uuid(client: httpx.Client, name: str) -> None:
    started = start_upload(client, name)
    location = patch_chunk(client, started.headers["Location"], random_bytes(1234)).headers["Location"]
    resp = client.get(location)
    assert resp.status_code == 204
    assert resp.headers.get("Range") == "0-1233"
    assert path_of(resp.headers.get("Location", "")).startswith(f"/v2/{name}/blobs/uploads/")
    assert resp.headers.get("Docker-Upload-UUID") == started.headers["Docker-Upload-UUID"]
    assert resp.content == b""


# -- DELETE: cancel --------------------------------------------------------------------------

def test_delete_upload_is_204(client: httpx.Client, name: str) -> None:
    location = start_upload(client, name).headers["Location"]
    resp = client.delete(location)
    assert resp.status_code == 204


def test_deleted_upload_status_is_404_blob_upload_unknown(client: httpx.Client, name: str) -> None:
    location = start_upload(client, name).headers["Location"]
    patch_chunk(client, location, random_bytes(10))
    assert client.delete(location).status_code == 204
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_deleted_upload_rejects_patch(client: httpx.Client, name: str) -> None:
    location = start_upload(client, name).headers["Location"]
    assert client.delete(location).status_code == 204
    assert_error(patch_chunk(client, location, random_bytes(10)), 404, "BLOB_UPLOAD_UNKNOWN")


def test_deleted_upload_removes_staged_file(client: httpx.Client, registry, name: str) -> None:
    started = start_upload(client, name)
    upload_id = started.headers["Docker-Upload-UUID"]
    patch_chunk(client, started.headers["Location"], random_bytes(100))
    assert client.delete(started.headers["Location"]).status_code == 204
    assert not registry.storage.staging_exists(upload_id)


# -- unknown upload id -----------------------------------------------------------------------

@pytest.fixture
def unknown_upload(client: httpx.Client, name: str) -> str:
    start_upload(client, name)  # the repository exists, the upload does not
    return f"/v2/{name}/blobs/uploads/{uuid.uuid4()}"


def test_get_unknown_upload_is_404(client: httpx.Client, unknown_upload: str) -> None:
    assert_error(client.get(unknown_upload), 404, "BLOB_UPLOAD_UNKNOWN")


def test_patch_unknown_upload_is_404(client: httpx.Client, unknown_upload: str) -> None:
    assert_error(patch_chunk(client, unknown_upload, random_bytes(10)), 404, "BLOB_UPLOAD_UNKNOWN")


def test_put_unknown_upload_is_404(client: httpx.Client, unknown_upload: str) -> None:
    data = random_bytes(10)
    assert_error(finish(client, unknown_upload, sha256(data), data), 404, "BLOB_UPLOAD_UNKNOWN")


def test_delete_unknown_upload_is_404(client: httpx.Client, unknown_upload: str) -> None:
    assert_error(client.delete(unknown_upload), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("upload_id", ["a.b", "%2e%2e", "x" * 300])
def test_odd_upload_ids_are_404_not_500(client: httpx.Client, name: str, upload_id: str) -> None:
    start_upload(client, name)
    resp = client.get(f"/v2/{name}/blobs/uploads/{upload_id}")
    assert resp.status_code == 404 or (resp.status_code == 400), resp.status_code
    if resp.status_code == 404:
        assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_of_one_repository_is_unknown_in_another(client: httpx.Client, name: str) -> None:
    started = start_upload(client, name)
    other = unique_name("uploads")
    start_upload(client, other)
    upload_id = started.headers["Docker-Upload-UUID"]
    assert_error(client.get(f"/v2/{other}/blobs/uploads/{upload_id}"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_location_is_usable_as_given(client: httpx.Client, name: str) -> None:
    """Clients treat Location as opaque and keep any query parameters it carries."""
    data = random_bytes(10)
    location = start_upload(client, name).headers["Location"]
    assert re.match(r"^(https?://[^/]+)?/v2/", location), location
    resp = patch_chunk(client, location, data)
    assert resp.status_code == 202
    assert finish(client, resp.headers["Location"], sha256(data)).status_code == 201

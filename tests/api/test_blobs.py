"""Blob pull, existence check, ranges, deletion and repository scoping (GET/HEAD/DELETE /v2/<name>/blobs/<digest>)."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.api.helpers import (
    assert_error,
    assert_head_error,
    digest_of,
    push_blob,
    push_blob_single_post,
    random_bytes,
    random_digest,
    sha512,
    unique_name,
)

MALFORMED_DIGESTS = [
    "sha256:xyz",
    "notadigest",
    "sha256:abc123",                      # sha256 with the wrong length
    "sha256:" + "a" * 63,                 # one short
    "sha256:" + "a" * 65,                 # one long
    "sha256:" + "G" * 64,                 # not hex
    "sha256:",                            # empty encoded part
]


@pytest.fixture
def blob(client: httpx.Client) -> tuple[str, bytes, str]:
    """(repository, bytes, digest) of a 100-byte blob pushed to a fresh repository."""
    name = unique_name("blobs")
    data = random_bytes(100)
    digest = push_blob(client, name, data)
    return name, data, digest


# -- GET / HEAD ------------------------------------------------------------------------------

def test_get_blob_returns_200_and_exact_bytes(client: httpx.Client, blob: tuple[str, bytes, str]) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}")
    assert resp.status_code == 200
    assert resp.content == data


def test_get_blob_sets_content_length(client: httpx.Client, blob: tuple[str, bytes, str]) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}")
    assert resp.headers.get("Content-Length") == str(len(data))


def test_get_blob_sets_docker_content_digest(client: httpx.Client, blob: tuple[str, bytes, str]) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}")
    assert resp.headers.get("Docker-Content-Digest") == digest


def test_head_blob_returns_200_with_headers_and_no_body(client: httpx.Client,
                                                         blob: tuple[str, bytes, str]) -> None:
    name, data, digest = blob
    resp = client.head(f"/v2/{name}/blobs/{digest}")
    assert resp.status_code == 200
    assert resp.headers.get("Content-Length") == str(len(data))
    assert resp.headers.get("Docker-Content-Digest") == digest
    assert resp.content == b""


def test_blob_is_stored_by_digest(client: httpx.Client, registry, blob) -> None:
    _, data, digest = blob
    assert registry.storage.blob_bytes(digest) == data


def test_get_empty_blob(client: httpx.Client) -> None:
    name = unique_name("blobs")
    digest = push_blob(client, name, b"")
    resp = client.get(f"/v2/{name}/blobs/{digest}")
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers.get("Content-Length") == "0"


def test_get_large_blob_exact_bytes(client: httpx.Client) -> None:
    name = unique_name("blobs")
    data = random_bytes(9 * 1024 * 1024 + 17)
    digest = push_blob(client, name, data)
    resp = client.get(f"/v2/{name}/blobs/{digest}")
    assert resp.status_code == 200
    assert hashlib.sha256(resp.content).hexdigest() == digest.split(":")[1]


# -- unknown and malformed -------------------------------------------------------------------

def test_get_unknown_blob_is_404_blob_unknown(client: httpx.Client, blob: tuple[str, bytes, str]) -> None:
    name, _, _ = blob
    resp = client.get(f"/v2/{name}/blobs/{random_digest()}")
    assert_error(resp, 404, "BLOB_UNKNOWN")


def test_head_unknown_blob_is_404_without_body(client: httpx.Client, blob: tuple[str, bytes, str]) -> None:
    name, _, _ = blob
    resp = client.head(f"/v2/{name}/blobs/{random_digest()}")
    assert_head_error(resp, 404)


def test_get_blob_in_unknown_repository_is_404(client: httpx.Client) -> None:
    resp = client.get(f"/v2/{unique_name('nowhere')}/blobs/{random_digest()}")
    assert_error(resp, 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")


@pytest.mark.parametrize("digest", MALFORMED_DIGESTS)
def test_get_blob_with_malformed_digest_is_400_digest_invalid(client: httpx.Client, blob, digest: str) -> None:
    name, _, _ = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}")
    assert_error(resp, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("digest", MALFORMED_DIGESTS)
def test_head_blob_with_malformed_digest_is_400(client: httpx.Client, blob, digest: str) -> None:
    name, _, _ = blob
    resp = client.head(f"/v2/{name}/blobs/{digest}")
    assert_head_error(resp, 400)


@pytest.mark.parametrize("digest", MALFORMED_DIGESTS)
def test_delete_blob_with_malformed_digest_is_400_digest_invalid(client: httpx.Client, blob,
                                                                 digest: str) -> None:
    name, _, _ = blob
    resp = client.delete(f"/v2/{name}/blobs/{digest}")
    assert_error(resp, 400, "DIGEST_INVALID")


# -- ranges ----------------------------------------------------------------------------------

def test_range_first_ten_bytes_is_206_with_content_range(client: httpx.Client, blob) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": "bytes=0-9"})
    assert resp.status_code == 206
    assert resp.headers.get("Content-Range") == f"bytes 0-9/{len(data)}"
    assert resp.headers.get("Content-Length") == "10"
    assert resp.content == data[0:10]


def test_range_in_the_middle(client: httpx.Client, blob) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": "bytes=20-49"})
    assert resp.status_code == 206
    assert resp.headers.get("Content-Range") == f"bytes 20-49/{len(data)}"
    assert resp.content == data[20:50]


def test_suffix_range_returns_last_bytes(client: httpx.Client, blob) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert resp.status_code == 206
    assert resp.headers.get("Content-Range") == f"bytes {len(data) - 5}-{len(data) - 1}/{len(data)}"
    assert resp.content == data[-5:]


def test_open_range_returns_rest_of_blob(client: httpx.Client, blob) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": "bytes=10-"})
    assert resp.status_code == 206
    assert resp.headers.get("Content-Range") == f"bytes 10-{len(data) - 1}/{len(data)}"
    assert resp.content == data[10:]


def test_range_end_beyond_size_is_clamped(client: httpx.Client, blob) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": f"bytes=90-{len(data) + 500}"})
    assert resp.status_code == 206
    assert resp.headers.get("Content-Range") == f"bytes 90-{len(data) - 1}/{len(data)}"
    assert resp.content == data[90:]


def test_range_starting_beyond_size_is_416(client: httpx.Client, blob) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": f"bytes={len(data) + 10}-"})
    assert resp.status_code == 416


def test_range_starting_at_size_is_416(client: httpx.Client, blob) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}",
                      headers={"Range": f"bytes={len(data)}-{len(data) + 5}"})
    assert resp.status_code == 416


def test_unsatisfiable_range_reports_size_in_content_range(client: httpx.Client, blob) -> None:
    """RFC 9110 14.4: a 416 SHOULD carry `Content-Range: bytes */<complete length>`."""
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": f"bytes={len(data)}-{len(data) + 5}"})
    assert resp.status_code == 416
    assert resp.headers.get("Content-Range") == f"bytes */{len(data)}"


def test_unsatisfiable_range_error_body_is_json(client: httpx.Client, blob) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": f"bytes={len(data)}-{len(data) + 5}"})
    assert resp.status_code == 416
    if resp.content:
        assert_error(resp, 416)


# -- deletion --------------------------------------------------------------------------------

def test_delete_blob_is_202(client: httpx.Client, blob) -> None:
    name, _, digest = blob
    resp = client.delete(f"/v2/{name}/blobs/{digest}")
    assert resp.status_code == 202


def test_deleted_blob_is_404(client: httpx.Client, blob) -> None:
    name, _, digest = blob
    assert client.delete(f"/v2/{name}/blobs/{digest}").status_code == 202
    assert_error(client.get(f"/v2/{name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_head_error(client.head(f"/v2/{name}/blobs/{digest}"), 404)


def test_delete_blob_twice_second_is_404(client: httpx.Client, blob) -> None:
    name, _, digest = blob
    assert client.delete(f"/v2/{name}/blobs/{digest}").status_code == 202
    assert_error(client.delete(f"/v2/{name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_delete_unknown_blob_is_404_blob_unknown(client: httpx.Client, blob) -> None:
    name, _, _ = blob
    assert_error(client.delete(f"/v2/{name}/blobs/{random_digest()}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_in_one_repository_keeps_it_in_another(client: httpx.Client) -> None:
    data = random_bytes(50)
    first, second = unique_name("blobs"), unique_name("blobs")
    digest = push_blob(client, first, data)
    push_blob(client, second, data)
    assert client.delete(f"/v2/{first}/blobs/{digest}").status_code == 202
    resp = client.get(f"/v2/{second}/blobs/{digest}")
    assert resp.status_code == 200
    assert resp.content == data


# -- repository scoping ----------------------------------------------------------------------

def test_blob_is_not_visible_from_another_repository(client: httpx.Client, blob) -> None:
    _, _, digest = blob
    other = unique_name("blobs")
    push_blob(client, other, random_bytes(10))  # the other repository exists
    assert_error(client.get(f"/v2/{other}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_head_blob_from_another_repository_is_404(client: httpx.Client, blob) -> None:
    _, _, digest = blob
    other = unique_name("blobs")
    push_blob(client, other, random_bytes(10))
    assert_head_error(client.head(f"/v2/{other}/blobs/{digest}"), 404)


def test_same_content_pushed_to_two_repositories_is_visible_in_both(client: httpx.Client) -> None:
    data = random_bytes(40)
    first, second = unique_name("blobs"), unique_name("blobs")
    digest = push_blob(client, first, data)
    assert push_blob(client, second, data) == digest
    for name in (first, second):
        resp = client.get(f"/v2/{name}/blobs/{digest}")
        assert resp.status_code == 200
        assert resp.content == data


# -- sha512 ----------------------------------------------------------------------------------

def test_sha512_blob_pushed_monolithically_is_201(client: httpx.Client) -> None:
    name = unique_name("blobs")
    data = random_bytes(77)
    resp = push_blob_single_post(client, name, data, sha512(data))
    assert resp.status_code == 201, resp.content


def test_sha512_blob_is_retrievable_by_its_digest(client: httpx.Client) -> None:
    name = unique_name("blobs")
    data = random_bytes(77)
    digest = sha512(data)
    assert push_blob_single_post(client, name, data, digest).status_code == 201
    resp = client.get(f"/v2/{name}/blobs/{digest}")
    assert resp.status_code == 200
    assert resp.content == data
    returned = resp.headers.get("Docker-Content-Digest")
    if returned is not None:  # "If present, the value of this header MUST be a digest matching that of the body"
        algorithm = returned.split(":")[0]
        assert returned == digest_of(data, algorithm)


def test_sha512_blob_head_is_200(client: httpx.Client) -> None:
    name = unique_name("blobs")
    data = random_bytes(77)
    digest = sha512(data)
    assert push_blob_single_post(client, name, data, digest).status_code == 201
    resp = client.head(f"/v2/{name}/blobs/{digest}")
    assert resp.status_code == 200
    assert resp.headers.get("Content-Length") == str(len(data))

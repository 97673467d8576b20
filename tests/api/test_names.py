"""Repository names: the distribution-spec grammar and length limit, on every kind of endpoint."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.helpers import (
    assert_error,
    assert_raw_error,
    get_manifest,
    push_blob,
    push_image,
    random_bytes,
    random_digest,
    raw_request,
    unique_name,
)


def long_name(length: int) -> str:
    """A valid-looking name of exactly `length` characters: 120-character components joined by '/'."""
    prefix = "n" + uuid.uuid4().hex[:8]
    parts, remaining = [], length
    while remaining > 0:
        size = min(120, remaining if not parts else remaining - 1)
        if parts:
            remaining -= 1
        component = (prefix + "x" * size)[:size]
        parts.append(component)
        remaining -= size
    name = "/".join(parts)
    assert len(name) == length and all(parts), (len(name), length)
    return name


INVALID_NAMES = {
    "uppercase": "Library/Ubuntu",
    "uppercase-component": "library/UBUNTU",
    "double-dot": "a..b/c",
    "leading-separator": "-abc/def",
    "trailing-separator": "abc-/def",
    "empty-component": "abc//def",
    "too-long-300": "a" * 300,
    "too-long-256": "b" * 256,
    "space": "abc%20def",
    "colon": "abc:def",
    "nul": "abc%00def",
}


# -- valid names -----------------------------------------------------------------------------

def test_multi_component_name_push_and_pull(client: httpx.Client) -> None:
    name = f"{unique_name('names')}/b/c/d"
    pushed = push_image(client, name, "latest")
    resp = get_manifest(client, name, "latest")
    assert resp.status_code == 200
    assert resp.content == pushed.body
    assert client.get(f"/v2/{name}/blobs/{pushed.blobs[0]}").status_code == 200


def test_multi_component_name_tags_list(client: httpx.Client) -> None:
    name = f"{unique_name('names')}/b/c/d"
    push_image(client, name, "latest")
    assert client.get(f"/v2/{name}/tags/list").json() == {"name": name, "tags": ["latest"]}


def test_name_with_route_words_as_components(client: httpx.Client) -> None:
    name = f"{unique_name('names')}/blobs/uploads/manifests"
    data = random_bytes(20)
    digest = push_blob(client, name, data)
    assert client.get(f"/v2/{name}/blobs/{digest}").content == data


@pytest.mark.parametrize("name_tail", ["a.b", "a_b", "a__b", "a-b", "a---b", "0", "9z"])
def test_separators_allowed_by_grammar(client: httpx.Client, name_tail: str) -> None:
    name = f"{unique_name('names')}/{name_tail}"
    pushed = push_image(client, name, "latest")
    assert get_manifest(client, name, "latest").content == pushed.body


def test_255_character_name_works(client: httpx.Client) -> None:
    name = long_name(255)
    pushed = push_image(client, name, "latest")
    assert get_manifest(client, name, "latest").content == pushed.body
    assert client.get(f"/v2/{name}/tags/list").json()["name"] == name


# -- invalid names ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", list(INVALID_NAMES.values()), ids=list(INVALID_NAMES))
def test_invalid_name_on_tags_list_is_400_name_invalid(client: httpx.Client, bad: str) -> None:
    assert_error(client.get(f"/v2/{bad}/tags/list"), 400, "NAME_INVALID")


@pytest.mark.parametrize("bad", list(INVALID_NAMES.values()), ids=list(INVALID_NAMES))
def test_invalid_name_on_upload_is_400_name_invalid(client: httpx.Client, bad: str) -> None:
    assert_error(client.post(f"/v2/{bad}/blobs/uploads/"), 400, "NAME_INVALID")


@pytest.mark.parametrize("bad", list(INVALID_NAMES.values()), ids=list(INVALID_NAMES))
def test_invalid_name_on_manifest_get_is_400_name_invalid(client: httpx.Client, bad: str) -> None:
    assert_error(get_manifest(client, bad, "latest"), 400, "NAME_INVALID")


@pytest.mark.parametrize("bad", list(INVALID_NAMES.values()), ids=list(INVALID_NAMES))
def test_invalid_name_on_blob_get_is_400_name_invalid(client: httpx.Client, bad: str) -> None:
    assert_error(client.get(f"/v2/{bad}/blobs/{random_digest()}"), 400, "NAME_INVALID")


def test_invalid_name_on_manifest_put_is_400_name_invalid(client: httpx.Client) -> None:
    resp = client.put("/v2/Bad/Name/manifests/latest", content=b"{}",
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert_error(resp, 400, "NAME_INVALID")


def test_invalid_name_on_referrers_is_400_name_invalid(client: httpx.Client) -> None:
    assert_error(client.get(f"/v2/Bad/Name/referrers/{random_digest()}"), 400, "NAME_INVALID")


def test_300_character_name_on_monolithic_upload(client: httpx.Client) -> None:
    data = random_bytes(8)
    resp = client.post(f"/v2/{long_name(300)}/blobs/uploads/", params={"digest": random_digest()}, content=data)
    assert_error(resp, 400, "NAME_INVALID")


def test_256_character_multi_component_name_is_400(client: httpx.Client) -> None:
    assert_error(client.get(f"/v2/{long_name(256)}/tags/list"), 400, "NAME_INVALID")


@pytest.mark.parametrize("path", [
    "/v2/a/../b/tags/list",
    "/v2/a/./b/tags/list",
    "/v2/../tags/list",
    "/v2/abc/../blobs/uploads/",
])
def test_dot_segments_in_name_are_400_name_invalid(registry, path: str) -> None:
    method = "POST" if path.endswith("/uploads/") else "GET"
    resp = raw_request(registry.host, method, path, headers={"Content-Length": "0"})
    assert_raw_error(resp, 400, "NAME_INVALID")


@pytest.mark.parametrize("path", ["/v2//leading/tags/list", "/v2//leading/blobs/uploads/"])
def test_leading_slash_component_is_400_name_invalid(registry, path: str) -> None:
    method = "POST" if path.endswith("/uploads/") else "GET"
    resp = raw_request(registry.host, method, path, headers={"Content-Length": "0"})
    assert_raw_error(resp, 400, "NAME_INVALID")


def test_name_invalid_body_is_json(client: httpx.Client) -> None:
    resp = client.get("/v2/UPPER/tags/list")
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].split(";")[0] == "application/json"
    assert resp.json()["errors"][0]["code"] == "NAME_INVALID"


def test_unknown_valid_name_is_not_name_invalid(client: httpx.Client) -> None:
    assert_error(client.get(f"/v2/{unique_name('names')}/tags/list"), 404, "NAME_UNKNOWN")


def test_tag_with_trailing_newline_is_400_tag_invalid_and_stores_nothing(client: httpx.Client) -> None:
    name = unique_name("nl")
    push_image(client, name, "v1")
    manifest = client.get(f"/v2/{name}/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    response = client.put(f"/v2/{name}/manifests/v1%0A", content=manifest.content,
                          headers={"Content-Type": manifest.headers["Content-Type"]})
    assert_error(response, 400, "TAG_INVALID")
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["v1"]


def test_mount_from_a_name_with_a_trailing_newline_mounts_nothing(client: httpx.Client) -> None:
    name = unique_name("nlmount")
    digest = push_blob(client, name, random_bytes(100))
    response = client.post(f"/v2/{name}-b/blobs/uploads/", params={"mount": digest, "from": f"{name}\n"})
    assert response.status_code in (202, 400), response.text  # an upload session instead, or NAME_INVALID
    assert response.status_code != 201


@pytest.mark.parametrize("path", [
    "/admin/api/uploads/a%00b",
    "/admin/api/repositories?q=a%00b",
    "/v2/nul/repo/referrers/sha256:" + "a" * 64 + "?artifactType=a%00b",
])
def test_nul_in_text_never_reaches_the_database(client: httpx.Client, path: str) -> None:
    """PostgreSQL refuses NUL in text: a 4xx, never a 500, on both set-ups."""
    method = "DELETE" if path.startswith("/admin/api/uploads/") else "GET"
    response = client.request(method, path)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.json()["errors"][0]["code"] in ("BLOB_UPLOAD_UNKNOWN", "UNSUPPORTED")


def test_name_with_a_trailing_newline_matches_no_route(client: httpx.Client) -> None:
    """The router's `.+` stops at a newline: 404 NOT_FOUND in JSON, as Distribution's router answers."""
    assert_error(client.get("/v2/abc%0A/tags/list"), 404, "NOT_FOUND")

"""Manifests: PUT/GET/HEAD/DELETE /v2/<name>/manifests/<reference> for OCI and Docker media types."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.helpers import (
    ACCEPT_ALL_MANIFESTS,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MANIFEST_KINDS,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    assert_error,
    assert_head_error,
    encode,
    get_manifest,
    image_manifest,
    path_of,
    push_blob,
    push_image,
    push_index,
    push_kind,
    push_manifest,
    put_manifest,
    random_bytes,
    random_digest,
    sha256,
    sha512,
    unique_name,
    unique_tag,
)


@pytest.fixture
def name() -> str:
    return unique_name("manifests")


# -- PUT -------------------------------------------------------------------------------------

def test_put_oci_manifest_by_tag_is_201(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    resp = put_manifest(client, name, "latest", body)
    assert resp.status_code == 201, resp.content


def test_put_manifest_sets_docker_content_digest_of_exact_bytes(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    resp = put_manifest(client, name, "latest", body)
    assert resp.headers.get("Docker-Content-Digest") == sha256(body)


def test_put_manifest_location_is_pullable(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    resp = put_manifest(client, name, "latest", body)
    location = resp.headers.get("Location")
    assert location
    assert path_of(location).startswith(f"/v2/{name}/manifests/")
    pulled = client.get(location, headers={"Accept": ACCEPT_ALL_MANIFESTS})
    assert pulled.status_code == 200
    assert pulled.content == body


def test_put_manifest_by_digest_is_201(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    resp = put_manifest(client, name, sha256(body), body)
    assert resp.status_code == 201
    assert resp.headers.get("Docker-Content-Digest") == sha256(body)


def test_put_manifest_by_digest_creates_no_tag(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    push_manifest(client, name, sha256(body), body)
    resp = client.get(f"/v2/{name}/tags/list")
    assert resp.status_code == 200
    assert resp.json()["tags"] in ([], None)


def test_put_manifest_by_sha512_digest_echoes_that_digest(client: httpx.Client, name: str) -> None:
    """"The Docker-Content-Digest header ... MUST be equal to the client provided digest." """
    body, _ = image_manifest(client, name)
    resp = put_manifest(client, name, sha512(body), body)
    assert resp.status_code == 201
    assert resp.headers.get("Docker-Content-Digest") == sha512(body)


def test_get_manifest_by_sha512_digest(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    assert put_manifest(client, name, sha512(body), body).status_code == 201
    resp = get_manifest(client, name, sha512(body))
    assert resp.status_code == 200
    assert resp.content == body


def test_put_by_sha512_digest_with_mismatching_body_is_400(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    resp = put_manifest(client, name, sha512(body + b" "), body)
    assert_error(resp, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("kind", MANIFEST_KINDS)
def test_put_each_kind_by_tag_is_201(client: httpx.Client, name: str, kind: str) -> None:
    pushed = push_kind(client, name, kind)  # children and the manifest itself by digest
    resp = put_manifest(client, name, "v1", pushed.body, pushed.media_type)
    assert resp.status_code == 201
    assert resp.headers.get("Docker-Content-Digest") == pushed.digest


def test_put_same_manifest_twice_is_idempotent(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    assert put_manifest(client, name, "latest", body).status_code == 201
    resp = put_manifest(client, name, "latest", body)
    assert resp.status_code == 201
    assert get_manifest(client, name, "latest").content == body


def test_put_manifest_under_second_tag(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    push_manifest(client, name, "one", body)
    push_manifest(client, name, "two", body)
    for tag in ("one", "two"):
        resp = get_manifest(client, name, tag)
        assert resp.status_code == 200
        assert resp.content == body


def test_put_moves_existing_tag_to_new_manifest(client: httpx.Client, name: str) -> None:
    first = push_image(client, name, "latest")
    second = push_image(client, name, "latest")
    resp = get_manifest(client, name, "latest")
    assert resp.content == second.body
    assert resp.headers.get("Docker-Content-Digest") == second.digest
    assert get_manifest(client, name, first.digest).status_code == 200


# -- GET / HEAD ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", MANIFEST_KINDS)
def test_get_by_tag_returns_exact_bytes(client: httpx.Client, name: str, kind: str) -> None:
    pushed = push_kind(client, name, kind, "v1")
    resp = get_manifest(client, name, "v1")
    assert resp.status_code == 200
    assert resp.content == pushed.body


@pytest.mark.parametrize("kind", MANIFEST_KINDS)
def test_get_by_digest_returns_exact_bytes(client: httpx.Client, name: str, kind: str) -> None:
    pushed = push_kind(client, name, kind, "v1")
    resp = get_manifest(client, name, pushed.digest)
    assert resp.status_code == 200
    assert resp.content == pushed.body


@pytest.mark.parametrize("kind", MANIFEST_KINDS)
@pytest.mark.parametrize("by", ["tag", "digest"])
def test_get_sets_content_type_to_media_type(client: httpx.Client, name: str, kind: str, by: str) -> None:
    pushed = push_kind(client, name, kind, "v1")
    resp = get_manifest(client, name, "v1" if by == "tag" else pushed.digest)
    assert resp.headers.get("Content-Type") == pushed.media_type


@pytest.mark.parametrize("kind", MANIFEST_KINDS)
@pytest.mark.parametrize("by", ["tag", "digest"])
def test_get_sets_docker_content_digest(client: httpx.Client, name: str, kind: str, by: str) -> None:
    pushed = push_kind(client, name, kind, "v1")
    resp = get_manifest(client, name, "v1" if by == "tag" else pushed.digest)
    assert resp.headers.get("Docker-Content-Digest") == pushed.digest


@pytest.mark.parametrize("kind", MANIFEST_KINDS)
@pytest.mark.parametrize("by", ["tag", "digest"])
def test_head_has_same_headers_and_no_body(client: httpx.Client, name: str, kind: str, by: str) -> None:
    pushed = push_kind(client, name, kind, "v1")
    reference = "v1" if by == "tag" else pushed.digest
    resp = get_manifest(client, name, reference, method="HEAD")
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers.get("Content-Length") == str(len(pushed.body))
    assert resp.headers.get("Content-Type") == pushed.media_type
    assert resp.headers.get("Docker-Content-Digest") == pushed.digest


def test_get_sets_content_length(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    resp = get_manifest(client, name, "v1")
    assert resp.headers.get("Content-Length") == str(len(pushed.body))


@pytest.mark.parametrize("variant", ["pretty", "reordered", "trailing-newline", "tabs"])
def test_formatting_variations_keep_exact_bytes_and_digest(client: httpx.Client, name: str,
                                                           variant: str) -> None:
    body, _ = image_manifest(client, name)
    document = json.loads(body)
    if variant == "pretty":
        varied = json.dumps(document, indent=3).encode()
    elif variant == "reordered":
        varied = json.dumps(dict(reversed(list(document.items()))), separators=(",", ":")).encode()
    elif variant == "trailing-newline":
        varied = body + b"\n"
    else:
        varied = json.dumps(document, indent="\t", sort_keys=True).encode() + b"\r\n"
    assert sha256(varied) != sha256(body)
    resp = put_manifest(client, name, variant, varied)
    assert resp.status_code == 201
    assert resp.headers.get("Docker-Content-Digest") == sha256(varied)
    for reference in (variant, sha256(varied)):
        pulled = get_manifest(client, name, reference)
        assert pulled.content == varied
        assert pulled.headers.get("Docker-Content-Digest") == sha256(varied)


def test_manifest_with_unicode_annotations_keeps_exact_bytes(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name, annotations={"org.example.title": "caf\u00e9 \u2615"})
    raw = json.dumps(json.loads(body), ensure_ascii=False).encode("utf-8")
    push_manifest(client, name, "unicode", raw)
    assert get_manifest(client, name, "unicode").content == raw


def test_manifest_with_no_layers_is_accepted(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name, layers=0)
    assert put_manifest(client, name, "empty", body).status_code == 201
    assert get_manifest(client, name, "empty").content == body


def test_manifest_with_many_layers(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "many", layers=12)
    assert get_manifest(client, name, "many").content == pushed.body


def test_four_megabyte_manifest_is_accepted(client: httpx.Client, name: str) -> None:
    """"Client and registry implementations SHOULD expect to be able to support manifest pushes of at least
    4 megabytes." """
    body, _ = image_manifest(client, name, annotations={"org.example.padding": ""})
    padding = 4_000_000 - len(body)
    body, _ = image_manifest(client, name, annotations={"org.example.padding": "p" * padding})
    assert len(body) >= 4_000_000
    assert put_manifest(client, name, "big", body).status_code == 201
    assert get_manifest(client, name, "big").content == body


# -- Accept negotiation ----------------------------------------------------------------------

DOCKER_ONLY = f"{DOCKER_MANIFEST}, {DOCKER_LIST}"


def test_oci_manifest_by_tag_with_docker_only_accept_is_404(client: httpx.Client, name: str) -> None:
    push_image(client, name, "v1")
    resp = get_manifest(client, name, "v1", accept=DOCKER_ONLY)
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


def test_oci_manifest_by_tag_with_oci_accept_is_200(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    resp = get_manifest(client, name, "v1", accept=OCI_MANIFEST)
    assert resp.status_code == 200
    assert resp.content == pushed.body


def test_oci_manifest_by_tag_with_oci_among_docker_accept_is_200(client: httpx.Client, name: str) -> None:
    push_image(client, name, "v1")
    resp = get_manifest(client, name, "v1", accept=f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5")
    assert resp.status_code == 200


def test_oci_manifest_by_tag_with_wildcard_accept_is_200(client: httpx.Client, name: str) -> None:
    push_image(client, name, "v1")
    resp = get_manifest(client, name, "v1", accept="*/*")
    assert resp.status_code == 200


def test_oci_manifest_accept_as_separate_headers(client: httpx.Client, name: str) -> None:
    push_image(client, name, "v1")
    headers = [("Accept", DOCKER_MANIFEST), ("Accept", OCI_MANIFEST)]
    resp = client.get(f"/v2/{name}/manifests/v1", headers=headers)
    assert resp.status_code == 200


def test_oci_manifest_by_digest_with_docker_only_accept_is_200(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    resp = get_manifest(client, name, pushed.digest, accept=DOCKER_ONLY)
    assert resp.status_code == 200
    assert resp.content == pushed.body


def test_oci_index_by_tag_with_docker_only_accept_is_404(client: httpx.Client, name: str) -> None:
    push_index(client, name, "v1")
    resp = get_manifest(client, name, "v1", accept=DOCKER_ONLY)
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


def test_oci_index_by_tag_with_index_accept_is_200(client: httpx.Client, name: str) -> None:
    pushed = push_index(client, name, "v1")
    resp = get_manifest(client, name, "v1", accept=OCI_INDEX)
    assert resp.status_code == 200
    assert resp.content == pushed.body


def test_docker_manifest_by_tag_with_docker_accept_is_200(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1", docker=True)
    resp = get_manifest(client, name, "v1", accept=DOCKER_MANIFEST)
    assert resp.status_code == 200
    assert resp.content == pushed.body


# -- PUT errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_index_with_unknown_children_is_400_manifest_blob_unknown(client: httpx.Client, name: str,
                                                                 docker: bool) -> None:
    media_type = DOCKER_LIST if docker else OCI_INDEX
    child_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    body = encode({"schemaVersion": 2, "mediaType": media_type, "manifests": [
        {"mediaType": child_type, "digest": random_digest(), "size": 500,
         "platform": {"architecture": "amd64", "os": "linux"}}]})
    resp = put_manifest(client, name, "v1", body, media_type)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


def test_index_with_child_from_another_repository_is_400(client: httpx.Client, name: str) -> None:
    other = unique_name("manifests")
    child = push_image(client, other)
    body = encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child.descriptor()]})
    assert_error(put_manifest(client, name, "v1", body, OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN")


def test_manifest_with_missing_layer_is_400_manifest_blob_unknown(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    document = json.loads(body)
    document["layers"].append({"mediaType": OCI_LAYER, "digest": random_digest(), "size": 1234})
    assert_error(put_manifest(client, name, "v1", encode(document)), 400, "MANIFEST_BLOB_UNKNOWN")


def test_manifest_with_missing_config_is_400_manifest_blob_unknown(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    document = json.loads(body)
    document["config"]["digest"] = random_digest()
    assert_error(put_manifest(client, name, "v1", encode(document)), 400, "MANIFEST_BLOB_UNKNOWN")


def test_docker_manifest_with_missing_layer_is_400(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name, docker=True)
    document = json.loads(body)
    document["layers"][0]["digest"] = random_digest()
    resp = put_manifest(client, name, "v1", encode(document), DOCKER_MANIFEST)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


def test_manifest_with_layer_only_in_another_repository_is_400(client: httpx.Client, name: str) -> None:
    other = unique_name("manifests")
    layer = random_bytes(64)
    push_blob(client, other, layer)
    body, _ = image_manifest(client, name)
    document = json.loads(body)
    document["layers"].append({"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)})
    assert_error(put_manifest(client, name, "v1", encode(document)), 400, "MANIFEST_BLOB_UNKNOWN")


def test_failed_manifest_put_leaves_no_tag(client: httpx.Client, name: str) -> None:
    push_image(client, name, "keep")
    body, _ = image_manifest(client, name)
    document = json.loads(body)
    document["config"]["digest"] = random_digest()
    assert put_manifest(client, name, "broken", encode(document)).status_code == 400
    assert_error(get_manifest(client, name, "broken"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("body", [b"{not json", b"", b"\x00\xff\xfe", b"[]", b'"a string"'],
                         ids=["truncated", "empty", "binary", "array", "string"])
def test_malformed_manifest_is_400_manifest_invalid(client: httpx.Client, name: str, body: bytes) -> None:
    push_blob(client, name, random_bytes(8))  # the repository exists
    assert_error(put_manifest(client, name, "v1", body), 400, "MANIFEST_INVALID")


def test_put_by_digest_with_mismatching_body_is_400_digest_invalid(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    other, _ = image_manifest(client, name)
    resp = put_manifest(client, name, sha256(other), body)
    assert_error(resp, 400, "DIGEST_INVALID")


def test_put_by_digest_with_mismatching_body_stores_nothing(client: httpx.Client, name: str) -> None:
    body, _ = image_manifest(client, name)
    claimed = random_digest()
    assert put_manifest(client, name, claimed, body).status_code == 400
    assert_error(get_manifest(client, name, claimed), 404, "MANIFEST_UNKNOWN")


INVALID_TAGS = [".INVALID_MANIFEST_NAME", "-leading-dash", ".leading-dot", "x" * 129, "bad+plus"]
MALFORMED_DIGESTS = ["sha256:xyz", "sha256:abc123", "sha256:zz", "sha256:" + "A" * 64, "md5:" + "a" * 32, "sha256:"]


@pytest.mark.parametrize("reference", INVALID_TAGS)
def test_put_with_invalid_tag_is_400_tag_invalid(client: httpx.Client, name: str, reference: str) -> None:
    body, _ = image_manifest(client, name)
    assert_error(put_manifest(client, name, reference, body), 400, "TAG_INVALID")
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] in ([], None)


@pytest.mark.parametrize("reference", MALFORMED_DIGESTS)
def test_put_with_malformed_digest_is_400_digest_invalid(client: httpx.Client, name: str, reference: str) -> None:
    body, _ = image_manifest(client, name)
    assert_error(put_manifest(client, name, reference, body), 400, "DIGEST_INVALID")


def test_put_tag_of_128_characters_is_accepted(client: httpx.Client, name: str) -> None:
    tag = "t" * 128
    body, _ = image_manifest(client, name)
    assert put_manifest(client, name, tag, body).status_code == 201
    assert get_manifest(client, name, tag).content == body


# -- unknown ---------------------------------------------------------------------------------

def test_get_unknown_tag_is_404_manifest_unknown(client: httpx.Client, name: str) -> None:
    push_image(client, name, "exists")
    assert_error(get_manifest(client, name, "missing"), 404, "MANIFEST_UNKNOWN")


def test_get_unknown_digest_is_404_manifest_unknown(client: httpx.Client, name: str) -> None:
    push_image(client, name, "exists")
    assert_error(get_manifest(client, name, random_digest()), 404, "MANIFEST_UNKNOWN")


def test_head_unknown_manifest_is_404_without_body(client: httpx.Client, name: str) -> None:
    push_image(client, name, "exists")
    assert_head_error(get_manifest(client, name, "missing", method="HEAD"), 404)
    assert_head_error(get_manifest(client, name, random_digest(), method="HEAD"), 404)


def test_get_manifest_of_unknown_repository_is_404(client: httpx.Client) -> None:
    resp = get_manifest(client, unique_name("nowhere"), "latest")
    assert_error(resp, 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")


def test_blob_digest_is_not_a_manifest(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "exists")
    assert_error(get_manifest(client, name, pushed.blobs[-1]), 404, "MANIFEST_UNKNOWN")


def test_manifest_of_one_repository_is_unknown_in_another(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    other = unique_name("manifests")
    push_image(client, other, "v1")
    assert_error(get_manifest(client, other, pushed.digest), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("reference", INVALID_TAGS)
def test_get_and_head_by_invalid_tag_are_404_manifest_unknown(client: httpx.Client, name: str,
                                                              reference: str) -> None:
    """Nothing can have that name: 404, as Distribution and the OCI conformance suite (which asks for
    `.INVALID_MANIFEST_NAME` as its "nonexistent manifest") expect; not a 400 a client might retry."""
    push_image(client, name, "v1")
    assert_error(get_manifest(client, name, reference), 404, "MANIFEST_UNKNOWN")
    assert_head_error(get_manifest(client, name, reference, method="HEAD"), 404)


def test_get_by_invalid_tag_in_unknown_repository_is_404(client: httpx.Client) -> None:
    assert_error(get_manifest(client, unique_name("nowhere"), ".INVALID_MANIFEST_NAME"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("reference", MALFORMED_DIGESTS)
def test_get_and_head_by_malformed_digest_are_404_manifest_unknown(client: httpx.Client, name: str,
                                                                   reference: str) -> None:
    """Distribution reads a reference that is not a valid digest as a tag, and finds no such tag."""
    push_image(client, name, "v1")
    assert_error(get_manifest(client, name, reference), 404, "MANIFEST_UNKNOWN")
    assert_head_error(get_manifest(client, name, reference, method="HEAD"), 404)


# -- DELETE ----------------------------------------------------------------------------------

def test_delete_manifest_by_digest_is_202(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    assert client.delete(f"/v2/{name}/manifests/{pushed.digest}").status_code == 202


def test_deleted_manifest_is_404_by_digest(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    assert client.delete(f"/v2/{name}/manifests/{pushed.digest}").status_code == 202
    assert_error(get_manifest(client, name, pushed.digest), 404, "MANIFEST_UNKNOWN")


def test_delete_by_digest_removes_tags_pointing_to_it(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    push_manifest(client, name, "v2", pushed.body)
    keep = push_image(client, name, "other")
    assert client.delete(f"/v2/{name}/manifests/{pushed.digest}").status_code == 202
    assert_error(get_manifest(client, name, "v1"), 404, "MANIFEST_UNKNOWN")
    assert_error(get_manifest(client, name, "v2"), 404, "MANIFEST_UNKNOWN")
    tags = client.get(f"/v2/{name}/tags/list").json()["tags"]
    assert tags == ["other"]
    assert get_manifest(client, name, keep.digest).status_code == 200


def test_delete_unknown_manifest_digest_is_404(client: httpx.Client, name: str) -> None:
    push_image(client, name, "v1")
    assert_error(client.delete(f"/v2/{name}/manifests/{random_digest()}"), 404, "MANIFEST_UNKNOWN")


def test_delete_manifest_twice_second_is_404(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    assert client.delete(f"/v2/{name}/manifests/{pushed.digest}").status_code == 202
    assert_error(client.delete(f"/v2/{name}/manifests/{pushed.digest}"), 404, "MANIFEST_UNKNOWN")


def test_delete_manifest_in_unknown_repository_is_404(client: httpx.Client) -> None:
    resp = client.delete(f"/v2/{unique_name('nowhere')}/manifests/{random_digest()}")
    assert_error(resp, 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")


def test_delete_tag_is_202(client: httpx.Client, name: str) -> None:
    push_image(client, name, "v1")
    assert client.delete(f"/v2/{name}/manifests/v1").status_code == 202


def test_deleted_tag_is_404(client: httpx.Client, name: str) -> None:
    push_image(client, name, "v1")
    assert client.delete(f"/v2/{name}/manifests/v1").status_code == 202
    assert_error(get_manifest(client, name, "v1"), 404, "MANIFEST_UNKNOWN")


def test_delete_tag_keeps_manifest_by_digest(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    assert client.delete(f"/v2/{name}/manifests/v1").status_code == 202
    resp = get_manifest(client, name, pushed.digest)
    assert resp.status_code == 200
    assert resp.content == pushed.body


def test_delete_tag_keeps_other_tags_of_same_manifest(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    push_manifest(client, name, "v2", pushed.body)
    assert client.delete(f"/v2/{name}/manifests/v1").status_code == 202
    assert get_manifest(client, name, "v2").content == pushed.body
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["v2"]


@pytest.mark.parametrize("reference", INVALID_TAGS)
def test_delete_by_invalid_tag_is_404_manifest_unknown(client: httpx.Client, name: str, reference: str) -> None:
    """Distribution has no route for such a reference (404): there is nothing by that name to delete."""
    pushed = push_image(client, name, "v1")
    assert_error(client.delete(f"/v2/{name}/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")
    assert get_manifest(client, name, "v1").content == pushed.body


@pytest.mark.parametrize("reference", MALFORMED_DIGESTS)
def test_delete_by_malformed_digest_is_400_digest_invalid(client: httpx.Client, name: str, reference: str) -> None:
    """As Distribution 2.8 answers it: the client named a digest, and it is not one."""
    pushed = push_image(client, name, "v1")
    assert_error(client.delete(f"/v2/{name}/manifests/{reference}"), 400, "DIGEST_INVALID")
    assert get_manifest(client, name, "v1").content == pushed.body


def test_delete_unknown_tag_is_404(client: httpx.Client, name: str) -> None:
    push_image(client, name, "v1")
    assert_error(client.delete(f"/v2/{name}/manifests/{unique_tag()}"), 404, "MANIFEST_UNKNOWN")


def test_deleted_manifest_can_be_pushed_again(client: httpx.Client, name: str) -> None:
    pushed = push_image(client, name, "v1")
    assert client.delete(f"/v2/{name}/manifests/{pushed.digest}").status_code == 202
    assert put_manifest(client, name, "v1", pushed.body).status_code == 201
    assert get_manifest(client, name, "v1").content == pushed.body

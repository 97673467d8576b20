"""The version check endpoint and the shape of error responses."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import (
    ERROR_CODES,
    error_codes,
    push_blob,
    random_bytes,
    random_digest,
    unique_name,
)


def test_version_check_returns_200(client: httpx.Client) -> None:
    resp = client.get("/v2/")
    assert resp.status_code == 200


def test_version_check_sets_api_version_header(client: httpx.Client) -> None:
    resp = client.get("/v2/")
    assert resp.headers.get("Docker-Distribution-API-Version") == "registry/2.0"


# Requests that must fail, each with a JSON error body: id -> (method, path template, request kwargs).
# `{name}` is an existing repository, `{digest}` a digest nobody pushed.
ERROR_REQUESTS: dict[str, tuple[str, str, dict]] = {
    "unknown-blob": ("GET", "/v2/{name}/blobs/{digest}", {}),
    "malformed-blob-digest": ("GET", "/v2/{name}/blobs/sha256:xyz", {}),
    "unknown-manifest": ("GET", "/v2/{name}/manifests/nosuchtag", {}),
    "unknown-upload": ("GET", "/v2/{name}/blobs/uploads/0123456789abcdef", {}),
    "unknown-repository-tags": ("GET", "/v2/{name}x/tags/list", {}),
    "invalid-name": ("GET", "/v2/Upper/Case/tags/list", {}),
    "malformed-manifest": ("PUT", "/v2/{name}/manifests/latest",
                           {"content": b"{not json",
                            "headers": {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}}),
    "wrong-digest-upload": ("POST", "/v2/{name}/blobs/uploads/?digest={digest}", {"content": b"other bytes"}),
    "unknown-blob-delete": ("DELETE", "/v2/{name}/blobs/{digest}", {}),
    "unknown-manifest-delete": ("DELETE", "/v2/{name}/manifests/{digest}", {}),
}


@pytest.mark.parametrize("case", list(ERROR_REQUESTS))
def test_error_responses_are_json_with_errors_list(client: httpx.Client, case: str) -> None:
    name = unique_name("errors")
    push_blob(client, name, random_bytes(16))  # make the repository exist
    method, template, kwargs = ERROR_REQUESTS[case]
    path = template.format(name=name, digest=random_digest())
    resp = client.request(method, path, **kwargs)
    assert 400 <= resp.status_code < 500, f"{method} {path}: {resp.status_code}"
    for code in error_codes(resp):
        assert code in ERROR_CODES, code


def test_unknown_route_under_v2_is_not_a_server_error(client: httpx.Client) -> None:
    resp = client.get("/v2/some/repo/nonsense/path")
    assert 400 <= resp.status_code < 500

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


# Requests that must fail, each with a JSON error body: (description, method, path builder, kwargs).
def _error_requests(name: str) -> list[tuple[str, str, str, dict]]:
    digest = random_digest()
    return [
        ("unknown blob", "GET", f"/v2/{name}/blobs/{digest}", {}),
        ("malformed blob digest", "GET", f"/v2/{name}/blobs/sha256:xyz", {}),
        ("unknown manifest", "GET", f"/v2/{name}/manifests/nosuchtag", {}),
        ("unknown upload", "GET", f"/v2/{name}/blobs/uploads/0123456789abcdef", {}),
        ("unknown repository tags", "GET", f"/v2/{unique_name('nowhere')}/tags/list", {}),
        ("invalid name", "GET", "/v2/Upper/Case/tags/list", {}),
        ("malformed manifest", "PUT", f"/v2/{name}/manifests/latest",
         {"content": b"{not json", "headers": {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}}),
        ("blob upload with wrong digest", "POST", f"/v2/{name}/blobs/uploads/",
         {"params": {"digest": digest}, "content": b"other bytes"}),
    ]


@pytest.mark.parametrize("case", range(8), ids=[c[0] for c in _error_requests("x")])
def test_error_responses_are_json_with_errors_list(client: httpx.Client, case: int) -> None:
    name = unique_name("errors")
    push_blob(client, name, random_bytes(16))  # make the repository exist
    _, method, path, kwargs = _error_requests(name)[case]
    resp = client.request(method, path, **kwargs)
    assert 400 <= resp.status_code < 500, f"{method} {path}: {resp.status_code}"
    codes = error_codes(resp)
    for code in codes:
        assert code in ERROR_CODES, code


def test_unknown_route_under_v2_is_not_a_server_error(client: httpx.Client) -> None:
    resp = client.get("/v2/some/repo/nonsense/path")
    assert 400 <= resp.status_code < 500

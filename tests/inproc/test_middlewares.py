"""The middlewares around every handler: errors as the spec's JSON with their status (no body for
HEAD), the request id, the API version header, unknown routes and methods, oversized request heads."""

from __future__ import annotations

import re

import pytest

from tests.inproc.helpers import Client, error_code, push_blob, repository_name

pytestmark = pytest.mark.asyncio

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
MISSING_DIGEST = "sha256:" + "0" * 64


ERRORS = [  # (method, path, status, code): one of each kind the middlewares render
    ("GET", "/nowhere", 404, "NOT_FOUND"),
    ("GET", "/v2/only-a-name", 404, "NOT_FOUND"),
    ("POST", "/v2/_catalog", 405, "UNSUPPORTED"),
    ("GET", f"/v2/inproc/none/manifests/{MISSING_DIGEST}", 404, "NAME_UNKNOWN"),
    ("GET", f"/v2/inproc/none/blobs/{MISSING_DIGEST}", 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/inproc/none/blobs/uploads/no-such-session", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("GET", "/v2/Upper/Case/tags/list", 400, "NAME_INVALID"),
    ("GET", "/v2/_catalog?n=-1", 400, "PAGINATION_NUMBER_INVALID"),
    ("DELETE", "/v2/inproc/none/blobs/sha256:short", 400, "DIGEST_INVALID"),
]


async def test_errors_are_the_spec_json_with_their_status(api: Client) -> None:
    for number, (method, path, status, code) in enumerate(ERRORS):
        resp = await api.request(method, path, headers={"X-Request-Id": f"error-{number}"})
        assert await error_code(resp, status) == code, (method, path)
        assert resp.headers[API_VERSION[0]] == API_VERSION[1], (method, path)
        assert resp.headers["X-Request-Id"] == f"error-{number}", (method, path)


async def test_a_head_error_has_its_status_and_no_body(api: Client) -> None:
    for path in (f"/v2/inproc/none/manifests/{MISSING_DIGEST}", f"/v2/inproc/none/blobs/{MISSING_DIGEST}",
                 "/nowhere"):
        resp = await api.head(path)
        assert resp.status == 404, path
        assert await resp.read() == b"", path
        assert resp.headers[API_VERSION[0]] == API_VERSION[1], path


async def test_a_head_error_keeps_its_headers(api: Client) -> None:
    """A HEAD refused for its range still says which sizes there are, without a body."""
    name = repository_name()
    digest = await push_blob(api, name, b"0123456789")
    resp = await api.head(f"/v2/{name}/blobs/{digest}", headers={"Range": "bytes=50-60"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == "bytes */10"
    assert await resp.read() == b""


async def test_the_request_id_sent_is_echoed(api: Client) -> None:
    ok = await api.get("/v2/", headers={"X-Request-Id": "trace-4711"})
    failed = await api.get("/nowhere", headers={"X-Request-Id": "trace-4712"})
    assert ok.status == 200 and ok.headers["X-Request-Id"] == "trace-4711"
    assert failed.status == 404 and failed.headers["X-Request-Id"] == "trace-4712"


async def test_a_request_id_is_made_up_when_none_is_sent(api: Client) -> None:
    first = (await api.get("/v2/")).headers["X-Request-Id"]
    second = (await api.get("/v2/")).headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", first) and re.fullmatch(r"[0-9a-f]{16}", second)
    assert first != second


async def test_a_long_request_id_is_cut_to_64_characters(api: Client) -> None:
    resp = await api.get("/v2/", headers={"X-Request-Id": "x" * 500})
    assert resp.headers["X-Request-Id"] == "x" * 64


async def test_streamed_and_head_answers_carry_the_api_version(api: Client) -> None:
    """Blob downloads are written by the handler itself (sendfile): the header comes all the same."""
    name = repository_name()
    digest = await push_blob(api, name, b"streamed bytes")
    for method in ("GET", "HEAD"):
        resp = await api.request(method, f"/v2/{name}/blobs/{digest}", headers={"X-Request-Id": f"id-{method}"})
        assert resp.status == 200
        assert resp.headers[API_VERSION[0]] == API_VERSION[1]
        assert resp.headers["X-Request-Id"] == f"id-{method}"


async def test_a_request_head_over_the_limit_is_431(api: Client) -> None:
    """Each field under limits.header_bytes (16 KiB), together over limits.header_total_bytes (64 KiB)."""
    headers = {f"X-Filler-{i}": "f" * 15000 for i in range(5)}
    resp = await api.get("/v2/", headers=headers)
    assert await error_code(resp, 431) == "UNSUPPORTED"

"""The version check, blob uploads (monolithic, chunked, mounted, cancelled), blob GET/HEAD with
Range, blob DELETE, and the 4xx a bad digest, name, range or size gets, with nothing stored."""

from __future__ import annotations

import os

import pytest

from tests.inproc.conftest import MakeClient
from tests.inproc.helpers import Client, error_code, nothing_stored, push_blob, repository_name, sha256, stored

pytestmark = pytest.mark.asyncio

BLOB = b"0123456789"


async def blob_status(client: Client, name: str, digest: str) -> int:
    return (await client.head(f"/v2/{name}/blobs/{digest}")).status


async def start_session(client: Client, name: str) -> str:
    resp = await client.post(f"/v2/{name}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    assert resp.headers["Range"] == "0-0"
    assert resp.headers["Docker-Upload-UUID"]
    return resp.headers["Location"]


async def test_the_version_check_answers_200_with_an_empty_object(api: Client) -> None:
    for path in ("/v2/", "/v2"):
        resp = await api.get(path)
        assert resp.status == 200, path
        assert await resp.json() == {}, path


async def test_a_monolithic_upload_is_a_post_then_one_put(api: Client) -> None:
    name = repository_name()
    location = await start_session(api, name)
    assert location.startswith(f"/v2/{name}/blobs/uploads/")
    resp = await api.put(location, params={"digest": sha256(BLOB)}, data=BLOB)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == f"/v2/{name}/blobs/{sha256(BLOB)}"
    assert resp.headers["Docker-Content-Digest"] == sha256(BLOB)
    got = await api.get(resp.headers["Location"])
    assert got.status == 200 and await got.read() == BLOB


async def test_a_blob_in_a_single_post(api: Client) -> None:
    name = repository_name()
    resp = await api.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(BLOB)}, data=BLOB)
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == sha256(BLOB)
    assert await blob_status(api, name, sha256(BLOB)) == 200


async def test_a_chunked_upload_reports_its_range_and_ends_with_an_empty_put(api: Client) -> None:
    name = repository_name()
    location = await start_session(api, name)
    first = await api.patch(location, data=BLOB[:4], headers={"Content-Range": "0-3"})
    assert first.status == 202 and first.headers["Range"] == "0-3"
    status = await api.get(first.headers["Location"])
    assert status.status == 204 and status.headers["Range"] == "0-3"
    second = await api.patch(first.headers["Location"], data=BLOB[4:], headers={"Content-Range": "4-9"})
    assert second.status == 202 and second.headers["Range"] == "0-9"
    done = await api.put(second.headers["Location"], params={"digest": sha256(BLOB)})
    assert done.status == 201, await done.text()
    assert await (await api.get(f"/v2/{name}/blobs/{sha256(BLOB)}")).read() == BLOB


async def test_a_chunk_out_of_order_is_416_and_the_session_keeps_its_bytes(api: Client) -> None:
    name = repository_name()
    location = await start_session(api, name)
    await api.patch(location, data=BLOB[:4], headers={"Content-Range": "0-3"})
    resp = await api.patch(location, data=BLOB[6:], headers={"Content-Range": "6-9"})
    assert await error_code(resp, 416) == "RANGE_INVALID"
    assert (await api.get(location)).headers["Range"] == "0-3"


async def test_a_bad_content_range_is_refused_and_appends_nothing(api: Client) -> None:
    location = await start_session(api, repository_name())
    for content_range, status, code in [
        ("zero-nine", 400, "BLOB_UPLOAD_INVALID"),
        ("0-٩", 400, "BLOB_UPLOAD_INVALID"),  # other digits than ASCII
        ("9-0", 416, "RANGE_INVALID"),
        ("0-99", 400, "SIZE_INVALID"),  # Content-Length says 10
    ]:
        resp = await api.patch(location, data=BLOB, headers={"Content-Range": content_range})
        assert await error_code(resp, status) == code, content_range
        assert (await api.get(location)).headers["Range"] == "0-0", content_range


async def test_a_digest_that_does_not_match_stores_nothing(api: Client) -> None:
    name = repository_name()
    location = await start_session(api, name)
    wrong = sha256(b"something else")
    resp = await api.put(location, params={"digest": wrong}, data=BLOB)
    assert await error_code(resp, 400) == "DIGEST_INVALID"
    assert await blob_status(api, name, wrong) == 404
    assert await blob_status(api, name, sha256(BLOB)) == 404
    assert (await stored(api))["blobs"] == 0


async def test_a_malformed_digest_is_400_digest_invalid_and_stores_nothing(api: Client) -> None:
    for digest in ("sha256:xyz", "sha256:" + "A" * 64, "md5:" + "0" * 32, "sha256" + "0" * 64):
        resp = await api.post(f"/v2/{repository_name()}/blobs/uploads/", params={"digest": digest}, data=BLOB)
        assert await error_code(resp, 400) == "DIGEST_INVALID", digest
    assert await nothing_stored(api)


async def test_an_invalid_name_is_400_name_invalid_and_stores_nothing(api: Client) -> None:
    for name in ("Upper/case", "trailing/", "a//b", "two..dots", "-leading", "x" * 256):
        resp = await api.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(BLOB)}, data=BLOB)
        assert await error_code(resp, 400) == "NAME_INVALID", name
    assert await nothing_stored(api)


async def test_a_blob_over_the_size_limit_is_413_and_stores_nothing(make_client: MakeClient) -> None:
    client = await make_client(limits_blob_bytes="100")
    name = repository_name()
    data = os.urandom(200)
    resp = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(data)}, data=data)
    assert await error_code(resp, 413) == "SIZE_INVALID"
    assert await blob_status(client, name, sha256(data)) == 404
    assert (await stored(client))["blobs"] == 0


async def test_a_blob_get_honours_range(api: Client) -> None:
    name = repository_name()
    digest = await push_blob(api, name, BLOB)
    for header, status, content_range, body in [
        ("bytes=2-5", 206, "bytes 2-5/10", BLOB[2:6]),
        ("bytes=7-", 206, "bytes 7-9/10", BLOB[7:]),
        ("bytes=-3", 206, "bytes 7-9/10", BLOB[7:]),
        ("bytes=5-500", 206, "bytes 5-9/10", BLOB[5:]),
        ("BYTES=0-0", 206, "bytes 0-0/10", BLOB[:1]),  # the unit is case-insensitive
        ("bytes=9-3", 200, None, BLOB),  # invalid: ignored (RFC 9110 14.2)
        ("bytes=0-1,4-5", 200, None, BLOB),  # several ranges: served whole
    ]:
        resp = await api.get(f"/v2/{name}/blobs/{digest}", headers={"Range": header})
        assert resp.status == status, header
        assert resp.headers.get("Content-Range") == content_range, header
        assert await resp.read() == body, header
        assert resp.headers["Accept-Ranges"] == "bytes", header


async def test_an_unsatisfiable_range_is_416_with_the_size(api: Client) -> None:
    name = repository_name()
    digest = await push_blob(api, name, BLOB)
    for header in ("bytes=10-", "bytes=-0", "bytes=99999999999999999999-"):
        resp = await api.get(f"/v2/{name}/blobs/{digest}", headers={"Range": header})
        assert await error_code(resp, 416) == "RANGE_INVALID", header
        assert resp.headers["Content-Range"] == "bytes */10", header


async def test_a_blob_head_has_the_length_and_digest_and_no_body(api: Client) -> None:
    name = repository_name()
    digest = await push_blob(api, name, BLOB)
    whole = await api.head(f"/v2/{name}/blobs/{digest}")
    assert whole.status == 200
    assert whole.headers["Content-Length"] == "10"
    assert whole.headers["Docker-Content-Digest"] == digest
    assert await whole.read() == b""
    part = await api.head(f"/v2/{name}/blobs/{digest}", headers={"Range": "bytes=0-3"})
    assert part.status == 206 and part.headers["Content-Length"] == "4"


async def test_a_cancelled_upload_is_gone(api: Client) -> None:
    location = await start_session(api, repository_name())
    assert (await api.delete(location)).status == 204
    assert await error_code(await api.get(location), 404) == "BLOB_UPLOAD_UNKNOWN"


async def test_a_blob_mounts_from_another_repository(api: Client) -> None:
    source, target = repository_name(), repository_name()
    digest = await push_blob(api, source, BLOB)
    resp = await api.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source})
    assert resp.status == 201
    assert resp.headers["Location"] == f"/v2/{target}/blobs/{digest}"
    assert await blob_status(api, target, digest) == 200


async def test_a_deleted_blob_is_unknown(api: Client) -> None:
    name = repository_name()
    digest = await push_blob(api, name, BLOB)
    resp = await api.delete(f"/v2/{name}/blobs/{digest}")
    assert resp.status == 202 and resp.headers["Docker-Content-Digest"] == digest
    assert await error_code(await api.get(f"/v2/{name}/blobs/{digest}"), 404) == "BLOB_UNKNOWN"


async def test_deletes_can_be_turned_off(make_client: MakeClient) -> None:
    client = await make_client(delete_enabled="false")
    name = repository_name()
    digest = await push_blob(client, name, BLOB)
    assert await error_code(await client.delete(f"/v2/{name}/blobs/{digest}"), 405) == "UNSUPPORTED"
    assert await blob_status(client, name, digest) == 200

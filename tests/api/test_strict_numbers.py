"""Issue 17: one strict reading of every number the API reads. ASCII digits only, bounded lengths.

Before: `?n=²` was 500 (`isdigit()` is true for '²', `int()` fails), `?n=٣` meant 3,
`Range: bytes=٣-٥` got 206 `bytes 3-5/100`, and a Range or Content-Range of more than 4,300
digits was 500 (`int()` refuses to convert it). On PostgreSQL, `?last=a%00b` and an upload id
`a%00b` were 500 too (PostgreSQL refuses NUL in text). Each case here runs against every set-up (tests/api/conftest.py);
the suite's autouse fixture fails any test whose registry logged a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import (
    assert_error,
    assert_head_error,
    push_blob,
    push_image,
    random_bytes,
    sha256,
    start_upload,
    unique_name,
    with_query,
)

OCTET = {"Content-Type": "application/octet-stream"}
HUGE = "9" * 5000  # past int()'s 4,300-digit limit

# Numbers that are not ASCII decimal, or are too long: each is refused, none is read as a number.
BAD_PAGE_SIZES = {
    "superscript-two": "²",            # isdigit() is True, int() raises: was 500
    "arabic-indic-three": "٣",         # int() reads 3: was honoured
    "fullwidth-five": "５",
    "devanagari-seven": "७",
    "underscore": "1_0",               # int() reads 10
    "leading-space": " 5",             # int() strips it
    "plus-sign": "+5",
    "minus-one": "-1",
    "ten-digits": "1" * 10,            # more than 9 digits
    "huge": HUGE,
    "empty": "",
}

# `last` is a name, tag or upload id: printable ASCII of at most 255 characters.
BAD_CURSORS = {
    "nul": "a\x00b",                    # PostgreSQL refuses NUL in text: was 500 there
    "newline": "a\nb",
    "space": "a b",
    "non-ascii": "tag-é",
    "too-long": "a" * 256,
}


@pytest.fixture(scope="module")
def client_module(registry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def tagged(client_module: httpx.Client) -> str:
    """A repository with one tag, whose tag list the pagination tests ask for."""
    name = unique_name("strict")
    push_image(client_module, name, "v1")
    return name


@pytest.fixture(scope="module")
def blob(client_module: httpx.Client) -> tuple[str, bytes, str]:
    name = unique_name("strict-range")
    data = random_bytes(100)
    return name, data, push_blob(client_module, name, data)


# -- n and last --------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(BAD_PAGE_SIZES))
def test_tags_n_must_be_ascii_digits(client: httpx.Client, tagged: str, case: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": BAD_PAGE_SIZES[case]})
    assert_error(resp, 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize("case", sorted(BAD_PAGE_SIZES))
def test_catalog_n_must_be_ascii_digits(client: httpx.Client, case: str) -> None:
    resp = client.get("/v2/_catalog", params={"n": BAD_PAGE_SIZES[case]})
    assert_error(resp, 400, "PAGINATION_NUMBER_INVALID")


def test_nine_ascii_digits_are_a_page_size(client: httpx.Client, tagged: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"n": "999999999"})
    assert resp.status_code == 200 and resp.json()["tags"] == ["v1"]
    resp = client.get("/v2/_catalog", params={"n": "000000001"})
    assert resp.status_code == 200 and len(resp.json()["repositories"]) == 1


@pytest.mark.parametrize("case", sorted(BAD_CURSORS))
def test_tags_last_must_be_a_printable_ascii_name(client: httpx.Client, tagged: str, case: str) -> None:
    resp = client.get(f"/v2/{tagged}/tags/list", params={"last": BAD_CURSORS[case]})
    assert_error(resp, 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize("case", sorted(BAD_CURSORS))
def test_catalog_last_must_be_a_printable_ascii_name(client: httpx.Client, case: str) -> None:
    resp = client.get("/v2/_catalog", params={"last": BAD_CURSORS[case]})
    assert_error(resp, 400, "PAGINATION_NUMBER_INVALID")


def test_catalog_last_with_invalid_utf8_is_400(client: httpx.Client) -> None:
    # %ED%A0%80 is a UTF-16 surrogate in UTF-8: yarl decodes it to U+FFFD, never to a lone surrogate.
    resp = client.get("/v2/_catalog?last=%ED%A0%80")
    assert_error(resp, 400, "PAGINATION_NUMBER_INVALID")


def test_longest_cursor_is_accepted(client: httpx.Client) -> None:
    resp = client.get("/v2/_catalog", params={"last": "z" * 255})
    assert resp.status_code == 200 and resp.json()["repositories"] == []


# -- Range on GET and HEAD -----------------------------------------------------------------------

IGNORED_RANGES = {  # not a byte range in ASCII digits: ignored (RFC 9110 14.2 allows it), whole body
    "arabic-indic": "bytes=٣-٥",       # was 206 bytes 3-5/100
    "fullwidth": "bytes=０-９",
    "superscript": "bytes=²-",
    "other-unit": "items=0-9",
    "multi-range": "bytes=0-1,5-6",
    "reversed": "bytes=9-3",
    "no-numbers": "bytes=-",
    "garbage": "bytes=abc",
}

ABSURD_RANGES = {  # a byte range whose number is wider than int64: 416, never 500
    "huge-first": f"bytes={HUGE}-",
    "huge-last": f"bytes=0-{HUGE}",
    "huge-suffix": f"bytes=-{HUGE}",
    "twenty-digits": "bytes=0-" + "1" * 20,
}


@pytest.mark.parametrize("case", sorted(IGNORED_RANGES))
def test_unreadable_range_is_ignored(client: httpx.Client, blob, case: str) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": IGNORED_RANGES[case].encode()})
    assert resp.status_code == 200, (resp.status_code, resp.headers.get("Content-Range"))
    assert resp.content == data and "Content-Range" not in resp.headers


@pytest.mark.parametrize("case", sorted(ABSURD_RANGES))
def test_absurd_range_is_416(client: httpx.Client, blob, case: str) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": ABSURD_RANGES[case]})
    assert_error(resp, 416, "RANGE_INVALID")
    assert resp.headers.get("Content-Range") == f"bytes */{len(data)}"


@pytest.mark.parametrize("case", sorted(ABSURD_RANGES))
def test_absurd_range_on_head_is_416(client: httpx.Client, blob, case: str) -> None:
    name, data, digest = blob
    resp = client.head(f"/v2/{name}/blobs/{digest}", headers={"Range": ABSURD_RANGES[case]})
    assert_head_error(resp, 416)


def test_nineteen_digits_are_a_number(client: httpx.Client, blob) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": "bytes=90-" + "9" * 19})
    assert resp.status_code == 206 and resp.content == data[90:]
    assert resp.headers["Content-Range"] == f"bytes 90-99/{len(data)}"


def test_range_unit_is_case_insensitive(client: httpx.Client, blob) -> None:
    name, data, digest = blob
    resp = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": "Bytes=0-9"})
    assert resp.status_code == 206 and resp.content == data[:10]


# -- Content-Range on PATCH and PUT --------------------------------------------------------------

BAD_CONTENT_RANGES = {  # malformed: 400 BLOB_UPLOAD_INVALID (the spec: `^[0-9]+-[0-9]+$`)
    "arabic-indic": "٠-٩",
    "fullwidth": "０-９",
    "superscript": "0-²",
    "huge-start": f"{HUGE}-9",          # was 500
    "huge-end": f"0-{HUGE}",            # was 500
    "twenty-digits": "0-" + "1" * 20,
    "underscore": "0-1_0",
    "signed": "+0-9",
    "total-suffix": "0-9/10",
}


def _assert_nothing_staged(client: httpx.Client, location: str) -> None:
    status = client.get(location)
    assert status.status_code == 204 and status.headers["Range"] == "0-0", (status.status_code, status.headers)


@pytest.mark.parametrize("case", sorted(BAD_CONTENT_RANGES))
def test_malformed_content_range_on_patch_is_400(client: httpx.Client, case: str) -> None:
    location = start_upload(client, unique_name("strict-cr")).headers["Location"]
    resp = client.patch(location, content=b"0123456789",
                        headers={**OCTET, "Content-Range": BAD_CONTENT_RANGES[case].encode()})
    assert_error(resp, 400, "BLOB_UPLOAD_INVALID")
    _assert_nothing_staged(client, location)


@pytest.mark.parametrize("case", sorted(BAD_CONTENT_RANGES))
def test_malformed_content_range_on_put_is_400(registry, client: httpx.Client, case: str) -> None:
    location = start_upload(client, unique_name("strict-cr")).headers["Location"]
    data = b"0123456789"
    resp = client.put(with_query(location, digest=sha256(data)), content=data,
                      headers={**OCTET, "Content-Range": BAD_CONTENT_RANGES[case].encode()})
    assert_error(resp, 400, "BLOB_UPLOAD_INVALID")
    _assert_nothing_staged(client, location)
    assert registry.storage.blob_bytes(sha256(data)) is None


def test_content_range_that_does_not_start_at_the_end_is_416(client: httpx.Client) -> None:
    location = start_upload(client, unique_name("strict-cr")).headers["Location"]
    resp = client.patch(location, content=b"0123456789", headers={**OCTET, "Content-Range": "5-14"})
    assert_error(resp, 416, "RANGE_INVALID")
    assert resp.headers["Range"] == "0-0"
    _assert_nothing_staged(client, location)


def test_nineteen_digit_content_range_is_read_and_out_of_order(client: httpx.Client) -> None:
    """19 digits are a number (int64's width): well-formed, and far past the upload's end: 416."""
    location = start_upload(client, unique_name("strict-cr")).headers["Location"]
    start = "1" * 19
    resp = client.patch(location, content=b"x", headers={**OCTET, "Content-Range": f"{start}-{start}"})
    assert_error(resp, 416, "RANGE_INVALID")
    _assert_nothing_staged(client, location)


def test_ascii_content_range_still_uploads(client: httpx.Client) -> None:
    name = unique_name("strict-cr")
    location = start_upload(client, name).headers["Location"]
    resp = client.patch(location, content=b"0123456789", headers={**OCTET, "Content-Range": "0-9"})
    assert resp.status_code == 202 and resp.headers["Range"] == "0-9"


# -- upload ids: what no session could have is unknown, and never reaches the database ------------

@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
@pytest.mark.parametrize("upload_id", ["a%00b", "%C3%A9t%C3%A9", "a" * 256], ids=["nul", "non-ascii", "too-long"])
def test_upload_id_that_no_session_has_is_404(client: httpx.Client, method: str, upload_id: str) -> None:
    """`a%00b` was 500 on PostgreSQL, which refuses NUL in text."""
    path = f"/v2/{unique_name('strict-id')}/blobs/uploads/{upload_id}"
    if method == "PUT":
        path += "?digest=" + sha256(b"")
    resp = client.request(method, path, content=b"" if method in ("PATCH", "PUT") else None)
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")

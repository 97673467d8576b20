"""Issue 17: the admin API reads its query numbers and JSON bodies as strictly as the registry API.

Before: `?limit=²` and `?points=²` were 500 (`isdigit()` is true for '²', `int()` fails), `?limit=٣`
meant 3, and a JSON body holding a 5,000-digit number or nested thousands deep was 500
(`json.loads` raises ValueError or RecursionError, not JSONDecodeError). The suite's autouse
fixture fails any test whose registry logged a traceback.
"""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import assert_error

PAGED = ("/admin/api/repositories", "/admin/api/uploads")
NOT_ASCII_NUMBERS = {"superscript-two": "²", "arabic-indic-three": "٣", "fullwidth-five": "５", "underscore": "1_0",
                     "leading-space": " 5", "huge": "9" * 5000}


@pytest.mark.parametrize("case", sorted(NOT_ASCII_NUMBERS))
def test_limit_must_be_ascii_digits(admin: httpx.Client, case: str) -> None:
    for path in PAGED:
        assert_error(admin.get(path, params={"limit": NOT_ASCII_NUMBERS[case]}), 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize("case", sorted(NOT_ASCII_NUMBERS))
def test_history_points_must_be_ascii_digits(admin: httpx.Client, case: str) -> None:
    resp = admin.get("/admin/api/storage/history", params={"points": NOT_ASCII_NUMBERS[case]})
    assert_error(resp, 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize("last", ["a\x00b", "a b", "tag-é", "a" * 256])
def test_last_must_be_a_printable_ascii_key(admin: httpx.Client, last: str) -> None:
    for path in (*PAGED, "/admin/api/repositories/some/repo/tags"):
        assert_error(admin.get(path, params={"last": last}), 400, "PAGINATION_NUMBER_INVALID")


def test_ascii_numbers_still_work(admin: httpx.Client) -> None:
    for path in PAGED:
        assert admin.get(path, params={"limit": "1000", "last": "a" * 255}).status_code == 200
    assert admin.get("/admin/api/storage/history", params={"points": "2"}).status_code == 200


@pytest.mark.parametrize("body", [
    b'{"sample": ' + b"1" * 5000 + b"}",   # int() refuses more than 4,300 digits: ValueError
    b"[" * 100_000 + b"]" * 100_000,       # RecursionError
    b'{"sample": NaN}',
], ids=["5000-digit-number", "nested-100000-deep", "nan"])
def test_json_body_that_python_cannot_hold_is_400(admin: httpx.Client, body: bytes) -> None:
    resp = admin.post("/admin/api/fsck", content=body, headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "UNSUPPORTED")

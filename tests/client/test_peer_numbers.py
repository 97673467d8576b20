"""Numbers an upstream sends us (Retry-After, a token's expires_in) are read strictly: a peer's
"nan", "inf" or 400 digits must not become the mirror's schedule."""

from __future__ import annotations

import email.utils
import time

import pytest

from registry.client.client import MAX_RETRY_AFTER, _retry_after


@pytest.mark.parametrize("value, expected", [
    ("5", 5.0), (" 7 ", 7.0), ("0", 0.0), ("999999999", MAX_RETRY_AFTER),
    ("nan", 1.0), ("inf", 1.0), ("-3", 1.0), ("1e309", 1.0), ("9" * 400, 1.0), ("٣", 1.0), ("", 1.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: now
])
def test_retry_after_is_seconds_or_a_date_never_garbage(value: str, expected: float) -> None:
    assert _retry_after({"Retry-After": value}) == expected


def test_retry_after_as_a_future_http_date() -> None:
    future = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 <= _retry_after({"Retry-After": future}) <= 121

"""Property tests (hypothesis) for the readers of numbers and byte ranges: for any text, each returns
a valid result or raises RegistryError (the spec's 4xx JSON), never any other exception, and reads
only ASCII digits. A few thousand examples each; they run in seconds.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from registry.api.common import (
    MAX_CURSOR_LENGTH,
    MAX_PAGE_DIGITS,
    byte_range,
    is_printable_key,
    page_size,
    pagination_cursor,
    parse_content_range,
)
from registry.config import listen_port
from registry.errors import RegistryError
from registry.http_errors import http_status, http_headers
from registry.numbers import INT64_DIGITS, ascii_decimal
from tests.fuzz.conftest import fuzz

EXAMPLES = fuzz  # the fuzz suite's profile: 2,000 examples in make test, 200,000 in make fuzz

# Digits of other scripts and look-alikes: isdigit()/int() accept many of them, the readers none.
OTHER_DIGITS = "²³¹٠١٢٣٤٥٦٧٨٩۰۱۲०१२३০১২๐๑๒０１２３４５６７８９𝟎𝟏𝟐⁰₀①"
ALPHABET = st.sampled_from(list("0123456789-=, /bytes*") + list(OTHER_DIGITS) + [" ", "\t", "\x00", "_", "+"])
RANGE_LIKE = st.one_of(
    st.text(),
    st.text(ALPHABET, max_size=40),
    st.builds(lambda a, b, unit: f"{unit}{a}-{b}", st.text(ALPHABET, max_size=25), st.text(ALPHABET, max_size=25),
              st.sampled_from(["", "bytes=", "bytes ", "Bytes=", "items="])),
    st.builds(lambda n, a: f"bytes={'9' * n}-{a}", st.integers(0, 6000), st.text(ALPHABET, max_size=5)),
    st.builds(lambda n: f"{'1' * n}-{'1' * n}", st.integers(15, 25)),
)
ASCII_NUMBER = re.compile(r"[0-9]+")


@EXAMPLES
@given(st.one_of(st.text(), st.text(ALPHABET, max_size=30), st.integers(0, 10 ** 30).map(str)),
       st.integers(1, 25))
@example("²", 5)
@example("٣", 5)
@example("1_0", 5)
@example("9" * 5000, 19)
def test_ascii_decimal_reads_exactly_ascii_digits(text: str, width: int) -> None:
    value = ascii_decimal(text, width)
    if ASCII_NUMBER.fullmatch(text) and len(text) <= width:
        assert value == int(text)
    else:
        assert value is None


@EXAMPLES
@given(st.one_of(st.none(), st.text(), st.text(ALPHABET, max_size=15)))
@example("²")
@example("9" * 5000)
def test_page_size(raw: str | None) -> None:
    try:
        limit = page_size(raw)
    except RegistryError as exc:
        assert exc.code == "PAGINATION_NUMBER_INVALID" and http_status(exc) == 400
        assert raw is not None and not (ASCII_NUMBER.fullmatch(raw) and len(raw) <= MAX_PAGE_DIGITS)
        return
    assert limit is None if raw is None else limit == int(raw) and 0 <= limit < 10 ** MAX_PAGE_DIGITS


@EXAMPLES
@given(st.one_of(st.none(), st.text(), st.text(st.characters(min_codepoint=0, max_codepoint=0x7f)),
                 st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=250, max_size=260)))
@example("a\x00b")
def test_pagination_cursor(value: str | None) -> None:
    try:
        cursor = pagination_cursor(value)
    except RegistryError as exc:
        assert exc.code == "PAGINATION_NUMBER_INVALID" and http_status(exc) == 400
        assert value and not is_printable_key(value)
        return
    if not value:
        assert cursor is None
    else:
        assert cursor == value and len(value) <= MAX_CURSOR_LENGTH
        assert all(0x21 <= ord(c) <= 0x7e for c in value)


@EXAMPLES
@given(RANGE_LIKE, st.one_of(st.none(), st.integers(0, 2 ** 63)))
@example("٣-٥", 3)
@example("9" * 5000 + "-9", None)
@example("0-" + "9" * 5000, None)
def test_content_range(header: str, content_length: int | None) -> None:
    try:
        start, length = parse_content_range(header, content_length)
    except RegistryError as exc:
        assert exc.code in ("BLOB_UPLOAD_INVALID", "RANGE_INVALID", "SIZE_INVALID") and 400 <= http_status(exc) < 500
        return
    match = re.fullmatch(r"(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})", header.strip(" \t"))
    assert match, header
    assert (start, length) == (int(match[1]), int(match[2]) - int(match[1]) + 1)
    assert length >= 1 and (content_length is None or content_length == length)


@EXAMPLES
@given(RANGE_LIKE, st.integers(0, 2 ** 40))
@example("bytes=٣-٥", 100)
@example("bytes=" + "9" * 5000 + "-", 100)
@example("bytes=-" + "9" * 5000, 100)
def test_byte_range(header: str, size: int) -> None:
    try:
        selected = byte_range(header, size)
    except RegistryError as exc:
        assert exc.code == "RANGE_INVALID" and http_status(exc) == 416
        assert http_headers(exc)["Content-Range"] == f"bytes */{size}"
        return
    if selected is None:
        return  # ignored: the whole body
    offset, length = selected
    assert 0 <= offset and 1 <= length and offset + length <= size
    numbers = re.findall(r"[0-9]+", header)
    assert all(len(n) <= INT64_DIGITS for n in numbers) and not any(c in OTHER_DIGITS for c in header)


@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-9", 100, (0, 10)),
    ("bytes=90-", 100, (90, 10)),
    ("bytes=-5", 100, (95, 5)),
    ("bytes=90-" + "9" * 19, 100, (90, 10)),
    ("Bytes=0-0", 100, (0, 1)),
    (" bytes=1-2\t", 100, (1, 2)),
    ("bytes=٣-٥", 100, None),
    ("bytes=9-3", 100, None),
    ("bytes=0-1,3-4", 100, None),
])
def test_byte_range_examples(header: str, size: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == expected


@EXAMPLES
@given(st.one_of(st.text(max_size=8), st.text(ALPHABET, max_size=8), st.integers(0, 99999).map(str)))
def test_listen_port(text: str) -> None:
    try:
        port = listen_port(text)
    except ValueError:
        assert not (re.fullmatch(r"[0-9]{1,5}", text) and int(text) < 65536)
        return
    assert port == int(text) and 0 <= port < 65536 and text.isascii()

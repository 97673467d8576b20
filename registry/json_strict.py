"""Strict JSON from untrusted bytes: a value that every JSON reader reads the same way, or one clear
refusal that names the problem.

Go's encoding/json (docker, containerd, skopeo, podman) and Python's json disagree at the edges, and
what a registry accepts, every client must read. So, beyond RFC 8259's grammar, this refuses:

- anything but UTF-8 without a byte order mark (Python's json.loads(bytes) guesses UTF-16 and -32);
- NaN, Infinity and -Infinity (Python extensions; Go fails on them);
- escapes of lone UTF-16 surrogates such as "\\ud800" (no character; Go reads U+FFFD, Python keeps it);
- a key twice in one object, at any depth (readers differ on which one wins);
- nesting deeper than MAX_DEPTH;
- integers outside int64, and numbers beyond float64's range (1e400 is infinity to Python).

Pure, no I/O; no recursion of its own. The C scanner's recursion is bounded by the interpreter's
limit (RecursionError, refused here); the tighter MAX_DEPTH is checked afterwards, level by level.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any

# Real manifests nest 5 deep (index > manifests > descriptor > platform > os.features). 64 leaves
# ample room for arbitrary artifact fields, and stays far from Python's recursion limit (1000).
MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT64_CHARS = len(str(INT64_MIN))  # 20: a longer integer is out of range without converting it

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BYTE_ORDER_MARKS = ((codecs.BOM_UTF32_LE, "UTF-32 LE"), (codecs.BOM_UTF32_BE, "UTF-32 BE"),
                     (codecs.BOM_UTF8, "UTF-8"), (codecs.BOM_UTF16_LE, "UTF-16 LE"),
                     (codecs.BOM_UTF16_BE, "UTF-16 BE"))
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class StrictJSONError(ValueError):
    """The bytes are not strict JSON. The message names the problem as a clause about the document
    ("has the key \"a\" twice in one object"), to follow what the caller calls it."""


def loads(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in `data`, or StrictJSONError."""
    text = _utf8_text(data)
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise StrictJSONError(f"nests deeper than {max_depth} levels") from None
    except StrictJSONError:
        raise
    except ValueError as exc:  # JSONDecodeError, and anything a hook's conversion raises
        raise StrictJSONError(f"is not valid JSON: {exc}") from None
    _check_depth(value, max_depth)
    if _SURROGATE_ESCAPE.search(text):  # rare: only then look at every string
        _check_surrogates(value)
    return value


def _utf8_text(data: bytes) -> str:
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            raise StrictJSONError(f"starts with a {encoding} byte order mark ({mark.hex(' ')}): "
                                  "JSON must be UTF-8 without one")
    if b"\x00" in data[:4]:  # JSON starts with ASCII: a NUL among the first bytes is UTF-16 or -32
        raise StrictJSONError("is UTF-16 or UTF-32 (NUL bytes among the first four): JSON must be UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJSONError(f"is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                              f"({exc.reason})") from None


def _check_depth(value: Any, max_depth: int) -> None:
    """Breadth-first, one level of containers at a time: no recursion, and only containers kept."""
    level = [value] if type(value) is dict or type(value) is list else []
    for _ in range(max_depth):
        below = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        if not below:
            return
        level = below
    raise StrictJSONError(f"nests deeper than {max_depth} levels")


def _check_surrogates(value: Any) -> None:
    # Pairs were joined by the decoder; a surrogate left in any string is a lone one, and UTF-8
    # cannot encode it. json.dumps walks the value in C (its depth is bounded by now).
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StrictJSONError(f"has a lone surrogate \\u{ord(exc.object[exc.start]):04x} in a string "
                              "(an escape must encode a whole character)") from None


def show(text: str, limit: int = 60) -> str:
    """A key or number for an error message: quoted, ASCII only, cut short."""
    return json.dumps(text if len(text) <= limit else text[:limit] + "...")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJSONError(f"has the key {show(key)} twice in one object")
            seen.add(key)
    return obj


def _integer(text: str) -> int:
    # The length check comes first: int() refuses over 4300 digits with a ValueError of its own.
    if len(text) <= _INT64_CHARS:
        value = int(text)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    raise StrictJSONError(f"has the integer {show(text, 24)} ({len(text.lstrip('-'))} digits), outside the "
                          "64-bit range")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise StrictJSONError(f"has the number {show(text, 24)}, beyond the range of a 64-bit float")
    return value


def _constant(name: str) -> Any:
    raise StrictJSONError(f"has {name}, which is not JSON (numbers must be finite)")


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_int=_integer, parse_float=_float,
                            parse_constant=_constant)

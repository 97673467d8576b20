"""Digests (registry/digest.py parse_digest, and the API's readers of them in registry/api/common.py):
for any text, a Digest in canonical form or DIGEST_INVALID (400), never another exception."""

from __future__ import annotations

import hashlib
import re

from hypothesis import example, given
from hypothesis import strategies as st

from registry.api.common import digest_param
from registry.digest import ALGORITHMS, Digest, parse_digest
from registry.errors import RegistryError
from registry.http_errors import http_status
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import any_text, near

VALID = st.one_of(
    st.binary(max_size=64).map(lambda b: "sha256:" + hashlib.sha256(b).hexdigest()),
    st.binary(max_size=64).map(lambda b: "sha512:" + hashlib.sha512(b).hexdigest()))
OTHER_ALGORITHMS = st.builds(lambda a, h: f"{a}:{h}",
                             st.sampled_from(["md5", "sha1", "sha384", "blake3", "sha256+b64u", "SHA256", "sha-256",
                                              "sha256.x", ""]),
                             st.text("0123456789abcdefABCDEF=_-", max_size=130))


def _clean(value: str) -> Digest | None:
    try:
        digest = parse_digest(value)
    except RegistryError as exc:
        assert exc.code == "DIGEST_INVALID" and http_status(exc) == 400 and exc.message, exc
        return None
    expected = ALGORITHMS[digest.algorithm]
    assert str(digest) == value, (digest, value)
    assert re.fullmatch(rf"[a-z0-9]+:[0-9a-f]{{{expected}}}", value), value
    return digest


@fuzz
@given(st.one_of(near(VALID), near(OTHER_ALGORITHMS), any_text()))
@example("sha256:" + "a" * 63 + "\n")
@example("sha256:" + "a" * 63 + "٣")
@example("sha256:" + "A" * 64)
@example("sha256:" + "a" * 64 + "\n")
@example("sha256:" + "a" * 5000)
@example("\udc80")
def test_parse_digest_gives_a_canonical_digest_or_digest_invalid(value: str) -> None:
    _clean(value)


@fuzz
@given(st.one_of(st.none(), near(VALID)))
def test_digest_query_parameter(value: str | None) -> None:
    """`?digest=` and `?mount=`: absent or malformed is DIGEST_INVALID as well."""
    try:
        digest = digest_param(value)
    except RegistryError as exc:
        assert exc.code == "DIGEST_INVALID" and http_status(exc) == 400
        return
    assert value is not None and str(digest) == value

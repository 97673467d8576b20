"""The one manifest reader (registry/manifest.py over registry/json_strict.py), as pure functions:
its rules and bounds one by one, and properties over generated input: any bytes at all give a
parsed manifest or MANIFEST_INVALID (never another exception), and every valid manifest, however
it is formatted, is read back as the document it is. The same cases through a real registry process
are in tests/test_manifest_strict.py. (Moved here from tests/test_manifest_reader.py with the fuzz
suite; the properties run with its profile, tests/fuzz/conftest.py.)"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from registry import json_strict
from registry.errors import RegistryError
from registry.http_errors import http_status
from registry.manifest import (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, IMAGE_MANIFESTS, OCI_INDEX, OCI_MANIFEST,
                               ParsedManifest, accepts, parse_manifest)
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import any_text

CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json",
          "digest": "sha256:" + hashlib.sha256(b"config").hexdigest(), "size": 6}


def _manifest(**extra: Any) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": dict(CONFIG), "layers": [], **extra}


def _with_field(raw: bytes) -> bytes:
    """A valid manifest with one more top-level field whose value is `raw`, as written."""
    return json.dumps(_manifest()).encode()[:-1] + b', "x": ' + raw + b"}"


def _refusal(payload: bytes) -> str:
    with pytest.raises(RegistryError) as caught:
        parse_manifest(payload, OCI_MANIFEST)
    assert caught.value.code == "MANIFEST_INVALID" and http_status(caught.value) == 400
    return caught.value.message


# -- the rules, one by one ---------------------------------------------------------------------

@pytest.mark.parametrize("prefix, words", [
    (b"\xef\xbb\xbf", "UTF-8 byte order mark"), (b"\xff\xfe", "UTF-16 LE byte order mark"),
    (b"\xfe\xff", "UTF-16 BE byte order mark"), (b"\xff\xfe\x00\x00", "UTF-32 LE byte order mark"),
    (b"\x00\x00\xfe\xff", "UTF-32 BE byte order mark")])
def test_byte_order_marks_are_named(prefix: bytes, words: str) -> None:
    assert words in _refusal(prefix + json.dumps(_manifest()).encode())


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_without_a_mark_are_named(encoding: str) -> None:
    assert "UTF-16 or UTF-32" in _refusal(json.dumps(_manifest()).encode(encoding))


@pytest.mark.parametrize("raw", [b'"\xff"', b'"\xc3"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"'],
                         ids=["ff", "truncated", "encoded-surrogate", "above-10ffff"])
def test_invalid_utf8_is_named_with_its_offset(raw: bytes) -> None:
    payload = _with_field(raw)
    assert f"is not UTF-8: byte 0x{raw[1]:02x} at offset {payload.index(raw) + 1}" in _refusal(payload)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants(constant: str) -> None:
    assert f"has {constant}, which is not JSON" in _refusal(_with_field(constant.encode()))


@pytest.mark.parametrize("raw, shown", [(b'"\\ud800"', "\\ud800"), (b'"\\uDBFF"', "\\udbff"),
                                        (b'"\\udc00x"', "\\udc00"), (b'"\\ud800\\ud800"', "\\ud800"),
                                        (b'"\\ude00\\ud83d"', "\\ude00"), (b'{"\\ud800": "key"}', "\\ud800"),
                                        (b'[["\\udfff"]]', "\\udfff")])
def test_lone_surrogate_escapes(raw: bytes, shown: str) -> None:
    assert f"lone surrogate {shown}" in _refusal(_with_field(raw))


def test_surrogate_pairs_and_look_alikes_are_fine() -> None:
    for raw, value in [(b'"\\ud83d\\ude00"', "\U0001f600"), (b'"\\\\ud800"', "\\ud800"),
                       (b'"\\u00e9\\u2615"', "\u00e9\u2615")]:
        assert parse_manifest(_with_field(raw), None).document["x"] == value


@pytest.mark.parametrize("raw", [b'{"a": 1, "a": 1}', b'[{"b": {"c": [], "c": []}}]', b'{"a": 1, "b": 2, "a": 3}'])
def test_duplicate_keys_at_any_depth(raw: bytes) -> None:
    assert "twice in one object" in _refusal(_with_field(raw))


def test_duplicate_top_level_key() -> None:
    payload = json.dumps(_manifest()).encode()[:-1] + b', "layers": []}'
    assert 'has the key "layers" twice' in _refusal(payload)


def test_depth_bound_is_inclusive() -> None:
    bound = json_strict.MAX_DEPTH
    assert bound == 64
    # The manifest object is level 1, so its field may hold bound - 1 levels.
    at_bound = _with_field(b"[" * (bound - 1) + b"]" * (bound - 1))
    assert parse_manifest(at_bound, None).document["x"]
    for depth in (bound, 200, 10_000, 100_000):
        assert f"nests deeper than {bound} levels" in _refusal(_with_field(b"[" * depth + b"]" * depth))
    assert f"nests deeper than {bound}" in _refusal(_with_field(b'{"a": ' * bound + b"1" + b"}" * bound))


def test_brackets_inside_strings_do_not_count() -> None:
    deep_looking = json.dumps("[{" * 500).encode()
    assert parse_manifest(_with_field(b"[" + b",".join([deep_looking] * 80) + b"]"), None)


@pytest.mark.parametrize("raw", [b"9223372036854775807", b"-9223372036854775808", b"0", b"-0", b"1.5",
                                 b"1e308", b"1e-400", b"123456789012345678901234567890.5"])
def test_numbers_in_range_are_fine(raw: bytes) -> None:
    parse_manifest(_with_field(raw), None)


@pytest.mark.parametrize("raw", [b"9223372036854775808", b"-9223372036854775809", b"1" * 20, b"1" * 5000,
                                 b"-" + b"9" * 100_000])
def test_integers_outside_int64(raw: bytes) -> None:
    message = _refusal(_with_field(raw))
    assert f"({len(raw.lstrip(b'-'))} digits), outside the 64-bit range" in message
    assert len(message) < 200  # the number is cut short, never echoed whole


@pytest.mark.parametrize("raw", [b"1e400", b"-1e400", b"1" * 400 + b".0"])
def test_floats_beyond_float64(raw: bytes) -> None:
    assert "beyond the range of a 64-bit float" in _refusal(_with_field(raw))


@pytest.mark.parametrize("size", [b"6.0", b"6e0", b"true", b'"6"', b"-1", b"9223372036854775808"])
def test_descriptor_size_must_be_a_non_negative_int64(size: bytes) -> None:
    payload = json.dumps(_manifest()).replace('"size": 6', '"size": ' + size.decode()).encode()
    assert "size" in _refusal(payload) or "64-bit" in _refusal(payload)


@pytest.mark.parametrize("version", [b"2.0", b"true", b'"2"', b"2e0"])
def test_schema_version_must_be_the_integer_2(version: bytes) -> None:
    payload = json.dumps(_manifest()).replace('"schemaVersion": 2', '"schemaVersion": ' + version.decode())
    assert "schemaVersion must be the integer 2" in _refusal(payload.encode())


@pytest.mark.parametrize("old, new", [('"layers"', '"Layers"'), ('"mediaType": "application/vnd.oci.image.m',
                                                                 '"MEDIATYPE": "application/vnd.oci.image.m'),
                                      ('"size"', '"\\u017fize"'), ('"digest"', '"Digest"')])
def test_keys_that_differ_from_a_field_only_in_case(old: str, new: str) -> None:
    payload = json.dumps(_manifest(layers=[dict(CONFIG)])).replace(old, new, 1).encode()
    assert "only in case (Go clients would read it as" in _refusal(payload)


def test_existing_rules_stay() -> None:
    assert "schema 1" in _refusal(b'{"schemaVersion": 1, "name": "a", "tag": "b", "fsLayers": []}')
    assert "JSON object" in _refusal(b"[]")
    assert "does not match the Content-Type" in _refusal(json.dumps(_manifest(mediaType=OCI_INDEX)).encode())
    parsed = parse_manifest(json.dumps(_manifest(artifactType="application/x.a", subject=dict(CONFIG))).encode(),
                            None)
    assert parsed.artifact_type == "application/x.a" and parsed.subject == CONFIG["digest"]


def test_the_document_is_kept_for_the_callers() -> None:
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{**CONFIG, "mediaType": OCI_MANIFEST, "platform": {"os": "linux", "architecture": "arm64"}}]}
    parsed = parse_manifest(json.dumps(index).encode(), OCI_INDEX)
    assert parsed.document == index


# -- properties --------------------------------------------------------------------------------

_TOKENS = [b"{", b"}", b"[", b"]", b",", b":", b" ", b"\n", b'"', b'"a"', b'"layers"', b'"size"', b"0", b"-1",
           b"1e400", b"9223372036854775808", b"NaN", b"-Infinity", b"true", b"null", b'"\\ud800"', b'"\\ud83d\\ude00"',
           b'"schemaVersion"', b"2", b'"mediaType"', b'"config"', b"\xef\xbb\xbf", b"\xff", b"\x00", b"\\",
           json.dumps(CONFIG).encode(), b'"' + OCI_MANIFEST.encode() + b'"', b"1" * 30]
_JSONISH = st.lists(st.sampled_from(_TOKENS), max_size=60).map(b"".join)


def _mutated_manifest(data: st.DataObject) -> bytes:
    payload = bytearray(json.dumps(_manifest(layers=[dict(CONFIG)])).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(payload)))
        payload[at:at + data.draw(st.integers(0, 3))] = data.draw(st.sampled_from(_TOKENS))
    return bytes(payload)


def _only_clean_outcomes(payload: bytes, content_type: str | None) -> None:
    try:
        parsed = parse_manifest(payload, content_type)
    except RegistryError as exc:
        assert exc.code == "MANIFEST_INVALID", exc
        assert http_status(exc) == 400 and exc.message
        return
    assert isinstance(parsed, ParsedManifest) and isinstance(parsed.document, dict)


@fuzz
@given(payload=st.one_of(st.binary(max_size=300), _JSONISH),
       content_type=st.sampled_from([None, OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, "text/plain"]))
@example(payload=b"[" * 100_000, content_type=None)
@example(payload=b"1" * 5000, content_type=None)
@example(payload=b"\xef\xbb\xbf{}", content_type=None)
def test_any_bytes_give_a_manifest_or_manifest_invalid(payload: bytes, content_type: str | None) -> None:
    _only_clean_outcomes(payload, content_type)


@fuzz
@given(data=st.data())
def test_any_mutated_manifest_gives_a_manifest_or_manifest_invalid(data: st.DataObject) -> None:
    _only_clean_outcomes(_mutated_manifest(data), OCI_MANIFEST)


@fuzz
@given(payload=st.one_of(st.binary(max_size=300), _JSONISH))
def test_strict_json_gives_a_value_or_its_own_error(payload: bytes) -> None:
    try:
        json_strict.loads(payload)
    except json_strict.StrictJSONError as exc:
        assert str(exc)


_MEDIA_TYPES = st.sampled_from([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
                                 "application/vnd.docker.distribution.manifest.v1+prettyjws", "*/*", "application/*"])
_CONTENT_TYPES = st.one_of(st.none(), _MEDIA_TYPES, any_text(),
                           st.builds(lambda t, p: t + p, _MEDIA_TYPES,
                                     st.sampled_from(["; charset=utf-8", ";", " ", "\n", ";q=0", "\x00", "+json"])),
                           _MEDIA_TYPES.map(str.upper))


@fuzz
@given(content_type=_CONTENT_TYPES, index=st.booleans())
@example(content_type="application/vnd.docker.distribution.manifest.v1+json", index=False)
def test_any_content_type_with_a_valid_manifest(content_type: str | None, index: bool) -> None:
    """The Content-Type header against the body's own mediaType."""
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [dict(CONFIG, mediaType=OCI_MANIFEST)]} \
        if index else _manifest()
    _only_clean_outcomes(json.dumps(document).encode(), content_type)


@fuzz
@given(headers=st.lists(st.one_of(any_text(), st.lists(_MEDIA_TYPES, max_size=4).map(", ".join)), max_size=4),
       media_type=_MEDIA_TYPES)
def test_accept_headers(headers: list[str], media_type: str) -> None:
    """Accept on a manifest GET: a yes or a no for any header values."""
    assert accepts(headers, media_type) in (True, False)


# -- valid manifests round-trip ----------------------------------------------------------------

_HEX = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())
_TEXT = st.text(max_size=40)  # any code points but surrogates: what JSON strings may hold
_MEDIA = st.sampled_from(["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.empty.v1+json",
                          "application/vnd.docker.image.rootfs.diff.tar.gzip", "application/x.\u00e9"])
_SIZE = st.integers(0, json_strict.INT64_MAX)
_ANNOTATIONS = st.dictionaries(_TEXT, _TEXT, max_size=4)


def _descriptors(media: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"mediaType": media, "digest": _HEX, "size": _SIZE},
                                 optional={"annotations": _ANNOTATIONS, "urls": st.lists(_TEXT, max_size=2)})


_EXTRA = st.recursive(st.none() | st.booleans() | _SIZE | st.integers(json_strict.INT64_MIN, 0)
                      | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
                      max_leaves=12)


@st.composite
def valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    media_type = draw(st.sampled_from([OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST]))
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if media_type in IMAGE_MANIFESTS:
        document["config"] = draw(_descriptors(st.just("application/vnd.oci.image.config.v1+json")))
        document["layers"] = draw(st.lists(_descriptors(_MEDIA), max_size=4))
    else:
        platform = st.fixed_dictionaries({"os": _TEXT, "architecture": _TEXT})
        entry = _descriptors(st.just(OCI_MANIFEST)).flatmap(
            lambda d: st.fixed_dictionaries({}, optional={"platform": platform}).map(lambda p: {**d, **p}))
        document["manifests"] = draw(st.lists(entry, max_size=4))
    for key, strategy in (("annotations", _ANNOTATIONS), ("artifactType", _TEXT),
                          ("subject", _descriptors(st.just(OCI_MANIFEST))), ("x-extra", _EXTRA)):
        if draw(st.booleans()):
            document[key] = draw(strategy)
    return document


def _formatted(document: dict[str, Any], style: int, seed: int) -> bytes:
    """The same document written as clients might: compact, indented, ASCII escapes or raw UTF-8,
    keys in another order, CRLF and tabs around."""
    rng = random.Random(seed)
    items = list(document.items())
    rng.shuffle(items)
    shuffled = dict(items)
    if style == 0:
        return json.dumps(shuffled, separators=(",", ":")).encode()
    if style == 1:
        return json.dumps(shuffled, indent=3, ensure_ascii=False).encode()
    if style == 2:
        return b"\r\n\t " + json.dumps(shuffled, indent="\t").replace("\n", "\r\n").encode() + b" \n"
    return json.dumps(shuffled, ensure_ascii=True).replace("/", "\\/").encode()  # \/ is a valid escape


@fuzz
@given(document=valid_manifests(), style=st.integers(0, 3), seed=st.integers(0, 2**32))
def test_valid_manifests_round_trip(document: dict[str, Any], style: int, seed: int) -> None:
    payload = _formatted(document, style, seed)
    parsed = parse_manifest(payload, None)
    assert parsed.media_type == document["mediaType"]
    assert parsed.document == document
    assert json_strict.loads(payload) == document
    if parsed.media_type in IMAGE_MANIFESTS:
        assert parsed.blobs[0].digest == document["config"]["digest"]
        assert [d.size for d in parsed.blobs[1:]] == [d["size"] for d in document["layers"] if not d.get("urls")]
    else:
        assert [d.digest for d in parsed.manifests] == [d["digest"] for d in document["manifests"]]

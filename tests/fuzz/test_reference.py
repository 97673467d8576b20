"""Repository names, tags and image references (registry/reference.py), and the manifest endpoint's
reading of `<tag or digest>` (registry/api/manifests.py): for any text, a value that matches the
distribution-spec grammar in full, or the spec's error (NAME_INVALID, TAG_INVALID, DIGEST_INVALID,
or MANIFEST_UNKNOWN for a GET of a reference nothing can have), never another exception."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from registry.api.manifests import _existing_reference, _new_reference
from registry.digest import Digest
from registry.errors import RegistryError
from registry.http_errors import http_status
from registry.reference import ImageReference, parse_image_reference, validate_name, validate_tag
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import any_text, near

COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME = re.compile(rf"{COMPONENT}(?:/{COMPONENT})*")
TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

_ALNUM = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_COMPONENTS = st.builds(lambda first, rest: first + "".join(sep + run for sep, run in rest), _ALNUM,
                        st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), _ALNUM), max_size=2))
# Built from pieces: st.from_regex is some 40 times slower per example.
NAMES = st.one_of(st.lists(_COMPONENTS, min_size=1, max_size=4).map("/".join),
                  st.sampled_from(["library/alpine", "team/app", "a", "a/b/c", "a__b/c--d", "x.y_z/w", "a" * 255]))
TAGS = st.one_of(st.builds(str.__add__, st.sampled_from("aZ09_"), st.text("abcXYZ0189._-", max_size=20)),
                 st.sampled_from(["latest", "v1.2.3", "_x", "A" * 128]))
DIGESTS = st.sampled_from(["sha256:" + "ab" * 32, "sha512:" + "cd" * 64])
HOSTS = st.sampled_from(["", "localhost/", "registry.example:5000/", "127.0.0.1:5000/", "[::1]:5000/", "docker.io/"])
REFERENCES = st.builds(lambda host, name, tag, digest: host + name + (":" + tag if tag else "") +
                       ("@" + digest if digest else ""),
                       HOSTS, NAMES, st.one_of(st.none(), TAGS), st.one_of(st.none(), DIGESTS))


@fuzz
@given(near(NAMES))
@example("abc\n")  # `$` matched before a final newline: a repository "abc\n" could be created
@example("a/" * 200)
@example("A")
@example("a%2fb")
@example("a/../b")
def test_repository_names(value: str) -> None:
    try:
        name = validate_name(value)
    except RegistryError as exc:
        assert exc.code == "NAME_INVALID" and http_status(exc) == 400
        return
    assert name == value and len(name) <= 255 and NAME.fullmatch(name), repr(name)


@fuzz
@given(near(TAGS))
@example("v1\n")  # stored as a tag before the fix, listed by tags/list as "v1\n"
@example("a" * 129)
def test_tags(value: str) -> None:
    try:
        tag = validate_tag(value)
    except RegistryError as exc:
        assert exc.code == "TAG_INVALID" and http_status(exc) == 400
        return
    assert tag == value and TAG.fullmatch(tag), repr(tag)


@fuzz
@given(st.one_of(near(TAGS), near(DIGESTS), any_text()))
def test_manifest_references(value: str) -> None:
    """GET/HEAD: a tag, a digest, or 404 MANIFEST_UNKNOWN. PUT: a tag, a digest, or 400."""
    try:
        found = _existing_reference(value)
    except RegistryError as exc:
        assert exc.code == "MANIFEST_UNKNOWN" and http_status(exc) == 404
    else:
        assert str(found) == value and (isinstance(found, Digest) or TAG.fullmatch(found))
    try:
        stored = _new_reference(value)
    except RegistryError as exc:
        assert exc.code in ("TAG_INVALID", "DIGEST_INVALID") and http_status(exc) == 400
    else:
        assert str(stored) == value and (isinstance(stored, Digest) or TAG.fullmatch(stored))


@fuzz
@given(near(REFERENCES))
@example("alpine@sha256:" + "a" * 64 + "\n")
@example("localhost:99999999999999999999/a")
@example("@")
@example(":")
def test_image_references(value: str) -> None:
    """`registry pull` and `registry run` read these (registry/runtime)."""
    try:
        reference = parse_image_reference(value)
    except RegistryError as exc:
        assert exc.code in ("NAME_INVALID", "TAG_INVALID", "DIGEST_INVALID") and http_status(exc) == 400, exc
        return
    assert isinstance(reference, ImageReference)
    assert NAME.fullmatch(reference.repository) and len(reference.repository) <= 255, reference
    assert reference.tag is None or TAG.fullmatch(reference.tag), reference
    assert reference.digest is None or re.fullmatch(r"[a-z0-9]+:[a-f0-9]{32,}", reference.digest), reference
    assert reference.reference in (reference.digest, reference.tag, "latest")

"""The readers of registry/migrate/ on hostile and odd input: link files, index.json, a registry:2 tree
and the choice of layout. Each bad input is a reason (a BadLink, a problem, a LayoutError), never a
traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.digest import Digest
from registry.migrate.distribution import read_distribution, storage_root
from registry.migrate.hashing import _check, read_verified
from registry.migrate.layouts import open_source
from registry.migrate.links import BadLink, parse_link, read_link
from registry.migrate.oci_layout import REF_NAME, parse_index
from registry.migrate.source import LayoutError

HEX = "ab" * 32
DIGEST = f"sha256:{HEX}"


@pytest.mark.parametrize("data, digest", [
    (DIGEST.encode(), DIGEST),
    (DIGEST.encode() + b"\n", DIGEST),
    (b"  " + DIGEST.encode() + b"\r\n", DIGEST),
    ("sha512:" + "cd" * 64, "sha512:" + "cd" * 64),
])
def test_a_link_file_holds_one_digest(data: bytes | str, digest: str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    assert str(parse_link(raw)) == digest


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (b"sha256:" + b"AB" * 32, "does not hold a digest"),
    (b"sha256:abc", "does not hold a digest"),
    (b"md5:" + b"a" * 32, "does not hold a digest"),
    (DIGEST.encode() + b" extra", "does not hold a digest"),
    (DIGEST.encode() + b"\x00", "does not hold a digest"),
    ("sha256:é".encode(), "not ASCII"),
    (b"\xff\xfe\x00", "not ASCII"),
    (b"x" * 5000, "larger than"),
])
def test_a_bad_link_file_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(BadLink, match=reason):
        parse_link(data)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_link_bytes_are_a_digest_or_a_bad_link(data: bytes) -> None:
    try:
        digest = parse_link(data)
    except BadLink as exc:
        assert str(exc)
    else:
        assert isinstance(digest, Digest) and str(digest) in data.decode("ascii")


def test_read_link_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(BadLink, match="missing"):
        read_link(tmp_path / "absent")
    (tmp_path / "dir").mkdir()
    with pytest.raises(BadLink):
        read_link(tmp_path / "dir")
    target = tmp_path / "target"
    target.write_text(DIGEST)
    os.symlink(target, tmp_path / "symlink")
    with pytest.raises(BadLink, match="cannot be opened"):
        read_link(tmp_path / "symlink")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(BadLink, match="not a regular file"):
        read_link(tmp_path / "fifo")


def _index(*descriptors: object, **extra: object) -> bytes:
    return json.dumps({"schemaVersion": 2, "manifests": list(descriptors), **extra}).encode()


GOOD = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST, "size": 10}


def test_index_entries_and_their_tags() -> None:
    tagged = {**GOOD, "annotations": {REF_NAME: "v1", "other": "x"}}
    entries, problems = parse_index(_index(GOOD, tagged))
    assert problems == []
    assert [(str(e.digest), e.size, e.ref_name) for e in entries] == [(DIGEST, 10, None), (DIGEST, 10, "v1")]


@pytest.mark.parametrize("descriptor, reason", [
    ("a string", "not an object"),
    ({**GOOD, "mediaType": 3}, "no mediaType"),
    ({**GOOD, "mediaType": ""}, "no mediaType"),
    ({**GOOD, "digest": None}, "no digest"),
    ({**GOOD, "digest": "sha256:xyz"}, "invalid"),
    ({**GOOD, "digest": "sha256:" + "a" * 63}, "invalid"),
    ({**GOOD, "size": -1}, "size"),
    ({**GOOD, "size": True}, "size"),
    ({**GOOD, "size": 1.5}, "size"),
    ({**GOOD, "annotations": []}, "annotations"),
    ({**GOOD, "annotations": {REF_NAME: 7}}, "annotations"),
])
def test_a_bad_descriptor_is_a_problem_not_the_end(descriptor: object, reason: str) -> None:
    entries, problems = parse_index(_index(descriptor, GOOD))
    assert len(entries) == 1 and len(problems) == 1 and reason in problems[0], problems


@pytest.mark.parametrize("data, reason", [
    (b"", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (b'{"schemaVersion": 2, "manifests": {}}', "not a list"),
    (b'{"schemaVersion": 1, "manifests": []}', "schemaVersion"),
    (b'{"schemaVersion": 2.0, "manifests": []}', "schemaVersion"),
    (b'{"schemaVersion": 2, "schemaVersion": 2, "manifests": []}', "not valid JSON"),
    (b'\xef\xbb\xbf{"schemaVersion": 2}', "not valid JSON"),
    (b"[" * 10000 + b"]" * 10000, "not valid JSON"),
])
def test_an_index_that_is_not_one_is_a_layout_error(data: bytes, reason: str) -> None:
    with pytest.raises(LayoutError, match=reason):
        parse_index(data)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=80)
                           | st.sampled_from([DIGEST, "sha256:", REF_NAME, "mediaType"]),
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.sampled_from(["mediaType", "digest", "size", "annotations",
                                                              REF_NAME, "x"]), children, max_size=5),
                           max_leaves=20)


@given(st.lists(json_values, max_size=5))
@settings(max_examples=300, deadline=None)
def test_any_index_json_is_entries_and_problems(descriptors: list[object]) -> None:
    entries, problems = parse_index(_index(*descriptors))
    assert len(entries) + len(problems) == len(descriptors)


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_any_index_bytes_are_read_or_refused_in_one_line(data: bytes) -> None:
    try:
        parse_index(data)
    except LayoutError as exc:
        assert "\n" not in str(exc)


def _link(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def test_a_distribution_tree_with_nested_names_and_bad_links(tmp_path: Path) -> None:
    v2 = tmp_path / "docker" / "registry" / "v2"
    repos = v2 / "repositories"
    good = "sha256:" + "11" * 32
    for name in ("a", "a/b/c"):
        _link(repos / name / "_manifests" / "revisions" / "sha256" / ("11" * 32) / "link", good)
        _link(repos / name / "_manifests" / "tags" / "latest" / "current" / "link", good)
        _link(repos / name / "_layers" / "sha256" / ("22" * 32) / "link", "sha256:" + "22" * 32)
    (repos / "a" / "_uploads" / "x").mkdir(parents=True)
    _link(repos / "a" / "_manifests" / "tags" / "junk" / "current" / "link", b"\x00garbage")
    _link(repos / "a" / "_manifests" / "revisions" / "sha256" / ("33" * 32) / "link", good)  # names another
    _link(repos / "a" / "_layers" / "sha256" / ("44" * 32) / "link", "")
    (repos / "a" / "_manifests" / "tags" / "nolink" / "current").mkdir(parents=True)
    outside = tmp_path / "outside"
    _link(outside / "_manifests" / "tags" / "t" / "current" / "link", good)
    os.symlink(outside, repos / "linked")  # never followed

    assert storage_root(tmp_path) == v2 and storage_root(v2) == v2
    source = read_distribution(v2)
    assert [r.name for r in source.repositories] == ["a", "a/b/c"]
    a = source.repositories[0]
    assert {t: str(d) for t, d in a.tags.items()} == {"latest": good}
    assert [str(d) for d in a.manifests] == [good] and [str(d) for d in a.blobs] == ["sha256:" + "22" * 32]
    reasons = {(p.kind, p.name): p.reason for p in source.problems}
    assert "does not hold a digest" in reasons[("tag", "junk")]
    assert "missing" in reasons[("tag", "nolink")]
    assert "not the digest of its directory" in reasons[("manifest", "sha256:" + "33" * 32)]
    assert "empty" in reasons[("blob", "sha256:" + "44" * 32)]
    assert len(source.problems) == 4


def test_neither_layout_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    oci = tmp_path / "oci"
    oci.mkdir()
    (oci / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (oci / "index.json").write_text("{broken")
    for path, repository, reason in [(tmp_path / "absent", None, "no such directory"),
                                     (tmp_path / "file", None, "not a directory"),
                                     (tmp_path / "empty", None, "neither"),
                                     (oci, None, "--repository"),
                                     (oci, "Bad Name", "invalid repository name"),
                                     (oci, "ok", "not valid JSON")]:
        with pytest.raises(LayoutError, match=reason) as caught:
            open_source(path, repository)
        assert "\n" not in str(caught.value)


def test_blob_checks_stream_and_say_what_is_wrong(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 * 1024 * 1024 + 5)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    path = tmp_path / "data"
    path.write_bytes(data)
    assert _check(path, digest).size == len(data)
    path.write_bytes(data[:-1] + b"\x00")
    assert _check(path, digest).problem == "corrupt"
    assert _check(tmp_path / "absent", digest).problem == "missing"
    path.write_bytes(b"{}")
    assert read_verified(path, digest, 1).problem == "corrupt"  # type: ignore[union-attr]

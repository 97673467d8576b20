"""Entries of the configuration's lists (registry/config_entries.py Entry and whole_number; mirror
upstreams, registry/mirror/upstreams.py parse_upstreams; retention policies and quotas,
registry/gc/policy.py; immutable-tag rules, registry/gc/immutable.py, whose parser also reads the
admin API's bodies): for any value YAML or JSON can hand over, typed entries or one EntryError
(MirrorConfigError, PolicyError) naming the entry, never another exception."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from registry.config_entries import Entry, EntryError, whole_number
from registry.gc.immutable import parse_immutable_tags
from registry.gc.policy import PolicyError, parse_quotas, parse_retention, parse_size
from registry.mirror.upstreams import MirrorConfigError, parse_upstreams
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import HUGE_INTEGERS, SCALARS, mutated, values

CA_FILES = st.sampled_from(["", "/nonexistent/ca.pem", "/", "a\x00b", "\udc80", str(Path(__file__)), "/etc/hostname"])
URLS = st.sampled_from(["http://upstream:5000", "https://registry-1.docker.io", "http://[::1]:5000", "ftp://x", "http://",
                        "http://a:99999", "http://[::1", "https://h:٣", "http://\udc80", "//h", "http://a b"])
UPSTREAMS = st.fixed_dictionaries(
    {"alias": st.one_of(st.sampled_from(["hub", "ghcr", "Hub", "a/b", "é", ""]), SCALARS), "url": st.one_of(URLS, SCALARS)},
    optional={"host": st.one_of(st.sampled_from(["docker.io", "ghcr.io"]), SCALARS), "docker_hub": st.one_of(st.booleans(), SCALARS),
              "username": SCALARS, "password": SCALARS, "tag_ttl": st.one_of(st.sampled_from([300, "30", "1.5", -1]), SCALARS),
              "ca_file": st.one_of(CA_FILES, SCALARS), "unknown": SCALARS})
RETENTION = st.fixed_dictionaries(
    {"repositories": st.one_of(st.sampled_from(["team/*", "*", ""]), SCALARS)},
    optional={"keep_last": st.one_of(st.sampled_from([5, "5", "٥", "1_0", 0, -1, 2 ** 63]), SCALARS),
              "older_than_days": st.one_of(st.sampled_from([30, "30", "1.5", ".inf", "nan"]), SCALARS),
              "keep_tags": st.one_of(st.sampled_from(["v\\d+", "(", "latest|v.*", "a{99999999999}", "(?P<", "[z-a]"]), SCALARS),
              "keep_pulled_within_days": SCALARS, "other": SCALARS})
QUOTAS = st.fixed_dictionaries({"namespace": st.one_of(st.sampled_from(["team", "/", "a/b/"]), SCALARS)},
                               optional={"bytes": st.one_of(st.sampled_from(["10GiB", "500 MB", "1.5k", "٣GB", "-1", "10 XB"]),
                                                            SCALARS)})

PATTERN_PIECES = ["prod", "/", "*", "**", "?", "[a-z]", "[!", "]", "v", ".", "-", "_", "A", " ", "\x00", "é", "\udc80",
                  "{", "1"]
PATTERNS = st.one_of(st.lists(st.sampled_from(PATTERN_PIECES), max_size=8).map("".join), SCALARS, HUGE_INTEGERS)
IMMUTABLE = st.fixed_dictionaries({"repositories": PATTERNS, "tags": PATTERNS}, optional={"other": SCALARS})


def _entries(entry: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.one_of(entry, SCALARS, values(max_leaves=4)), max_size=3)


@fuzz
@given(_entries(UPSTREAMS))
@example([{"alias": "a", "url": "http://x", "ca_file": "a\x00b"}])  # ValueError from open(): embedded null byte
@example([{"alias": 16 ** 5000, "url": "http://x"}])  # an int too wide for str()
@example([[16 ** 5000]])
def test_mirror_upstreams(entries: list[Any]) -> None:
    try:
        upstreams = parse_upstreams(entries)
    except MirrorConfigError as exc:
        assert str(exc).startswith("mirror.upstreams"), exc
        return
    for upstream in upstreams:
        assert upstream.url.startswith(("http://", "https://")) and upstream.alias and "/" not in upstream.alias
        assert math.isfinite(upstream.tag_ttl) and upstream.tag_ttl >= 0


@fuzz
@given(_entries(RETENTION))
@example([{"repositories": "*", "keep_last": "٥"}])
@example([{"repositories": "*", "keep_last": 5, "keep_tags": "a" * 3000 + "(" * 200}])
def test_retention_policies(entries: list[Any]) -> None:
    try:
        policies = parse_retention(entries)
    except PolicyError as exc:
        assert str(exc).startswith("retention.policies"), exc
        return
    for policy in policies:
        assert policy.keep_last is not None or policy.older_than_days is not None
        assert policy.keep_last is None or 0 <= policy.keep_last < 2 ** 63


@fuzz
@given(_entries(QUOTAS))
@example([{"namespace": "team", "bytes": 16 ** 5000}])  # str() of an int too wide for it
@example([{"namespace": "team", "bytes": "٣GB"}])
@example([{"namespace": "team", "bytes": float("inf")}])
def test_quotas(entries: list[Any]) -> None:
    try:
        quotas = parse_quotas(entries)
    except PolicyError as exc:
        assert str(exc).startswith("quota.namespaces"), exc
        return
    assert all(0 <= quota.bytes < 2 ** 63 for quota in quotas)


@fuzz
@given(_entries(IMMUTABLE))
@example([{"repositories": "prod/**", "tags": "v*"}])
@example([{"repositories": 16 ** 5000, "tags": "v*"}])
@example([{"repositories": "a" * 300, "tags": "v*"}])
def test_immutable_tag_rules(entries: list[Any]) -> None:
    try:
        rules = parse_immutable_tags(entries)
    except PolicyError as exc:
        assert str(exc).startswith("immutable_tags["), exc
        return
    for rule in rules:
        for pattern in (rule.repositories, rule.tags):
            assert 0 < len(pattern) <= 255 and pattern.isascii() and pattern.isprintable() and " " not in pattern
        assert "/" not in rule.tags and rule.repositories == rule.repositories.lower()
        assert all(segment == "**" or "**" not in segment for segment in rule.repositories.split("/"))
        rule.holds("prod/api", "v1.0")  # any accepted pattern can be matched


SIZES = st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10 ** 12),
                  st.sampled_from(["", "b", "k", "KB", "MiB", " GiB", "tb", "XB", "e3"]))


@fuzz
@given(st.one_of(SIZES, mutated(SIZES), SCALARS))
@example(16 ** 5000)
@example(-(16 ** 5000))
@example("9" * 15 + "TiB")
def test_sizes(value: Any) -> None:
    try:
        size = parse_size(value, "size")
    except PolicyError as exc:
        assert str(exc).startswith("size: ")
        return
    assert isinstance(size, int) and 0 <= size < 2 ** 63


@fuzz
@given(key=st.sampled_from(["a", "missing"]), value=st.one_of(SCALARS, values(max_leaves=4), HUGE_INTEGERS),
       kind=st.sampled_from(["text", "flag", "number", "integer", "names"]))
@example(key="a", value=16 ** 5000, kind="text")
@example(key="a", value=[16 ** 5000], kind="names")
def test_entry_fields(key: str, value: Any, kind: str) -> None:
    entry = Entry({"a": value}, "things[0]", {"a"})
    try:
        result = entry.names(key, "a name") if kind == "names" else getattr(entry, kind)(key)
    except EntryError as exc:
        assert str(exc).startswith("things[0]: a"), exc
        return
    if kind == "number" and result is not None:
        assert math.isfinite(result) and result >= 0
    if kind == "integer" and result is not None:
        assert 0 <= result < 2 ** 63


@fuzz
@given(st.one_of(SCALARS, mutated(st.integers(-10 ** 6, 10 ** 6).map(str))))
@example("٣")
@example("1_000")
@example(" 12 ")
def test_whole_numbers(value: Any) -> None:
    try:
        number = whole_number(value)
    except ValueError as exc:
        assert type(exc) is ValueError and str(exc)
        return
    assert isinstance(number, int) and not isinstance(number, bool)
    if isinstance(value, str):
        assert value.strip().lstrip("+-").isascii() and value.strip().lstrip("+-").isdigit(), repr(value)

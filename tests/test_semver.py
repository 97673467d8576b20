"""Semantic versions and ranges (registry/semver.py): npm's documented examples (node-semver's README,
"Ranges", "Advanced Range Syntax", "Prerelease Tags") and semver 2.0's precedence list, then properties:
the order against the spec's rules written out plainly, ranges against the plain definitions of ~ and ^,
the normal form read back, and any text refused only with ValueError."""

from __future__ import annotations

import functools
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.semver import (MAX_COMPARATORS, MAX_NUMBER_DIGITS, MAX_RANGE_LENGTH, MAX_TAG_LENGTH, Version, parse_range,
                             parse_version)
from tests.fuzz.conftest import fuzz_light as fuzz
from tests.fuzz.strategies import any_text, near


@pytest.mark.parametrize(("tag", "expected"), [
    ("1.2.3", Version(1, 2, 3)),
    ("v1.2.3", Version(1, 2, 3)),
    ("V1.2.3", Version(1, 2, 3)),
    ("1", Version(1, 0, 0)),
    ("1.2", Version(1, 2, 0)),
    ("v2", Version(2, 0, 0)),
    ("0.0.0", Version(0, 0, 0)),
    ("1.2.3-rc.1", Version(1, 2, 3, ("rc", "1"))),
    ("1.2-rc.1", Version(1, 2, 0, ("rc", "1"))),
    ("1.2.3-0.3.7", Version(1, 2, 3, ("0", "3", "7"))),
    ("1.2.3-x-y-z.--", Version(1, 2, 3, ("x-y-z", "--"))),
    ("1.2.3-alpha+001", Version(1, 2, 3, ("alpha",))),
    ("1.2.3+20130313144700", Version(1, 2, 3)),
    ("1.2.3-beta+exp.sha.5114f85", Version(1, 2, 3, ("beta",))),
    ("1.2.3-rc.01a", Version(1, 2, 3, ("rc", "01a"))),  # alphanumeric: leading zero allowed
    ("1.2.3+001", Version(1, 2, 3)),  # build identifiers may have leading zeros
    ("latest", None), ("", None), ("v", None), ("1.2.3.4", None), ("01.2", None), ("1.02", None),
    ("1.2.03", None), ("1.2.3-rc.01", None), ("1.2.3-", None), ("1.2.3+", None), ("1.2.3-a..b", None),
    ("1.2.3-a_b", None), ("1.2.3+a.", None), ("1.x", None), ("*", None), (" 1.2.3", None), ("1.2.3\n", None),
    ("1.2.٣", None), ("１.2.3", None), ("vv1", None), ("-1.2.3", None), ("1..2", None), ("1.2.", None),
    ("1.2.3-é", None), ("x" * 300, None), ("1" * 300, None), ("1" * 19, None),
    ("9" * 18, Version(10**18 - 1, 0, 0)), ("1.0.0-" + "9" * 40, Version(1, 0, 0, ("9" * 40,))),
])
def test_parse_version(tag: str, expected: Version | None) -> None:
    assert parse_version(tag) == expected


def test_build_is_kept_and_ignored_for_order() -> None:
    with_build = parse_version("1.2.3+abc.5")
    assert with_build is not None and with_build.build == ("abc", "5") and str(with_build) == "1.2.3+abc.5"
    assert with_build == parse_version("1.2.3+other") == Version(1, 2, 3)
    assert hash(with_build) == hash(Version(1, 2, 3))


def test_semver_spec_precedence_list() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
               "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "1.9.0", "1.10.0", "1.11.0", "2.0.0-0", "2.0.0", "2.1.0",
               "2.1.1"]
    versions = [v for v in map(parse_version, ordered) if v is not None]
    assert len(versions) == len(ordered)
    for (i, a), (j, b) in itertools.product(enumerate(versions), repeat=2):
        assert (a < b) is (i < j) and (a == b) is (i == j) and (a > b) is (i > j), (a, b)


# (range, its normal form, tags it matches, tags it does not)
RANGES = [
    (">=1.2.7", ">=1.2.7", ["1.2.7", "1.2.8", "2.5.3", "1.3.9"], ["1.2.6", "1.1.0"]),
    (">=1.2.7 <1.3.0", ">=1.2.7 <1.3.0", ["1.2.7", "1.2.8", "1.2.99"], ["1.2.6", "1.3.0", "1.1.0"]),
    ("1.2.7 || >=1.2.9 <2.0.0", "=1.2.7 || >=1.2.9 <2.0.0", ["1.2.7", "1.2.9", "1.4.6"], ["1.2.8", "2.0.0"]),
    (">1.2.3-alpha.3", ">1.2.3-alpha.3", ["1.2.3-alpha.7", "3.4.5", "1.2.3"], ["3.4.5-alpha.9", "1.2.3-alpha.3"]),
    (">=1.2 <2", ">=1.2.0 <2.0.0", ["1.2", "v1.2.0", "1.9.99", "1.10"], ["1.1.9", "2", "2.0.0-rc.1", "1.5.0-rc.1"]),
    ("*", "*", ["0.0.0", "1.2.3", "v99"], ["1.2.3-rc.1", "latest", ""]),
    ("x", "*", ["1.0.0"], ["1.0.0-0"]),
    ("1.x", ">=1.0.0 <2.0.0", ["1.0.0", "1.99.99"], ["2.0.0", "0.9.9", "2.0.0-0"]),
    ("1.*", ">=1.0.0 <2.0.0", ["1.5"], ["2"]),
    ("1.2.x", ">=1.2.0 <1.3.0", ["1.2.0", "1.2.99"], ["1.3.0", "1.1.9"]),
    ("1", ">=1.0.0 <2.0.0", ["1.4.2"], ["2.0.0"]),
    ("1.2", ">=1.2.0 <1.3.0", ["1.2.5"], ["1.3.0"]),
    ("1.2.3", "=1.2.3", ["1.2.3", "v1.2.3", "1.2.3+b"], ["1.2.4", "1.2.3-rc.1"]),
    ("=1.2.3", "=1.2.3", ["1.2.3"], ["1.2.2"]),
    ("=1.2", ">=1.2.0 <1.3.0", ["1.2.9"], ["1.3.0"]),
    (">1", ">=2.0.0", ["2.0.0"], ["1.99.0"]),
    (">1.2", ">=1.3.0", ["1.3.0"], ["1.2.99"]),
    ("<=1.2", "<1.3.0", ["1.2.99"], ["1.3.0"]),
    ("<=1", "<2.0.0", ["1.99.0"], ["2.0.0"]),
    ("<1.2", "<1.2.0", ["1.1.99"], ["1.2.0"]),
    (">= 1.2  < 2", ">=1.2.0 <2.0.0", ["1.2.0"], ["2.0.0"]),
    ("~1.2.3", ">=1.2.3 <1.3.0", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
    ("~1.2", ">=1.2.0 <1.3.0", ["1.2.0"], ["1.3.0"]),
    ("~1", ">=1.0.0 <2.0.0", ["1.9.0"], ["2.0.0"]),
    ("~0.2.3", ">=0.2.3 <0.3.0", ["0.2.9"], ["0.3.0"]),
    ("~0.2", ">=0.2.0 <0.3.0", ["0.2.0"], ["0.3.0"]),
    ("~0", ">=0.0.0 <1.0.0", ["0.9.0"], ["1.0.0"]),
    ("~>1.2.3", ">=1.2.3 <1.3.0", ["1.2.5"], ["1.3.0"]),
    ("~1.2.3-beta.2", ">=1.2.3-beta.2 <1.3.0", ["1.2.3-beta.4", "1.2.3"], ["1.2.4-beta.2", "1.2.3-beta.1"]),
    ("^1.2.3", ">=1.2.3 <2.0.0", ["1.2.3", "1.9.9"], ["2.0.0", "1.2.2"]),
    ("^0.2.3", ">=0.2.3 <0.3.0", ["0.2.9"], ["0.3.0", "0.2.2"]),
    ("^0.0.3", ">=0.0.3 <0.0.4", ["0.0.3"], ["0.0.4", "0.0.2"]),
    ("^1.2.3-beta.2", ">=1.2.3-beta.2 <2.0.0", ["1.2.3-beta.4", "1.5.0"], ["1.2.4-beta.2", "1.2.3-beta.1"]),
    ("^0.0.3-beta", ">=0.0.3-beta <0.0.4", ["0.0.3-pr.2"], ["0.0.4-pr.2"]),
    ("^1.2.x", ">=1.2.0 <2.0.0", ["1.2.0", "1.9.0"], ["2.0.0"]),
    ("^1.2", ">=1.2.0 <2.0.0", ["1.3.0"], ["1.1.0"]),
    ("^0.0.x", ">=0.0.0 <0.1.0", ["0.0.9"], ["0.1.0"]),
    ("^0.0", ">=0.0.0 <0.1.0", ["0.0.1"], ["0.1.0"]),
    ("^1.x", ">=1.0.0 <2.0.0", ["1.0.0"], ["2.0.0"]),
    ("^0.x", ">=0.0.0 <1.0.0", ["0.9.9"], ["1.0.0"]),
    ("^0.2", ">=0.2.0 <0.3.0", ["0.2.9"], ["0.3.0"]),
    ("^*", "*", ["3.0.0"], ["3.0.0-rc"]),
    (">=1.3.0-rc.0 <1.4", ">=1.3.0-rc.0 <1.4.0", ["1.3.0-rc.1", "1.3.0", "1.3.5"], ["1.3.1-rc.1", "1.3.0-beta"]),
    ("1.x || >=2.5.0", ">=1.0.0 <2.0.0 || >=2.5.0",
     ["1.2.3", "2.5.0", "9.0.0"], ["2.4.0"]),
]


@pytest.mark.parametrize(("text", "normal", "inside", "outside"), RANGES)
def test_documented_ranges(text: str, normal: str, inside: list[str], outside: list[str]) -> None:
    found = parse_range(text)
    assert str(found) == normal
    assert [tag for tag in inside if not found.matches(tag)] == []
    assert [tag for tag in outside if found.matches(tag)] == []


@pytest.mark.parametrize(("text", "named"), [
    ("", "empty"), ("   ", "empty"), ("1 ||", "empty alternative"), ("|| 1", "empty alternative"),
    ("latest", "'latest'"), (">=1.2 <2 foo", "'foo'"), ("1.x.3", "'1.x.3'"), (">*", "'>*'"), ("<x", "'<x'"),
    ("1.2-rc.1", "'1.2-rc.1'"), ("1 - 2", "hyphen"), (">=", "'>='"), (">= <2", "'>='"), ("1 | 2", "'|'"),
    ("=>1", "'=>1'"), ("!1", "'!1'"), ("1.2.3.4", "'1.2.3.4'"), ("01.2", "'01.2'"), ("~~1", "'~~1'"),
    ("^", "'^'"), ("1.2.٣", "'1.2.٣'"), ("1\n2x", "'2x'"), ("1" * (MAX_RANGE_LENGTH + 1), "longer than"),
    (" ".join(["1.x"] * (MAX_COMPARATORS // 2 + 1)), "comparators"),
])
def test_bad_ranges_name_the_part(text: str, named: str) -> None:
    with pytest.raises(ValueError, match="^version range: ") as caught:
        parse_range(text)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_comparator_cap_counts_bounds() -> None:
    parse_range(" ".join([">=1"] * MAX_COMPARATORS))
    parse_range(" || ".join(["1.x"] * (MAX_COMPARATORS // 2)))
    with pytest.raises(ValueError, match="comparators"):
        parse_range(" || ".join(["1.x"] * (MAX_COMPARATORS // 2 + 1)))


# --- properties ---------------------------------------------------------------------------------------------

NUMBERS = st.one_of(st.integers(0, 3), st.integers(0, 10**12)).map(str)
IDENTIFIERS = st.one_of(st.sampled_from(["alpha", "beta", "rc", "0", "1", "2", "11", "a-b", "-", "A", "1a"]),
                        st.text("abcXYZ019-", min_size=1, max_size=4).filter(
                            lambda s: not (s.isdigit() and len(s) > 1 and s[0] == "0")))
PRERELEASE = st.lists(IDENTIFIERS, max_size=4).map(lambda ids: "-" + ".".join(ids) if ids else "")
BUILD = st.lists(st.text("abc019", min_size=1, max_size=3), max_size=2).map(lambda ids: "+" + ".".join(ids) if ids else "")
FULL = st.builds(lambda a, b, c, pre, build: f"{a}.{b}.{c}{pre}{build}", NUMBERS, NUMBERS, NUMBERS, PRERELEASE, BUILD)
TAGS = st.one_of(FULL, st.builds(lambda v, a, pre: f"{v}{a}{pre}", st.sampled_from(["", "v", "V"]), NUMBERS, PRERELEASE),
                 st.builds(lambda a, b, pre: f"{a}.{b}{pre}", NUMBERS, NUMBERS, PRERELEASE))


def spec_compare(a: str, b: str) -> int:
    """Semver 2.0 section 11 as written, over canonical full version strings: -1, 0 or 1."""
    def split(text: str) -> tuple[list[int], list[str]]:
        text = text.partition("+")[0]
        core, _, pre = text.partition("-")
        return [int(n) for n in core.split(".")], (pre.split(".") if pre else [])

    (core_a, pre_a), (core_b, pre_b) = split(a), split(b)
    if core_a != core_b:
        return -1 if core_a < core_b else 1
    if not pre_a or not pre_b:
        return (not pre_a) - (not pre_b)  # a release is above its prereleases
    for x, y in zip(pre_a, pre_b):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        return -1 if x < y else 1
    return (len(pre_a) > len(pre_b)) - (len(pre_a) < len(pre_b))


@fuzz
@given(FULL, FULL)
def test_order_is_the_spec(a: str, b: str) -> None:
    va, vb = parse_version(a), parse_version(b)
    assert va is not None and vb is not None
    expected = spec_compare(a, b)
    assert ((va > vb) - (va < vb)) == expected
    assert (va == vb) is (expected == 0) and (va <= vb) is (expected <= 0) and (va >= vb) is (expected >= 0)
    if va == vb:
        assert hash(va) == hash(vb)


@fuzz
@given(st.lists(TAGS, min_size=3, max_size=7))
def test_order_is_total_and_transitive(tags: list[str]) -> None:
    versions = [v for v in map(parse_version, tags) if v is not None]
    assert len(versions) == len(tags)
    for a, b in itertools.product(versions, repeat=2):
        assert sum([a < b, a == b, a > b]) == 1, (a, b)
    ordered = sorted(versions)
    for a, b in itertools.combinations(ordered, 2):
        assert a <= b

    def compare(x: Version, y: Version) -> int:
        return (x > y) - (x < y)

    assert sorted(versions, key=functools.cmp_to_key(compare)) == ordered


@fuzz
@given(FULL)
def test_full_versions_read_back(tag: str) -> None:
    version = parse_version(tag)
    assert version is not None and str(version) == tag and parse_version("v" + tag) == version


@fuzz
@given(near(TAGS))
def test_parse_version_never_raises(tag: str) -> None:
    version = parse_version(tag)
    if version is not None:
        assert tag.isascii() and max(version.core) < 10**MAX_NUMBER_DIGITS
        if len(str(version)) <= MAX_TAG_LENGTH:  # `1-` and 250 more characters grows by `.0.0`
            assert parse_version(str(version)) == version


COMPARATOR = st.one_of(
    st.builds(lambda op, v: op + v, st.sampled_from(["", "=", ">", ">=", "<", "<=", "~", "^", "~>", ">= "]),
              st.one_of(FULL, st.builds(lambda a, b: f"{a}.{b}", NUMBERS, st.sampled_from(["x", "*", "1"])),
                        st.sampled_from(["*", "x", "1", "0", "0.0", "1.x.x"]))))
RANGE_TEXT = st.lists(st.lists(COMPARATOR, min_size=1, max_size=3).map(" ".join), min_size=1, max_size=3).map(" || ".join)


@fuzz
@given(near(RANGE_TEXT), st.lists(near(TAGS), max_size=4))
def test_parse_range_raises_only_value_error(text: str, tags: list[str]) -> None:
    try:
        found = parse_range(text)
    except ValueError as exc:
        assert str(exc).startswith("version range: ") and "\n" not in str(exc)
        return
    for tag in tags:
        found.matches(tag)
    # The normal form reads back as the same range, unless spelling out made it too long (`>1` for
    # `>=2.0.0`) or a bound's number too wide (the upper bound of `^999999999999999999`).
    normal = str(found)
    bounds = [c.version for comparators in found.alternatives for c in comparators]
    if len(normal) <= MAX_RANGE_LENGTH and all(max(v.core) < 10**MAX_NUMBER_DIGITS for v in bounds):
        assert parse_range(normal).alternatives == found.alternatives


SMALL = st.integers(0, 3)


@fuzz
@given(st.tuples(SMALL, SMALL, SMALL), st.tuples(SMALL, SMALL, SMALL), st.sampled_from(["~", "^"]))
def test_tilde_and_caret_are_their_definitions(low: tuple[int, int, int], tag: tuple[int, int, int],
                                               operator: str) -> None:
    written = parse_range(operator + ".".join(map(str, low)))
    at_least = tag >= low
    if operator == "~":  # patch-level changes only
        expected = at_least and tag[:2] == low[:2]
    else:  # changes that keep the left-most non-zero number
        keep = next((i for i, n in enumerate(low) if n != 0), 2)
        expected = at_least and tag[:keep + 1] == low[:keep + 1]
    assert written.matches(".".join(map(str, tag))) is expected


@fuzz
@given(st.sampled_from([">", ">=", "<", "<=", "="]), FULL, FULL)
def test_comparators_on_full_versions(operator: str, bound: str, tag: str) -> None:
    written = parse_range(operator + bound)
    order = spec_compare(tag, bound)
    holds = {">": order > 0, ">=": order >= 0, "<": order < 0, "<=": order <= 0, "=": order == 0}[operator]
    tag_version = parse_version(tag)
    assert tag_version is not None
    bound_version = parse_version(bound)
    assert bound_version is not None
    gate = not tag_version.prerelease or (bound_version.prerelease != () and tag_version.core == bound_version.core)
    assert written.matches(tag) is (holds and gate)


@fuzz
@given(any_text(300))
def test_any_text_is_a_range_or_value_error(text: str) -> None:
    try:
        parse_range(text)
    except ValueError:
        pass

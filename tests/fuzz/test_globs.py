"""The glob dialects (registry/globs.py): the documented examples, the path dialect against its definition
written plainly (a recursion over every split), and the two dialects against each other: whatever a pattern
covers in the path dialect it covers in the shell one, and a pattern whose only wildcards are `**` segments
covers the same names in both. The shell dialect is fnmatch's, as the access policy always matched."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.globs import path_match, path_pattern_problem, shell_match
from tests.fuzz.conftest import fuzz

EXAMPLES = [
    ("prod/*", "prod/api", True, True),
    ("prod/*", "prod/team/api", False, True),
    ("prod/**", "prod/api", True, True),
    ("prod/**", "prod/team/api", True, True),
    ("prod/**", "prod", False, False),
    ("prod/**", "production/api", False, False),
    ("prod/**/api", "prod/x/api", True, True),
    ("prod/**/api", "prod/x/y/api", True, True),
    ("prod/**/api", "prod/api", False, False),
    ("**", "a", True, True),
    ("**", "a/b/c", True, True),
    ("**/api", "team/api", True, True),
    ("*", "team/api", False, True),
    ("team/ap?", "team/api", True, True),
    ("te?m/api", "te/m/api", False, True),
    ("team/[!x]pi", "team/api", True, True),
    ("t[a-z]am/*", "team/web", True, True),
    ("Team/*", "team/web", False, False),  # case-sensitive, both
]


@pytest.mark.parametrize(("pattern", "name", "path", "shell"), EXAMPLES)
def test_documented_examples(pattern: str, name: str, path: bool, shell: bool) -> None:
    assert path_match(pattern, name) is path
    assert shell_match(pattern, name) is shell


@pytest.mark.parametrize(("pattern", "problem"), [("prod/**", None), ("**", None), ("a/**/b", None),
                                                   ("prod**", "**"), ("a/b**c", "**"), ("prod/", "empty"),
                                                   ("/prod", "empty"), ("a//b", "empty")])
def test_pattern_problems(pattern: str, problem: str | None) -> None:
    found = path_pattern_problem(pattern)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def reference(patterns: list[str], names: list[str]) -> bool:
    """The path dialect's definition: a `**` segment takes one or more whole segments, any other one
    segment matched by fnmatch."""
    if not patterns:
        return not names
    head, rest = patterns[0], patterns[1:]
    if head == "**":
        return any(reference(rest, names[taken:]) for taken in range(1, len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], head) and reference(rest, names[1:])


NAMES = st.lists(st.text("ab.", min_size=1, max_size=3), min_size=1, max_size=6).map("/".join)
SEGMENTS = st.sampled_from(["a", "b", "ab", "*", "?", "**", "a*", "*b", "[ab]", "[!a]*", "a?b", "."])
PATTERNS = st.lists(SEGMENTS, min_size=1, max_size=6).map("/".join)


@fuzz
@given(PATTERNS, NAMES)
def test_path_dialect_against_its_definition(pattern: str, name: str) -> None:
    assert path_match(pattern, name) is reference(pattern.split("/"), name.split("/"))


@fuzz
@given(PATTERNS, NAMES)
def test_what_the_path_dialect_covers_the_shell_dialect_covers(pattern: str, name: str) -> None:
    if path_match(pattern, name):
        assert shell_match(pattern, name)


@fuzz
@given(st.lists(st.sampled_from(["a", "b", "ab", "**"]), min_size=1, max_size=6).map("/".join), NAMES)
def test_double_star_segments_mean_the_same_in_both(pattern: str, name: str) -> None:
    assert path_match(pattern, name) is shell_match(pattern, name)

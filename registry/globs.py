"""Glob patterns over repository names and tags: the one matcher of the access policy, robots' scopes,
retention policies and immutable-tag rules. Case-sensitive, built on fnmatch, in two dialects:

- shell (`shell_match`): fnmatch's. `*` matches any run of characters, `/` included; `?` any one
  character; `[abc]` / `[!abc]` one character of (or not of) a set. The access policy, robots'
  repositories and retention policies have always matched this way (`team/*` covers `team/a/b`).
- path (`path_match`): the same, one `/`-separated segment at a time, so `*`, `?` and `[...]` never
  match a `/`; a segment that is exactly `**` matches one or more whole segments. `prod/*` covers
  `prod/api` but not `prod/team/api`; `prod/**` covers both, but not `prod` itself; `prod/**/api`
  covers `prod/x/api` and `prod/x/y/api`; `**` covers every name. Immutable-tag rules match
  repositories this way.

A `**` segment covers the same names in both dialects (in the shell one it is a `*` that may cross
`/`), and whatever a pattern covers in the path dialect it covers in the shell one too. Tags hold no
`/`: for them the two dialects agree.
"""

from __future__ import annotations

import fnmatch
import functools


def shell_match(pattern: str, name: str) -> bool:
    """fnmatch's case-sensitive match: `*` and `?` match `/` too."""
    return fnmatch.fnmatchcase(name, pattern)


@functools.lru_cache(maxsize=4096)
def _segments(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("/"))


def path_match(pattern: str, name: str) -> bool:
    """Segment by segment (see the module's text); linear in segments of pattern times name."""
    patterns, names = _segments(pattern), name.split("/")
    reached = {0}  # how many of the name's segments the patterns so far can have consumed
    for segment in patterns:
        if segment == "**":
            reached = set(range(min(reached) + 1, len(names) + 1))
        else:
            reached = {at + 1 for at in reached if at < len(names) and fnmatch.fnmatchcase(names[at], segment)}
        if not reached:
            return False
    return len(names) in reached


def path_pattern_problem(pattern: str) -> str | None:
    """Why a path-dialect pattern cannot mean what it seems to, or None: an empty segment (`a//b`, a
    leading or trailing `/`) never matches a repository name, and `**` inside a segment (`prod**`) would
    only be a `*` there."""
    for segment in pattern.split("/"):
        if not segment:
            return "has an empty path segment (a leading, trailing or doubled /)"
        if "**" in segment and segment != "**":
            return f"has ** inside a path segment ({segment!r}): ** must be a whole segment (prod/**)"
    return None

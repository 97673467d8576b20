"""Semantic versions in tags, and the version ranges replication rules filter tags by (`>=1.2 <2`).

Tags (`parse_version`): `1`, `1.2` or `1.2.3` (a missing minor or patch is 0), an optional leading `v` or
`V`, then an optional prerelease (`-rc.1`) and build (`+abc`, kept but ignored for ordering and equality,
as semver 2.0 says). Refused (None): anything else, and in particular a number with a leading zero
(`01.2`, `1.2.3-rc.01`: semver forbids them, and `1.02` and `1.2` would be two tags of one version),
non-ASCII digits, a fourth number (`1.2.3.4`), empty identifiers (`1.2.3-`, `1.2.3-a..b`), a major,
minor or patch of more than MAX_NUMBER_DIGITS digits, a tag longer than MAX_TAG_LENGTH.
OCI tags cannot hold `+`, so build metadata only ever comes from other uses of these functions.

Ranges (`parse_range`), npm's syntax and meaning:

- comparators separated by spaces must all hold (`>=1.2 <2`); `||` separates alternatives;
- `>=`, `>`, `<=`, `<`, `=` before a version (a space between them is allowed: `>= 1.2`); a bare
  version is `=`; a partial version is an x-range: `1.2`, `1.2.x`, `=1.2` are `>=1.2.0 <1.3.0`,
  `1`, `1.x`, `1.*` are `>=1.0.0 <2.0.0`, `*` (or `x`) is any version; with an operator, `>1.2` is
  `>=1.3.0`, `<=1.2` is `<1.3.0`, `>=1.2` is `>=1.2.0`, `<1.2` is `<1.2.0`;
- `~1.2.3` is `>=1.2.3 <1.3.0`, `~1.2` is `>=1.2.0 <1.3.0`, `~1` is `>=1.0.0 <2.0.0` (`~>` too);
- `^1.2.3` is `>=1.2.3 <2.0.0`, `^0.2.3` is `>=0.2.3 <0.3.0`, `^0.0.3` is `>=0.0.3 <0.0.4`,
  `^1.2` is `>=1.2.0 <2.0.0`, `^0.0` is `>=0.0.0 <0.1.0`, `^1` and `^0` take the whole major.

Prereleases follow npm's rule: a prerelease tag (`1.3.0-rc.1`) matches only when, besides satisfying
every comparator of an alternative, some comparator of that alternative names the same major.minor.patch
with a prerelease (`>=1.3.0-rc.0 <1.4`). So `>=1.2 <2` and `*` match no prerelease at all: a rule that
replicates releases does not pick up release candidates by accident.

Refused with ValueError naming the part: an empty range or alternative, an unknown operator or a bad
version, a wildcard before a number (`1.x.3`), a prerelease on a partial version (`1.2-rc`), ranges that
can match nothing by construction (`>*`, `<*`), hyphen ranges (`1 - 2`: write `>=1 <=2`), more than
MAX_RANGE_LENGTH characters or MAX_COMPARATORS comparators. No regular expressions: every step is a
split or a scan of a bounded text.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

MAX_RANGE_LENGTH = 256
MAX_COMPARATORS = 32  # after ~ ^ and x-ranges are spelled out as pairs of bounds
MAX_TAG_LENGTH = 256  # OCI tags stop at 128

_IDENTIFIER_CHARACTERS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")
_WILDCARDS = ("x", "X", "*")
# Longest first: `>=` must not read as `>` then `=1`, nor `~>` as `~` then `>1`.
_PREFIXES = ("~>", "~", "^", ">=", "<=", ">", "<", "=")


MAX_NUMBER_DIGITS = 18  # major, minor and patch: dates with times (20240101123045) fit, int64 too


def _number(text: str, max_digits: int = MAX_NUMBER_DIGITS) -> int | None:
    """ASCII digits without a leading zero (semver's numeric identifier), else None."""
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    return int(text)


def _identifiers(text: str, numeric_leading_zero_ok: bool) -> tuple[str, ...] | None:
    """Dot-separated non-empty identifiers of [0-9A-Za-z-], else None."""
    parts = tuple(text.split("."))
    for part in parts:
        if not part or not set(part) <= _IDENTIFIER_CHARACTERS:
            return None
        if not numeric_leading_zero_ok and part.isdigit() and _number(part, len(part)) is None:
            return None
    return parts


def _prerelease_key(prerelease: tuple[str, ...]) -> tuple[tuple[int, int, str], ...]:
    """Numeric identifiers compare as numbers and below alphanumeric ones, which compare as ASCII; a
    shorter list that is a prefix of a longer one is lower (tuple order gives that)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in prerelease)


@functools.total_ordering
@dataclass(frozen=True)
class Version:
    """A version ordered by semver 2.0 precedence. `build` takes no part in order or equality."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = field(default=(), compare=False)

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release (no prerelease) is above every prerelease of its core.
        return (*self.core, 0 if self.prerelease else 1, _prerelease_key(self.prerelease))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


@dataclass(frozen=True)
class _Parts:
    """A version as written in a range: numbers, or None from the first wildcard or missing part on."""

    numbers: tuple[int | None, int | None, int | None]
    prerelease: tuple[str, ...]
    build: tuple[str, ...]


def _split(text: str) -> tuple[str, str, str] | None:
    """(core, prerelease, build) of `[v]core[-prerelease][+build]`; None when a part after `-`/`+` is empty."""
    if text[:1] in ("v", "V"):
        text = text[1:]
    text, plus, build = text.partition("+")
    text, dash, prerelease = text.partition("-")
    if (plus and not build) or (dash and not prerelease):
        return None
    return text, prerelease, build


def _parts(text: str, wildcards: bool) -> _Parts | None:
    """The pieces of a (possibly partial) version, or None. Wildcards only where `wildcards` allows."""
    split = _split(text)
    if split is None:
        return None
    core, prerelease_text, build_text = split
    pieces = core.split(".")
    if not 1 <= len(pieces) <= 3:
        return None
    numbers: list[int | None] = []
    for piece in pieces:
        if wildcards and piece in _WILDCARDS:
            numbers.append(None)
            continue
        number = _number(piece)
        if number is None or (numbers and numbers[-1] is None):  # `1.x.3`: a number after a wildcard
            return None
        numbers.append(number)
    missing = 3 - len(numbers)
    prerelease = _identifiers(prerelease_text, numeric_leading_zero_ok=False) if prerelease_text else ()
    build = _identifiers(build_text, numeric_leading_zero_ok=True) if build_text else ()
    if prerelease is None or build is None:
        return None
    full = numbers + [None] * missing
    return _Parts((full[0], full[1], full[2]), prerelease, build)


def parse_version(tag: str) -> Version | None:
    """The version a tag names (see the module's text), or None when it names none."""
    if len(tag) > MAX_TAG_LENGTH:
        return None
    parts = _parts(tag, wildcards=False)
    if parts is None:
        return None
    major, minor, patch = parts.numbers
    assert major is not None  # without wildcards, only a missing minor or patch is None
    return Version(major, minor or 0, patch or 0, parts.prerelease, parts.build)


@dataclass(frozen=True)
class Comparator:
    operator: str  # one of >=, >, <=, <, =
    version: Version

    def holds(self, version: Version) -> bool:
        if self.operator == ">=":
            return version >= self.version
        if self.operator == ">":
            return version > self.version
        if self.operator == "<=":
            return version <= self.version
        if self.operator == "<":
            return version < self.version
        return version == self.version

    def __str__(self) -> str:
        return f"{self.operator}{self.version}"


@dataclass(frozen=True)
class VersionRange:
    """Alternatives, each a conjunction of comparators; an empty conjunction is any version (`*`)."""

    text: str
    alternatives: tuple[tuple[Comparator, ...], ...]

    def matches(self, tag: str) -> bool:
        """Whether the tag is a version in the range (npm's prerelease rule: see the module's text)."""
        version = parse_version(tag)
        return version is not None and self.contains(version)

    def contains(self, version: Version) -> bool:
        return any(_satisfies(comparators, version) for comparators in self.alternatives)

    def __str__(self) -> str:
        return " || ".join(" ".join(map(str, comparators)) or "*" for comparators in self.alternatives)


def _satisfies(comparators: tuple[Comparator, ...], version: Version) -> bool:
    if not all(comparator.holds(version) for comparator in comparators):
        return False
    if not version.prerelease:
        return True
    return any(c.version.prerelease and c.version.core == version.core for c in comparators)


def _bad(token: str, why: str) -> ValueError:
    return ValueError(f"version range: {token!r} {why}")


def _bounds(operator: str, parts: _Parts, token: str) -> list[Comparator]:
    """One written comparator as bounds over full versions (npm's tilde, caret and x-range rules)."""
    major, minor, patch = parts.numbers
    pre = parts.prerelease
    if major is None:  # `*`, `x`, `>=*`, `^*`, `~*`: any version
        if operator in (">", "<"):
            raise _bad(token, "matches no version")
        return []
    low_minor, low_patch = minor or 0, patch or 0
    low = Version(major, low_minor, low_patch, pre)

    def below(up_major: int, up_minor: int, up_patch: int) -> Comparator:
        return Comparator("<", Version(up_major, up_minor, up_patch))

    def next_minor() -> Comparator:
        return below(major, low_minor + 1, 0)

    def next_major() -> Comparator:
        return below(major + 1, 0, 0)

    if operator == "~":
        return [Comparator(">=", low), next_major() if minor is None else next_minor()]
    if operator == "^":
        if major != 0 or minor is None:
            return [Comparator(">=", low), next_major()]
        if minor != 0 or patch is None:  # ^0.2.3, ^0.2, ^0.0 stay within their minor
            return [Comparator(">=", low), next_minor()]
        return [Comparator(">=", low), below(0, 0, low_patch + 1)]  # ^0.0.3: that patch only
    if patch is not None:  # a full version: the comparator as written
        return [Comparator(operator or "=", low)]
    # A partial version: an x-range, widened or narrowed by the operator.
    if operator in ("", "="):
        return [Comparator(">=", low), next_major() if minor is None else next_minor()]
    if operator == ">":  # >1 is >=2.0.0, >1.2 is >=1.3.0
        return [Comparator(">=", (next_major() if minor is None else next_minor()).version)]
    if operator == "<=":  # <=1.2 is <1.3.0
        return [next_major() if minor is None else next_minor()]
    return [Comparator(operator, low)]  # >=1.2 is >=1.2.0, <1.2 is <1.2.0


def _comparator(token: str) -> list[Comparator]:
    written = next((candidate for candidate in _PREFIXES if token.startswith(candidate)), "")
    operator, rest = ("~" if written == "~>" else written), token[len(written):]
    if not rest:
        raise _bad(token, "has no version")
    parts = _parts(rest, wildcards=True)
    if parts is None:
        raise _bad(token, "is not a version or comparator (like 1.2.3, >=1.2, ~1.2, ^1.2.3, 1.x)")
    if parts.prerelease and None in parts.numbers:
        raise _bad(token, "has a prerelease on a partial version (write all three numbers)")
    return _bounds(operator, parts, token)


def _tokens(alternative: str) -> list[str]:
    """Whitespace-separated comparators, an operator standing alone joined to the version after it."""
    tokens: list[str] = []
    pending = ""
    for word in alternative.split():
        if pending and word.startswith(_PREFIXES):  # `>= <2`: the first operator has no version
            raise _bad(pending, "has no version")
        if word in _PREFIXES:
            pending = word
            continue
        tokens.append(pending + word)
        pending = ""
    if pending:
        raise _bad(pending, "has no version")
    return tokens


def parse_range(text: str) -> VersionRange:
    """The range the text writes (see the module's text); ValueError naming the bad part."""
    if len(text) > MAX_RANGE_LENGTH:
        raise ValueError(f"version range: longer than {MAX_RANGE_LENGTH} characters")
    alternatives: list[tuple[Comparator, ...]] = []
    count = 0
    for alternative in text.split("||"):
        tokens = _tokens(alternative)
        if not tokens:
            raise ValueError(f"version range: {text!r} has an empty alternative" if "||" in text
                             else "version range: empty (write * for any version)")
        if "-" in tokens:
            raise _bad(alternative.strip(), "is a hyphen range, which is not supported (write >=A <=B)")
        comparators: list[Comparator] = []
        for token in tokens:
            comparators += _comparator(token)
        count += len(comparators)
        if count > MAX_COMPARATORS:
            raise ValueError(f"version range: more than {MAX_COMPARATORS} comparators")
        alternatives.append(tuple(comparators))
    return VersionRange(text, tuple(alternatives))

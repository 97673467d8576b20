"""Strategies the fuzz modules share: any text, and near-valid text that reaches deep code paths.

A parser that refuses `st.text()` at its first character never shows what its later checks do, so
most properties also draw a valid value and break it a little (one character changed, inserted or
dropped, a piece repeated, its case changed, a look-alike digit or a control character put in).
"""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import strategies as st

# Characters that parsers get wrong: digits of other scripts (int() and isdigit() take them, '²' passes
# isdigit() and fails int()), look-alikes, whitespace that str.strip() and `$` treat specially, NUL,
# lone surrogates (from os.environ's surrogateescape, or a JSON escape), a byte order mark.
ODD_CHARACTERS = ["٣", "²", "①", "３", "𝟘", "߀", "০", "\u00a0", "\u2028", "\u2029", "\u0085", "\ufeff",
                  "\x00", "\x7f", "\x1b", "\r", "\n", "\t", "\x0b", " ", "\ud800", "\udc80", "\udfff",
                  "é", "ß", "İ", "K", "ſ", "%", "/", "\\", ":", "@", ".", "-", "_", "+", "=", ",", ";", '"', "'",
                  "*", "?", "#", "[", "]", "{", "}", "(", ")", "<", ">", "0", "9", "e", "E", "x"]
# ...and pieces of more than one character: encodings and separators that parsers split on.
ODD_PIECES = ODD_CHARACTERS + ["%2f", "%2F", "%00", "%0A", "..", "../", "-1", "\r\n", "0x", "1e400", "NaN", "inf",
                               "bytes=", "sha256:", "::"]

# Every code point, surrogates included (st.characters() leaves them out by default).
ANY_CHARACTER = st.characters(exclude_categories=())


def huge_digits(min_digits: int = 20, max_digits: int = 6000) -> st.SearchStrategy[str]:
    """Decimal strings far wider than int64, past int()'s 4,300-digit limit too, built cheaply."""
    return st.builds(lambda n, d: d * n, st.integers(min_digits, max_digits), st.sampled_from("0123456789"))


def any_text(max_size: int = 80) -> st.SearchStrategy[str]:
    """Any code points (surrogates included), the odd ones often, and now and then very long."""
    return st.one_of(st.text(ANY_CHARACTER, max_size=max_size), st.text(st.sampled_from(ODD_CHARACTERS), max_size=20),
                     st.lists(st.sampled_from(ODD_PIECES), max_size=8).map("".join),
                     huge_digits(), st.builds(lambda c, n: c * n, ANY_CHARACTER, st.integers(256, 5000)))


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[str], max_edits: int = 3) -> str:
    """A valid value with 1 to `max_edits` small edits."""
    text = draw(valid)
    for _ in range(draw(st.integers(1, max_edits))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.integers(0, 8))
        if edit == 0:  # replace one character
            text = text[:at] + draw(ANY_CHARACTER) + text[at + 1:]
        elif edit == 1:  # insert
            text = text[:at] + draw(st.sampled_from(ODD_PIECES)) + text[at:]
        elif edit == 2:  # drop one
            text = text[:at] + text[at + 1:]
        elif edit == 3:  # cut short
            text = text[:at]
        elif edit == 4:  # repeat a piece
            end = draw(st.integers(at, len(text)))
            times = min(draw(st.integers(1, 300)), 1 + 65536 // max(1, end - at))  # stays small: 300**3 pieces would not
            text = text[:end] + text[at:end] * times + text[end:]
        elif edit == 5:
            text = text.upper() if draw(st.booleans()) else text.swapcase()
        elif edit == 6:  # a digit of another script for an ASCII one
            digits = [i for i, c in enumerate(text) if c.isdigit()]
            if digits:
                i = draw(st.sampled_from(digits))
                text = text[:i] + draw(st.sampled_from(["٣", "²", "３", "𝟘", "০", "①"])) + text[i + 1:]
        elif edit == 7:  # a huge number somewhere
            text = text[:at] + draw(huge_digits()) + text[at:]
        else:  # whitespace or a newline at either end ("x\n" passes a regex's `$`)
            pad = draw(st.sampled_from(["\n", " ", "\t", "\r\n", "\x00", "\u00a0"]))
            text = pad + text if draw(st.booleans()) else text + pad
    return text


def near(valid: st.SearchStrategy[str], max_edits: int = 3) -> st.SearchStrategy[str]:
    """Valid values, near-valid ones, and any text: what a property over a parser should draw."""
    return st.one_of(valid, mutated(valid, max_edits), any_text())


# Values as YAML and JSON hand them over: every scalar type PyYAML's safe loader makes (bytes from
# !!binary, dates), huge integers (YAML's hex ones are not bound by int()'s digit limit), non-finite
# floats, and text that looks like a number to someone.
SCALAR_POOL: list[Any] = [
    None, True, False, 0, 1, -1, 7, 2 ** 31, 2 ** 63 - 1, 2 ** 63, -(2 ** 63), -(2 ** 63) - 1, 2 ** 64, 10 ** 400, 0.5, -0.0, 1e308, 1e-320, float("inf"), float("-inf"), float("nan"), 3.0,
    "", " ", "a", "0", "1", "-1", "+1", "٣", "²", "３", "1_000", " 5 ", "0x10", "1e3", "1e400", "NaN", "inf", "-inf",
    "\x00", "\udc80", "\n", "true", "yes", "on", "null", "~", "10GiB", "500 MB", "1.5k", "-5m", "http://x",
    "https://[::1]:5000", "a" * 5000, "1" * 5000, "*", "team/*", "[", "(", "group:", "pull", "push", "delete",
    b"bytes", b"\xff", datetime.date(2001, 2, 3), datetime.datetime(2001, 2, 3, 4, 5, 6), {1, 2}]
# Integers too wide for repr() are built when drawn: hypothesis itself reprs what sampled_from holds.
HUGE_INTEGERS = st.builds(lambda n, sign: sign * (16 ** n - 1), st.integers(3000, 6000), st.sampled_from([1, -1]))
SCALARS = st.one_of(st.sampled_from(SCALAR_POOL), st.integers(), st.floats(), st.text(ANY_CHARACTER, max_size=12),
                    HUGE_INTEGERS)


@st.composite
def values(draw: st.DrawFn, scalars: st.SearchStrategy[Any] = SCALARS, max_leaves: int = 12) -> Any:
    """Nested lists and mappings of scalars, built from one flat list of steps (st.recursive costs
    several times more per example): put a scalar, open a list, open a mapping, or close one."""
    root: list[Any] = []
    stack: list[Any] = [root]
    for step, scalar in draw(st.lists(st.tuples(st.integers(0, 5), scalars), max_size=max_leaves)):
        top = stack[-1]
        if step == 4 and len(stack) > 1:
            stack.pop()
            continue
        child: Any = [] if step == 2 else {} if step == 3 else scalar
        if isinstance(top, list):
            top.append(child)
        else:
            try:
                top[scalar if step != 0 else len(top)] = child
            except TypeError:  # an unhashable key
                top[repr(scalar)[:20]] = child
        if step in (2, 3):
            stack.append(child)
    return root[0] if len(root) == 1 and draw(st.booleans()) else root


# -- YAML files ---------------------------------------------------------------------------------

def laughs(depth: int, fan: int) -> str:
    """YAML anchors that expand to fan**depth strings ("billion laughs"): PyYAML shares the objects,
    so only what walks them in full (a repr or str() for an error message) ever sees the size."""
    anchors = ["&a0 [" + ", ".join(["lol"] * fan) + "]"]
    anchors += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, depth)]
    return "[" + ", ".join(anchors) + "]"


# Pieces of YAML text, for documents PyYAML's dumper would never write: what its constructors raise
# on (a 5,000-digit int, the 30th of February), unsafe tags, aliases, merge keys, duplicate keys.
YAML_PIECES = ["\n", "  - ", "    ", ": ", "[", "]", "{", "}", ", ", "'*'", "team/*", "true", "~", "0x" + "f" * 4000,
               "1" * 5000, "2001-02-30", "2001-02-03 04:05:06", "!!binary aGk=", "!!set {a}", "!!python/object:os.system",
               "&a [x]", "*a", "*b", "<<: *a", "? [a]", "a: 1\na: 2", "%YAML 1.1\n---\n", "---\n", "...", "\t", "\ufeff",
               "\x00", "\udc80", "é", '"\\ud800"', ".inf", ".nan", "-.inf", "0o17", "1_000", "٣", "[" * 300, "{a: " * 50]


def dumped_yaml(document: Any) -> bytes:
    """`document` as PyYAML writes it, UTF-8 (lone surrogates kept as they are)."""
    import yaml

    try:
        return yaml.safe_dump(document, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):  # what it cannot write
        return b"{}\n"

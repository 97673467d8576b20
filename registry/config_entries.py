"""Reading one entry of a configuration list (a mirror upstream, a retention policy, a quota, a
policy rule): every field typed and bounded, every mistake one clear error that names the entry.

YAML and JSON hand over whatever was written: a string where a number belongs, `.inf`, a list
where a string belongs, a number with 400 digits. Each read here either returns a clean value or
raises the caller's error class with `where: key: reason`.
"""

from __future__ import annotations

import math
import re
import reprlib
from typing import Any
from urllib.parse import SplitResult, urlsplit
from collections.abc import Callable, Iterable

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII digits only: int() would also take '٣' or '1_000'
_DECIMAL = re.compile(r"[+-]?[0-9]{1,18}(?:\.[0-9]{1,18})?")


class EntryError(ValueError):
    """A malformed entry; callers subclass it (MirrorConfigError, PolicyError)."""


class Entry:
    """One mapping of a configuration list. `error`: the exception class to raise (a message argument)."""

    def __init__(self, raw: Any, where: str, allowed: Iterable[str], error: Callable[[str], Exception] = EntryError,
                 what: str = "an entry is a mapping") -> None:
        self.where = where
        self.error = error
        if not isinstance(raw, dict):
            raise error(f"{where}: {what}; got {described(raw)}")
        known = list(allowed)
        unknown = sorted(key if isinstance(key, str) else shown(key) for key in raw if key not in known)
        if unknown:
            raise error(f"{where}: unknown key {shown(unknown[0])} (known: {', '.join(known)})")
        self.raw = raw

    def fail(self, key: str, reason: str) -> Exception:
        return self.error(f"{self.where}: {key}: {reason}")

    def has(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def text(self, key: str, default: str = "", required: bool = False, max_length: int = 4096) -> str:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise self.fail(key, "required")
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(f"{self.where}: {key} must be text; got {described(value)}")
        try:
            text = str(value)
        except ValueError:  # an int too wide for str() (YAML's hex integers are not bound by its limit)
            raise self.fail(key, f"longer than {max_length} characters") from None
        if required and not text:
            raise self.fail(key, "must not be empty")
        if len(text) > max_length:
            raise self.fail(key, f"longer than {max_length} characters")
        return text

    def http_url(self, key: str) -> tuple[str, SplitResult]:
        """A required http:// or https:// URL with a host (ASCII, no spaces, a numeric port), and its parts."""
        url = self.text(key, required=True, max_length=2048)
        if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
            raise self.fail(key, "ASCII without spaces or control characters (percent-encode the rest)")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError as exc:
            raise self.fail(key, f"not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.fail(key, "an http:// or https:// URL with a host")
        return url, parts

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):  # "false" in quotes would be true for bool()
            raise self.error(f"{self.where}: {key} must be true or false; got {described(value)}")
        return value

    def number(self, key: str, default: float | None = None, minimum: float = 0.0) -> float | None:
        """A finite number >= minimum (seconds, days)."""
        value = self.raw.get(key)
        if value is None:
            return default
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            value = float(value)  # quoted in YAML: "30"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"{self.where}: {key} must be a number; got {described(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise self.fail(key, "too large") from None
        if not math.isfinite(number) or number < minimum:
            raise self.error(f"{self.where}: {key} must be a finite number of at least {minimum:g}; "
                             f"got {described(value)}")
        return number

    def integer(self, key: str, default: int | None = None, minimum: int = 0,
                maximum: int = 2 ** 63 - 1) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return default
        try:
            value = whole_number(value)
        except ValueError:
            raise self.error(f"{self.where}: {key} must be a whole number; got {described(value)}") from None
        if not minimum <= value <= maximum:
            raise self.error(f"{self.where}: {key} must be a whole number from {minimum} to {maximum}; "
                             f"got {described(value)}")
        return value

    def names(self, key: str, noun: str) -> list[str]:
        """A list of non-empty strings (a single string counts as a list of one); [] when absent.
        `noun` says what each is, for the errors ("a user name")."""
        value = self.raw.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error(f"{self.where}: {key} must be a list (each {noun}); got {described(value)}")
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"{self.where}: {key}: {shown(item)} is not {noun}")
        return value


def whole_number(value: Any) -> int:
    """An integer from YAML or JSON (an int, or a float with no fraction) or from text of ASCII digits
    (quoted in YAML, or from the environment); ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"not a whole number: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise ValueError(f"not a whole number: {shown(value)}")


class _BoundedRepr(reprlib.Repr):
    """repr() for values from YAML or JSON, whatever they hold: bounded in depth and width, so a
    "billion laughs" of YAML aliases (shared lists, 9**9 strings in all) is shown in microseconds
    instead of hanging, and an integer too wide for repr() (YAML's hex ones are not bound by int()'s
    4,300-digit limit), at any depth, by its size."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxset, self.maxfrozenset = 3, 6, 6, 6, 6
        self.maxstring, self.maxother, self.maxlong = 100, 100, 40

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, dict) and type(x) is not dict:  # the policy loader's line-keeping subclasses
            x = dict(x)
        elif isinstance(x, list) and type(x) is not list:
            x = list(x)
        return super().repr1(x, level)

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 1000:
            return f"a number of {x.bit_length()} bits"
        return super().repr_int(x, level)


_BOUNDED = _BoundedRepr()


def shown(value: Any, limit: int = 80) -> str:
    """A value as an error shows it: its repr, bounded, cut short (a 400-digit number, a huge list)."""
    text = _BOUNDED.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def described(value: Any) -> str:
    """`a mapping {...}`, `a string 'no'`: what was found, in YAML's words."""
    kinds = ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"), (str, "a string"), (int, "a number"),
             (float, "a number"))
    kind = next((name for type_, name in kinds if isinstance(value, type_)), type(value).__name__)
    plain = dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value
    return f"{kind} {shown(plain)}"

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

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII digits only: int() would also take '٣' or '1_000'
_DECIMAL = re.compile(r"[+-]?[0-9]{1,18}(?:\.[0-9]{1,18})?")


class EntryError(ValueError):
    """A malformed entry; callers subclass it (MirrorConfigError, PolicyError)."""


class Entry:
    def __init__(self, raw: Any, where: str, allowed: set[str], error: type[EntryError] = EntryError) -> None:
        self.where = where
        self.error = error
        if not isinstance(raw, dict):
            raise error(f"{where}: expected a mapping, got {shown(raw)}")
        unknown = sorted(key if isinstance(key, str) else shown(key) for key in raw if key not in allowed)
        if unknown:
            raise error(f"{where}: unknown keys {unknown} (known: {', '.join(sorted(allowed))})")
        self.raw = raw

    def fail(self, key: str, reason: str) -> EntryError:
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
            raise self.fail(key, f"expected text, got {shown(value)}")
        try:
            text = str(value)
        except ValueError:  # an int too wide for str() (YAML's hex integers are not bound by its limit)
            raise self.fail(key, f"longer than {max_length} characters") from None
        if required and not text:
            raise self.fail(key, "must not be empty")
        if len(text) > max_length:
            raise self.fail(key, f"longer than {max_length} characters")
        return text

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {shown(value)}")
        return value

    def number(self, key: str, default: float | None = None, minimum: float = 0.0) -> float | None:
        """A finite number >= minimum (seconds, days)."""
        value = self.raw.get(key)
        if value is None:
            return default
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            value = float(value)  # quoted in YAML: "30"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"expected a number, got {shown(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise self.fail(key, "too large") from None
        if not math.isfinite(number) or number < minimum:
            raise self.fail(key, f"expected a finite number of at least {minimum:g}, got {shown(value)}")
        return number

    def integer(self, key: str, default: int | None = None, minimum: int = 0,
                maximum: int = 2 ** 63 - 1) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return default
        try:
            value = whole_number(value)
        except ValueError:
            raise self.fail(key, f"expected a whole number, got {shown(value)}") from None
        if not minimum <= value <= maximum:
            raise self.fail(key, f"expected a whole number from {minimum} to {maximum}, got {shown(value)}")
        return value

    def text_list(self, key: str, required: bool = False) -> list[str]:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise self.fail(key, "required")
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(key, f"expected a list of text, got {shown(value)}")
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
    """repr() for error messages about values from YAML or JSON, whatever they hold: bounded in depth
    and width, so a "billion laughs" of YAML aliases (shared lists, 9**9 strings in all) is shown in
    microseconds instead of hanging, and an integer too wide for repr() (YAML's hex ones are not
    bound by int()'s 4,300-digit limit) is shown by its size."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxset, self.maxfrozenset = 3, 6, 6, 6, 6
        self.maxstring, self.maxother, self.maxlong = 80, 80, 40

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, dict) and type(x) is not dict:  # the policy loader's line-keeping subclasses
            x = dict(x)
        elif isinstance(x, list) and type(x) is not list:
            x = list(x)
        return super().repr1(x, level)

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 1000:
            return f"<a number of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_BOUNDED = _BoundedRepr()


def shown(value: Any, limit: int = 60) -> str:
    """A value as an error shows it: its repr, bounded, cut short (a 400-digit number, a huge list)."""
    text = _BOUNDED.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."

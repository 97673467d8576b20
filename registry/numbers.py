"""One strict reading of the decimal numbers that come from outside: ASCII digits only, bounded length.

`str.isdigit()` and `int()` accept far more than HTTP or YAML mean by a number: other scripts'
digits (`int('٣')` is 3; '²' passes `isdigit()` and then fails `int()`), underscores (`int('1_0')`),
surrounding whitespace, and thousands of digits (`int()` raises past 4,300 and is slow before).
A proxy in front reads none of those as we would. Every number read from a request or a header
goes through here (configuration values: registry/config_entries.py, by the same rule).
"""

from __future__ import annotations

# The widest decimal int64 has 19 digits: no size or offset here (nor in Go clients) goes beyond it.
INT64_DIGITS = 19


def ascii_decimal(text: str, max_digits: int) -> int | None:
    """The value of `text` when it is 1 to `max_digits` ASCII digits (leading zeros count), else None."""
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None  # isdigit() is only true for 0-9 once the text is ASCII
    return int(text)


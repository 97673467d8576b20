"""Server logs must hold no traceback: find them in what each log gained since the last look.

tests/conftest.py checks every registry process's log (tests/support/server.py SERVER_LOGS) after
every test of the suite; `assert_clean` checks any other text, such as a container's log.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from collections.abc import Sequence

from tests.support.server import SERVER_LOGS

MARKERS = ("Traceback (most recent call last)", "Unhandled exception", "Error handling request")
NEW_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d[ T]|\{)")  # a log record starts (text or JSON format)
CONTEXT_LINES = 60   # at most, after each marker: the traceback itself
SHOWN_PER_LOG = 150


def offending_lines(text: str) -> list[str]:
    """Each line holding a marker, with the lines after it up to the next log record (the traceback)."""
    lines = text.splitlines()
    keep: set[int] = set()
    for index, line in enumerate(lines):
        if any(marker in line for marker in MARKERS):
            keep.add(index)
            follow = index + 1
            while follow < min(index + CONTEXT_LINES, len(lines)) and not NEW_RECORD.match(lines[follow]):
                keep.add(follow)
                follow += 1
    return [lines[i] for i in sorted(keep)]


def assert_clean(text: str, where: str) -> None:
    """Fail with the tracebacks and unhandled errors in `text`, if any."""
    bad = offending_lines(text)
    if bad:
        raise AssertionError(f"{where} holds tracebacks or unhandled errors:\n" + "\n".join(bad[:SHOWN_PER_LOG]))


class LogWatch:
    """Remembers how far it has read each log; `problems()` reads on from there."""

    def __init__(self, logs: Sequence[Path] = SERVER_LOGS) -> None:
        self.logs = logs
        self.offsets: dict[Path, int] = {}

    def problems(self, settle: float = 0.1) -> list[str]:
        time.sleep(settle)  # a request that just ended may still be logging
        found: list[str] = []
        for path in list(self.logs):
            try:
                with open(path, "rb") as handle:
                    start = self.offsets.get(path, 0)
                    if handle.seek(0, 2) < start:  # rewritten since: read it all
                        start = 0
                    handle.seek(start)
                    data = handle.read()
            except FileNotFoundError:
                continue
            complete = data[:data.rfind(b"\n") + 1]  # a half-written last line is read next time
            self.offsets[path] = start + len(complete)
            bad = offending_lines(complete.decode(errors="replace"))
            if bad:
                more = f"\n  ... {len(bad) - SHOWN_PER_LOG} more lines" if len(bad) > SHOWN_PER_LOG else ""
                found.append(f"--- {path} (from byte {start})\n" + "\n".join(bad[:SHOWN_PER_LOG]) + more)
        return found

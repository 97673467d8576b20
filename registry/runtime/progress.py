"""One progress line per layer on stderr: redrawn in place on a terminal, printed once when done otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n:.1f}GB"


class Progress:
    WIDTH = 30

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.rows: list[list] = []  # [label, done, total, status]
        self._drawn = 0
        self._last = 0.0

    def add(self, label: str, total: int, status: str = "waiting") -> int:
        self.rows.append([label, 0, total, status])
        self._draw(force=True)
        return len(self.rows) - 1

    def update(self, row: int, done: int | None = None, status: str | None = None) -> None:
        if done is not None:
            self.rows[row][1] = done
        if status is not None:
            self.rows[row][3] = status
            if not self.tty and status in ("done", "exists", "failed"):
                label, _, total, _ = self.rows[row]
                print(f"{label}: {status} ({_size(total)})", file=self.out, flush=True)
        self._draw(force=status is not None)

    def _line(self, label: str, done: int, total: int, status: str) -> str:
        if status == "downloading" and total:
            filled = int(self.WIDTH * min(done / total, 1))
            bar = "=" * filled + (">" if filled < self.WIDTH else "") + " " * (self.WIDTH - filled - 1)
            return f"{label}: [{bar}] {_size(done)}/{_size(total)}"
        return f"{label}: {status}"

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")
        for row in self.rows:
            self.out.write("\x1b[2K" + self._line(*row) + "\n")
        self._drawn = len(self.rows)
        self.out.flush()

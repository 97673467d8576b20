"""Why the server (or a maintenance command) cannot start, in one line for the operator: the port is taken,
the data directory cannot be made, the database cannot be reached. Raised where the failure happens, with
what was being attempted; `registry` prints it without a traceback and exits 1. Imports nothing of the
project, so any layer may raise it."""

from __future__ import annotations

import os


class StartupError(Exception):
    pass


def reason(exc: BaseException) -> str:
    """An exception as a short clause: the OS's words for OSError, else the first line of its message."""
    if isinstance(exc, OSError) and (exc.strerror or (exc.errno or 0) > 0):
        # asyncio's "Connect call failed (...)" hides what the errno says: "connection refused"
        words = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else str(exc.strerror)
        return words[0].lower() + words[1:]
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines and lines[0] else type(exc).__name__

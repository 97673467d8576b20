"""Why the server (or a maintenance command) cannot start, in one line for the operator: the port is taken,
the data directory cannot be made, the database cannot be reached, an optional part (an extra) is configured
but not installed. Raised where the failure happens, with
what was being attempted; `registry` prints it without a traceback and exits 1. Imports nothing of the
project, so any layer may raise it."""

from __future__ import annotations

import importlib.util
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


def missing_extra(what: str, extra: str) -> str:
    """The line for a configured part whose optional dependencies are not installed."""
    return f"{what} needs the {extra} extra: pip install 'registry[{extra}]'"


def require_extra(module: str, what: str, extra: str) -> None:
    """StartupError naming the extra when `module` cannot be imported; it is looked up, not imported, so the
    check costs nothing where the module is installed but not yet needed."""
    if importlib.util.find_spec(module) is None:
        raise StartupError(missing_extra(what, extra))

"""Waiting for a server process to answer, and stopping it: one implementation for every launcher."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_until_answers(proc: subprocess.Popen, url: str, ready: Callable[[int], bool], timeout: float,
                       name: str, log_tail: Callable[[], str], stop: Callable[[], None], **client: object) -> None:
    """Poll `url` until `ready(status)`; fail with the process's log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; log:\n{log_tail()}")
        try:
            if ready(httpx.get(url, timeout=1, **client).status_code):  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    stop()
    raise RuntimeError(f"{name} did not answer within {timeout}s; log:\n{log_tail()}")


def terminate(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it does not go in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

"""With --workers N the supervisor replaces a worker that dies, and keeps serving."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import psutil

from tests.support.server import RegistryProcess


def test_a_killed_worker_is_replaced(tmp_path: Path) -> None:
    with RegistryProcess(tmp_path / "data", args=["--workers", "2"]) as server:
        supervisor = psutil.Process(server.pid)
        deadline = time.monotonic() + 30
        while len(workers := supervisor.children()) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        victim = workers[0].pid
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            now = {p.pid for p in supervisor.children()}
            if len(now) == 2 and victim not in now:
                break
            assert time.monotonic() < deadline, f"no replacement for worker {victim}: {now}"
            time.sleep(0.1)
        for _ in range(10):  # whichever worker answers
            assert httpx.get(f"{server.url}/v2/", timeout=10).status_code == 200
    assert f"worker {victim} exited" in server.log_path.read_text()

"""Mirror fill lock files (registry/mirror/fill_locks.py): a process waiting for another process's
fetch on this host is woken when that process unlocks, or dies, without polling."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from registry.mirror.fill_locks import FillLocks

DIGEST = "sha256:" + "b" * 64

HOLDER = """
import sys, time
from pathlib import Path
from registry.mirror.fill_locks import FillLocks
lock = FillLocks(Path(sys.argv[1])).try_hold(sys.argv[2])
print("held" if lock else "busy", flush=True)
sys.stdin.readline()  # until told (or until killed)
if sys.argv[3] == "release":
    lock.release()
time.sleep(30)
"""


def _holder(directory: Path, how: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), DIGEST, how],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def _wait_after(locks: FillLocks, act: object) -> float:
    """Seconds from `act()` to the waiter's wake-up."""
    async def scenario() -> float:
        waiter = asyncio.create_task(locks.wait_released(DIGEST, 10))
        await asyncio.sleep(0.3)
        assert not waiter.done(), "woken while the other process still holds the lock"
        acted = time.monotonic()
        await asyncio.to_thread(act)  # type: ignore[arg-type]
        await waiter
        return time.monotonic() - acted

    return asyncio.run(scenario())


def test_a_waiter_wakes_when_the_other_process_releases(tmp_path: Path) -> None:
    locks = FillLocks(tmp_path)
    holder = _holder(tmp_path, "release")
    try:
        assert locks.held_elsewhere(DIGEST)
        assert locks.try_hold(DIGEST) is None

        def release() -> None:
            assert holder.stdin is not None
            holder.stdin.write("go\n")
            holder.stdin.flush()

        assert _wait_after(locks, release) < 1.0
        assert not locks.held_elsewhere(DIGEST)
        assert not list(tmp_path.glob("*.lock")), "a released lock leaves no file behind"
    finally:
        holder.kill()
        holder.wait()


def test_a_waiter_wakes_when_the_other_process_dies(tmp_path: Path) -> None:
    locks = FillLocks(tmp_path)
    holder = _holder(tmp_path, "keep")
    try:
        assert _wait_after(locks, lambda: (holder.kill(), holder.wait())) < 1.0
        mine = locks.try_hold(DIGEST)
        assert mine is not None  # the dead process's lock is gone: this one may fetch
        mine.release()
    finally:
        holder.kill()
        holder.wait()


def test_a_wait_gives_up_at_its_timeout(tmp_path: Path) -> None:
    locks = FillLocks(tmp_path)
    holder = _holder(tmp_path, "keep")
    try:
        started = time.monotonic()
        asyncio.run(locks.wait_released(DIGEST, 0.3))
        assert 0.25 < time.monotonic() - started < 2.0
    finally:
        holder.kill()
        holder.wait()


def test_looking_creates_and_removes_nothing(tmp_path: Path) -> None:
    locks = FillLocks(tmp_path)
    assert not locks.held_elsewhere(DIGEST)
    assert not list(tmp_path.iterdir()), "a look must not create a lock file"
    holder = _holder(tmp_path, "keep")
    try:
        assert locks.held_elsewhere(DIGEST)
        assert locks.held_elsewhere(DIGEST)  # looking twice leaves the holder's file in place
        assert len(list(tmp_path.glob("*.lock"))) == 1
    finally:
        holder.kill()
        holder.wait()

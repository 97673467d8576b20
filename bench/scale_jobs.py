"""Jobs of bench/scale.py and what they cost: peak memory of a process during a job, a command's wall time
and peak memory, and one mirror cache eviction pass run on its own.

    python bench/scale_jobs.py evict --database-url URL --store DIR --prefix hub --cap BYTES

runs `CacheKeeper.enforce()` (registry/mirror/cache.py), the pass the server's upkeep loop runs when the
cache is over its cap, once, and prints its report and its time as JSON. Run outside the server, its
time is the pass's alone: a server started with the cap would begin the pass by itself within seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class PeakRSS:
    """The peak RSS of a running process over a `with` block: its high-water mark reset at the start
    (/proc/PID/clear_refs, Linux 4.0+) and read at the end, with VmRSS sampled every 20 ms as well, which
    is the figure when the reset is refused."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before_mib = 0.0
        self.peak_mib = 0.0
        self.source = ""
        self._sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._reset = False

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self._sampled = max(self._sampled, _status_kib(self.pid, "VmRSS") or 0)

    def __enter__(self) -> PeakRSS:
        self.before_mib = (_status_kib(self.pid, "VmRSS") or 0) / 1024
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self._reset = True
        except OSError:
            self._reset = False
        self._sampled = _status_kib(self.pid, "VmRSS") or 0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        high_water = _status_kib(self.pid, "VmHWM") if self._reset else None
        if high_water is not None:
            self.peak_mib, self.source = max(high_water, self._sampled) / 1024, "VmHWM after a reset"
        else:
            self.peak_mib, self.source = self._sampled / 1024, "VmRSS sampled every 20 ms"


def run_measured(argv: list[str], env: dict[str, str], timeout: float, work: Path,
                 name: str) -> tuple[float, float, str, int]:
    """Run a command to its end: (seconds, peak RSS in MiB from wait4, its stdout, its exit status). Its
    output goes to `work`/NAME.out and NAME.err: the exit is collected here, by wait4, for its rusage."""
    out_path, err_path = work / f"{name}.out", work / f"{name}.err"
    started = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise TimeoutError(f"{' '.join(argv)} took over {timeout:.0f} s")
        time.sleep(0.01)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    if proc.returncode not in (0, 1):  # fsck exits 1 when it found problems: that is a result
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{err_path.read_text(errors='replace')[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, out_path.read_text(), proc.returncode


async def evict(database_url: str, store_root: Path, prefix: str, cap: int) -> dict[str, object]:
    sys.path.insert(0, str(REPO_ROOT))
    from registry.gc.sweep import Sweeper
    from registry.metadata.db import Database
    from registry.mirror.cache import CacheKeeper
    from registry.storage.filesystem import FilesystemStore

    db = Database(database_url)
    store = FilesystemStore(store_root)
    try:
        keeper = CacheKeeper(db, Sweeper(db, store), [prefix], cap)
        # A server with the mirror configured reads its usage once at start (where usage is a counter, it
        # counts it from scratch then): that first read is timed apart, so the pass is one of a running server.
        started = time.perf_counter()
        await keeper.usage()
        first_usage = time.perf_counter() - started
        started = time.perf_counter()
        report = await keeper.enforce()
        return {"seconds": time.perf_counter() - started, "first_usage_seconds": first_usage, **report}
    finally:
        await store.close()
        await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    evict_parser = commands.add_parser("evict", help="one mirror cache eviction pass")
    evict_parser.add_argument("--database-url", required=True)
    evict_parser.add_argument("--store", type=Path, required=True)
    evict_parser.add_argument("--prefix", required=True)
    evict_parser.add_argument("--cap", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(evict(args.database_url, args.store, args.prefix, args.cap))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Looking at running containers without touching them: `wait`, `top`, `stats` and `port`.

Everything here reads the state files, /proc and the container's cgroups; nothing writes. A
container's processes are those in its pid namespace (found by the namespace of its PID 1), so the
answer is right whether or not the runtime's own helpers share its cgroups.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TYPE_CHECKING = False  # typing costs milliseconds of every verb; annotations only
if TYPE_CHECKING:
    from collections.abc import Callable

from registry.runtime.state import State

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ObserveError(Exception):
    pass


def _running(state: State) -> State:
    current = state.reload()
    if current.status not in ("running", "paused") or not current.init_pid or not current.monitor_alive():
        raise ObserveError(f"container {state.name} is not running")
    return current


# -- wait ----------------------------------------------------------------------------------------

def wait_exit(state: State, poll: float = 0.05, sleep: Callable[[float], None] = time.sleep) -> int:
    """Block until the container stops, then its exit code (docker wait). A created container is
    waited for until it has run; one whose monitor died without recording a code gives 255."""
    while True:
        current = state.reload()
        if current.status != "created" and not current.monitor_alive():  # exited, or its monitor died
            return current.exit_code if current.exit_code is not None else 255
        sleep(poll)


# -- processes -------------------------------------------------------------------------------------

def container_pids(state: State) -> list[int]:
    """The host pids of every process in the container's pid namespace, PID 1 first."""
    init = _running(state).init_pid
    try:
        namespace = os.stat(f"/proc/{init}/ns/pid").st_ino
    except OSError:
        raise ObserveError(f"container {state.name} is not running") from None
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/pid").st_ino == namespace:
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return sorted(found, key=lambda pid: (pid != init, pid))


def top(state: State, ps_args: list[str]) -> str:
    """`ps` on the host (default `-ef`), rows of the container's processes only (docker top)."""
    pids = set(container_pids(state))
    args = ps_args or ["-ef"]
    result = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ObserveError(f"ps {' '.join(args)}: {result.stderr.strip() or 'failed'}")
    lines = result.stdout.splitlines()
    if not lines:
        raise ObserveError("ps printed nothing")
    header = lines[0].split()
    if "PID" not in header:
        raise ObserveError(f"ps {' '.join(args)}: no PID column to match the container's processes")
    column = header.index("PID")
    rows = [lines[0]]
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            rows.append(line)
    return "\n".join(rows) + "\n"


# -- stats -----------------------------------------------------------------------------------------

@dataclass
class Sample:
    when: float                 # monotonic seconds
    cpu_seconds: float          # the container's CPU time so far
    memory: int                 # bytes in use, the page cache that can be dropped at once left out
    memory_limit: int
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int
    pids: int


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _host_memory() -> int:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_seconds(dirs: dict[str, str], pids: list[int]) -> float:
    if "v2" in dirs:
        usage = _keyed(_read(Path(dirs["v2"]) / "cpu.stat")).get("usage_usec")
        if usage is not None:
            return usage / 1e6
    for name in ("cpuacct", "cpu"):
        text = _read(Path(dirs.get(name, "/nonexistent")) / "cpuacct.usage").strip()
        if text.isdigit():
            return int(text) / 1e9
    ticks = 0  # no CPU accounting cgroup: the processes' own times, reaped children included
    for pid in pids:
        fields = _read(Path(f"/proc/{pid}/stat")).rpartition(")")[2].split()
        if len(fields) > 14:
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / CLOCK_TICKS


def _memory(dirs: dict[str, str]) -> tuple[int, int]:
    host = _host_memory()
    if "v2" in dirs:
        d = Path(dirs["v2"])
        current = _read(d / "memory.current").strip()
        if current.isdigit():
            limit = _read(d / "memory.max").strip()
            inactive = _keyed(_read(d / "memory.stat")).get("inactive_file", 0)
            return max(int(current) - inactive, 0), int(limit) if limit.isdigit() else host
    if "memory" in dirs:
        d = Path(dirs["memory"])
        usage = _read(d / "memory.usage_in_bytes").strip()
        if usage.isdigit():
            limit = _read(d / "memory.limit_in_bytes").strip()
            inactive = _keyed(_read(d / "memory.stat")).get("total_inactive_file", 0)
            return max(int(usage) - inactive, 0), min(int(limit), host) if limit.isdigit() else host
    return 0, host


def _network(init: int) -> tuple[int, int]:
    rx = tx = 0
    for line in _read(Path(f"/proc/{init}/net/dev")).splitlines()[2:]:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() != "lo" and len(fields) >= 9:
            rx, tx = rx + int(fields[0]), tx + int(fields[8])
    return rx, tx


def _block(dirs: dict[str, str], pids: list[int]) -> tuple[int, int]:
    if "v2" in dirs:
        text = _read(Path(dirs["v2"]) / "io.stat")
        if text:
            read = write = 0
            for line in text.splitlines():
                for item in line.split()[1:]:
                    key, _, value = item.partition("=")
                    if key == "rbytes":
                        read += int(value)
                    elif key == "wbytes":
                        write += int(value)
            return read, write
    if "blkio" in dirs:
        totals = {"Read": 0, "Write": 0}
        for line in _read(Path(dirs["blkio"]) / "blkio.throttle.io_service_bytes").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in totals:
                totals[parts[1]] += int(parts[2])
        return totals["Read"], totals["Write"]
    read = write = 0  # no I/O cgroup: the live processes' own counters
    for pid in pids:
        counters = dict(line.split(": ", 1) for line in _read(Path(f"/proc/{pid}/io")).splitlines() if ": " in line)
        read += int(counters.get("read_bytes", 0))
        write += int(counters.get("write_bytes", 0))
    return read, write


def sample(state: State) -> Sample:
    current = _running(state)
    pids = container_pids(current)
    dirs = dict(current.cgroups.get("dirs", {}))
    memory, limit = _memory(dirs)
    rx, tx = _network(current.init_pid or pids[0])
    read, write = _block(dirs, pids)
    count = _read(Path(str(dirs.get("pids", dirs.get("v2", "/nonexistent")))) / "pids.current").strip()
    return Sample(time.monotonic(), _cpu_seconds(dirs, pids), memory, limit, rx, tx, read, write,
                  int(count) if count.isdigit() else len(pids))


def _scaled(size: float, step: int, units: tuple[str, ...], digits: int) -> str:
    for unit in units:
        if size < step or unit == units[-1]:
            return f"{int(size)}B" if unit == "B" else f"{size:.{digits}g}{unit}"
        size /= step
    raise AssertionError("not reached")


def binary_size(size: float) -> str:
    """1.5MiB, as docker stats shows memory."""
    return _scaled(size, 1024, ("B", "KiB", "MiB", "GiB", "TiB"), 4)


def decimal_size(size: float) -> str:
    """1.2kB, as docker stats shows network and block I/O."""
    return _scaled(size, 1000, ("B", "kB", "MB", "GB", "TB"), 3)


STATS_HEADER = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")


def stats_row(state: State, before: Sample, after: Sample) -> tuple[str, ...]:
    elapsed = max(after.when - before.when, 1e-6)
    cpu = max(after.cpu_seconds - before.cpu_seconds, 0.0) / elapsed * 100
    memory_share = after.memory / after.memory_limit * 100 if after.memory_limit else 0.0
    return (state.id[:12], state.name, f"{cpu:.2f}%",
            f"{binary_size(after.memory)} / {binary_size(after.memory_limit)}", f"{memory_share:.2f}%",
            f"{decimal_size(after.net_rx)} / {decimal_size(after.net_tx)}",
            f"{decimal_size(after.block_read)} / {decimal_size(after.block_write)}", str(after.pids))


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n" for row in rows)


def stats(states: list[State], stream: bool, interval: float = 1.0, out: Callable[[str], None] | None = None) -> None:
    """docker stats: CPU over the last interval, memory, network, block I/O and processes. Without
    `stream`, one table from two samples `interval` apart; with it, a new table every interval."""
    write = out or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    before = {s.id: sample(s) for s in states}
    while True:
        time.sleep(interval)
        rows: list[tuple[str, ...]] = [STATS_HEADER]
        for state in states:
            try:
                after = sample(state)
            except ObserveError:
                continue  # it stopped: docker drops it from the table too
            rows.append(stats_row(state, before[state.id], after))
            before[state.id] = after
        if not stream:
            write(table(rows))
            return
        write("\x1b[2J\x1b[H" + table(rows))
        if len(rows) == 1:
            return


# -- port ----------------------------------------------------------------------------------------

def port_lines(state: State, wanted: str | None = None) -> list[str]:
    """docker port: `80/tcp -> 0.0.0.0:8080` for each published port; with `wanted` (80 or 80/tcp),
    only the host addresses of that port, `0.0.0.0:8080`. ObserveError when it is not published."""
    lines = []
    for host_ip, host_port, container_port in state.spec.published():
        address = f"{host_ip or '0.0.0.0'}:{host_port}"
        if wanted is None:
            lines.append(f"{container_port}/tcp -> {address}")
            continue
        number, _, protocol = wanted.partition("/")
        if number == str(container_port) and protocol in ("", "tcp"):
            lines.append(address)
    if wanted is not None and not lines:
        port = wanted if "/" in wanted else wanted + "/tcp"
        raise ObserveError(f"no public port '{port}' published for {state.name}")
    return lines

"""cgroup limits for one container on v2 where the controller is there, else on v1.

Each controller is used where the kernel offers it: the v2 hierarchy when its root lists the
controller (pure v2 at /sys/fs/cgroup, or hybrid at /sys/fs/cgroup/unified), else a v1 hierarchy
mounted for it. A limit no hierarchy can honour is an error, never silently dropped. The runtime's own
processes stay outside: the container's first process (process.init, exec's child) moves itself in
(join) right after the fork from its helper (process.stage, exec's helper), so limits count only the
workload.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from typing import Any

from registry.runtime.paths import cgroup_parent
from registry.runtime.records import Record

V1_FOR = {"memory": "memory", "cpu": "cpu", "pids": "pids", "io": "blkio", "freezer": "freezer", "devices": "devices"}
# Docker's default device rules: any node may be created, only these opened (null, zero, full, random,
# urandom, tty, console, ptmx, the pts, tun). Anything else, e.g. a block device made with mknod, is refused.
DEVICE_RULES = ["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm"]


class CgroupError(Exception):
    pass


class Hierarchies(Record):
    def __init__(self, v2_root: Path | None, v2_controllers: set[str], v1: dict[str, Path],
                 v1_options: dict[str, str] | None = None) -> None:
        self.v2_root = v2_root
        self.v2_controllers = v2_controllers
        self.v1 = v1                               # controller -> mount point
        self.v1_options = v1_options or {}         # mount point -> its controller option(s)

    @classmethod
    def detect(cls) -> Hierarchies:
        v2_root = None
        v1: dict[str, Path] = {}
        v1_options: dict[str, str] = {}
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fstype, _, options = right.split()[:3]
                mount_point = Path(left.split()[4])
                if fstype == "cgroup2" and v2_root is None:
                    v2_root = mount_point
                elif fstype == "cgroup":
                    chosen = [o for o in options.split(",") if o not in ("rw", "ro", "relatime", "nosuid", "nodev",
                                                                         "noexec", "xattr", "clone_children")]
                    v1_options.setdefault(str(mount_point), ",".join(chosen))
                    for option in chosen:
                        if option in V1_FOR.values() or option in ("cpuacct", "cpuset", "devices"):
                            v1.setdefault(option, mount_point)
        controllers: set[str] = set()
        if v2_root is not None:
            try:
                controllers = set((v2_root / "cgroup.controllers").read_text().split())
            except OSError:
                v2_root = None
        return cls(v2_root, controllers, v1, v1_options)

    def where(self, controller: str) -> str | None:
        """'v2', 'v1' or None for a controller (v2 names: memory, cpu, pids, io, freezer, devices; on v2 the
        last two are not controllers but cgroup.freeze and an eBPF program)."""
        if controller == "devices":
            return "v1" if "devices" in self.v1 else ("v2" if self.v2_root is not None else None)
        if controller == "freezer" and self.v2_root is not None and not self.v1.get("freezer"):
            return "v2"  # cgroup.freeze is core in v2
        if controller in self.v2_controllers:
            return "v2"
        if V1_FOR[controller] in self.v1:
            return "v1"
        return None


class Resources(Record):
    def __init__(self, memory: int | None = None, memory_swap: int | None = None, cpus: float | None = None,
                 cpu_shares: int | None = None, pids_limit: int | None = None, blkio_weight: int | None = None,
                 device_read_bps: list[tuple[str, int]] | None = None,
                 device_write_bps: list[tuple[str, int]] | None = None,
                 device_read_iops: list[tuple[str, int]] | None = None,
                 device_write_iops: list[tuple[str, int]] | None = None) -> None:
        self.memory = memory                  # bytes
        self.memory_swap = memory_swap        # memory + swap, bytes; -1 unlimited
        self.cpus = cpus
        self.cpu_shares = cpu_shares
        self.pids_limit = pids_limit
        self.blkio_weight = blkio_weight
        self.device_read_bps = device_read_bps or []      # (device path, bytes/s)
        self.device_write_bps = device_write_bps or []
        self.device_read_iops = device_read_iops or []    # (device path, operations/s)
        self.device_write_iops = device_write_iops or []

    def throttles(self) -> list[tuple[str, str, str, int]]:
        """Every device limit as (device path, v1 file, v2 io.max key, value)."""
        out = []
        for limits, v1_file, v2_key in ((self.device_read_bps, "blkio.throttle.read_bps_device", "rbps"),
                                        (self.device_write_bps, "blkio.throttle.write_bps_device", "wbps"),
                                        (self.device_read_iops, "blkio.throttle.read_iops_device", "riops"),
                                        (self.device_write_iops, "blkio.throttle.write_iops_device", "wiops")):
            out += [(device, v1_file, v2_key, value) for device, value in limits]
        return out

    def controllers(self) -> set[str]:
        wanted = set()
        if self.memory is not None or self.memory_swap is not None:
            wanted.add("memory")
        if self.cpus is not None or self.cpu_shares is not None:
            wanted.add("cpu")
        if self.pids_limit is not None:
            wanted.add("pids")
        if self.blkio_weight is not None or self.throttles():
            wanted.add("io")
        return wanted


def _device_numbers(path: str) -> str:
    st = os.stat(path)
    if not (st.st_mode & 0o060000):
        raise CgroupError(f"{path} is not a device")
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from None


class ContainerCgroups(Record):
    """The directories of one container's cgroups (absolute), which the state file keeps."""

    def __init__(self, dirs: dict[str, str], where: dict[str, str]) -> None:
        self.dirs = dirs      # "v2" or a v1 controller -> directory
        self.where = where    # controller -> "v1"/"v2"

    def to_json(self) -> dict[str, Any]:
        return {"dirs": self.dirs, "where": self.where}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ContainerCgroups:
        return cls(dict(raw.get("dirs", {})), dict(raw.get("where", {})))

    # -- creation --------------------------------------------------------------------------
    @classmethod
    def create(cls, container_id: str, resources: Resources, hier: Hierarchies | None = None) -> ContainerCgroups:
        hier = hier or Hierarchies.detect()
        wanted = resources.controllers()
        where: dict[str, str] = {}
        for controller in sorted(wanted):
            place = hier.where(controller)
            if place is None:
                raise CgroupError(f"the {controller} cgroup controller is not available on this host "
                                  f"(neither cgroup v2 nor v1 offers it), so its limits cannot be honoured")
            where[controller] = place
        # Always: pids and memory for accounting where available, freezer for pause, devices for safety.
        for controller in ("memory", "pids", "freezer", "devices"):
            if controller not in where and (place := hier.where(controller)):
                where[controller] = place
        parent = cgroup_parent()
        dirs: dict[str, str] = {}
        made = cls(dirs, where)
        try:
            # On a hybrid host where every controller is on v1 the v2 tree is left alone, as Docker does.
            if hier.v2_root is not None and (any(p == "v2" for p in where.values()) or not hier.v1):
                v2_ctrls = sorted(c for c, p in where.items() if p == "v2" and c not in ("freezer", "devices"))
                base = hier.v2_root
                for part in parent.split("/"):
                    if v2_ctrls:
                        _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in v2_ctrls))
                    base = base / part
                    base.mkdir(exist_ok=True)
                if v2_ctrls:
                    _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in v2_ctrls))
                leaf = base / container_id
                leaf.mkdir()
                dirs["v2"] = str(leaf)
            for controller, place in where.items():
                if place == "v1":
                    name = V1_FOR[controller]
                    leaf = hier.v1[name] / parent / container_id
                    leaf.parent.mkdir(parents=True, exist_ok=True)
                    leaf.mkdir()
                    dirs[name] = str(leaf)
            made._apply(resources)
        except BaseException:
            made.remove()
            raise
        return made

    def _dir(self, controller: str) -> Path:
        place = self.where[controller]
        return Path(self.dirs["v2" if place == "v2" else V1_FOR[controller]])

    @property
    def guards_devices(self) -> bool:
        return "devices" in self.where

    def _apply(self, r: Resources) -> None:
        if self.where.get("devices") == "v2":
            from registry.runtime import devices_bpf
            try:
                devices_bpf.attach(self.dirs["v2"])
            except OSError:  # no cgroup eBPF in this kernel: the container gets no CAP_MKNOD instead
                del self.where["devices"]
        elif "devices" in self.dirs:
            d = Path(self.dirs["devices"])
            _write(d / "devices.deny", "a")
            for rule in DEVICE_RULES:
                _write(d / "devices.allow", rule)
        if "memory" in r.controllers():
            d = self._dir("memory")
            if self.where["memory"] == "v2":
                if r.memory is not None:
                    _write(d / "memory.max", str(r.memory))
                if r.memory_swap is not None:
                    if not (d / "memory.swap.max").exists():
                        raise CgroupError("--memory-swap needs swap accounting, which this host's cgroup v2 lacks")
                    swap = "max" if r.memory_swap < 0 else str(max(r.memory_swap - (r.memory or 0), 0))
                    _write(d / "memory.swap.max", swap)
                elif r.memory is not None and (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", str(r.memory))  # Docker: swap as much as memory
            else:
                if r.memory is not None:
                    _write(d / "memory.limit_in_bytes", str(r.memory))
                if r.memory_swap is not None:
                    if not (d / "memory.memsw.limit_in_bytes").exists():
                        raise CgroupError("--memory-swap needs swap accounting (memory.memsw.*), which this "
                                          "host's cgroup v1 memory controller lacks")
                    _write(d / "memory.memsw.limit_in_bytes", str(r.memory_swap))
        if "cpu" in r.controllers():
            d = self._dir("cpu")
            v2 = self.where["cpu"] == "v2"
            if r.cpus is not None:
                period = 100000
                quota = int(r.cpus * period)
                if v2:
                    _write(d / "cpu.max", f"{quota} {period}")
                else:
                    _write(d / "cpu.cfs_period_us", str(period))
                    _write(d / "cpu.cfs_quota_us", str(quota))
            if r.cpu_shares is not None:
                if v2:  # the mapping runc uses from shares (2..262144) to weight (1..10000)
                    weight = 1 + ((max(r.cpu_shares, 2) - 2) * 9999) // 262142
                    _write(d / "cpu.weight", str(weight))
                else:
                    _write(d / "cpu.shares", str(r.cpu_shares))
        if r.pids_limit is not None:
            _write(self._dir("pids") / "pids.max", str(r.pids_limit) if r.pids_limit > 0 else "max")
        if "io" in r.controllers():
            d = self._dir("io")
            if self.where["io"] == "v2":
                if r.blkio_weight is not None:
                    if not (d / "io.weight").exists():
                        raise CgroupError("--blkio-weight needs io.weight (the io.cost controller) on cgroup v2, "
                                          "which this host does not offer; the --device-read/write-bps "
                                          "and -iops limits work without it")
                    _write(d / "io.weight", f"default {r.blkio_weight}")
                for dev, _, key, value in r.throttles():
                    _write(d / "io.max", f"{_device_numbers(dev)} {key}={value}")
            else:
                if r.blkio_weight is not None:
                    for name in ("blkio.weight", "blkio.bfq.weight"):
                        if (d / name).exists():
                            _write(d / name, str(r.blkio_weight))
                            break
                    else:
                        raise CgroupError("--blkio-weight needs blkio.bfq.weight (the BFQ I/O scheduler on the "
                                          "disks) or blkio.weight (CFQ, before Linux 5.0), which this host's blkio "
                                          "controller does not offer; the --device-read/write-bps and -iops "
                                          "limits work without it")
                for dev, v1_file, _, value in r.throttles():
                    _write(d / v1_file, f"{_device_numbers(dev)} {value}")

    # -- use ---------------------------------------------------------------------------------
    def join(self, pid: int = 0) -> None:
        """Move a single-threaded process in: `pid`, or with 0 the caller. The container's first process joins
        itself this way, so the runtime helper that forked it stays outside: on v1 a move of the caller's
        own thread spares the kernel's global threadgroup lock, whose RCU sync costs ~10 ms a start, where
        a move by pid takes it."""
        files = self.open_join_files()
        try:
            self.join_by_files(files, pid)
        finally:
            for _, fd in files:
                os.close(fd)

    def open_join_files(self) -> list[tuple[str, int]]:
        """The files join() writes (v1: `tasks`, one thread; v2: cgroup.procs), opened: for a helper about to
        enter the container's mount namespace, where /sys/fs/cgroup is the container's read-only view; its
        child joins with join_by_files(files, 0)."""
        files: list[tuple[str, int]] = []
        try:
            for name, d in self.dirs.items():
                path = Path(d) / ("cgroup.procs" if name == "v2" else "tasks")
                try:
                    files.append((str(path), os.open(path, os.O_WRONLY | os.O_CLOEXEC)))
                except OSError as exc:
                    raise CgroupError(f"cannot open {path}: {exc.strerror}") from None
        except BaseException:
            for _, fd in files:
                os.close(fd)
            raise
        return files

    @staticmethod
    def join_by_files(files: list[tuple[str, int]], pid: int) -> None:
        for path, fd in files:
            try:
                os.write(fd, str(pid).encode())
            except OSError as exc:
                raise CgroupError(f"cannot write {pid} to {path}: {exc.strerror}") from None

    def pids(self) -> list[int]:
        out: set[int] = set()
        for d in self.dirs.values():
            try:
                out.update(int(x) for x in (Path(d) / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return sorted(out)

    def freeze(self, frozen: bool) -> None:
        if "freezer" in self.dirs:
            _write(Path(self.dirs["freezer"]) / "freezer.state", "FROZEN" if frozen else "THAWED")
        elif "v2" in self.dirs:
            _write(Path(self.dirs["v2"]) / "cgroup.freeze", "1" if frozen else "0")
        else:
            raise CgroupError("no freezer: neither cgroup v1 freezer nor cgroup v2 is available")

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL whatever is left in the cgroups (cgroup.kill on v2), thawing first so it can die."""
        deadline = time.monotonic() + timeout
        try:
            self.freeze(False)
        except CgroupError:
            pass
        while True:
            pids = self.pids()
            if not pids:
                return
            kill_file = Path(self.dirs.get("v2", "/nonexistent")) / "cgroup.kill"
            if kill_file.exists():
                try:
                    kill_file.write_text("1")
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise CgroupError(f"processes {pids} survive SIGKILL")
            time.sleep(0.01)

    def remove(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for d in list(self.dirs.values()):
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(f"cannot remove cgroup {d}: {exc.strerror}") from None
                    time.sleep(0.01)

    def memory_events_oom(self) -> bool:
        """Whether the kernel's OOM killer acted in this cgroup."""
        if "memory" not in self.where:
            return False
        d = self._dir("memory")
        try:
            if self.where["memory"] == "v2":
                events = dict(line.split() for line in (d / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0)) > 0
            control = dict(line.split() for line in (d / "memory.oom_control").read_text().splitlines())
            return int(control.get("oom_kill", 0)) > 0
        except (OSError, ValueError):
            return False

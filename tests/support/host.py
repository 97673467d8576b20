"""What this host offers, detected rather than assumed, so a test checks what the host has.

Hosts of this kind differ in small ways that must not turn a test red: cgroup v1, hybrid (v1 controllers plus
an empty v2 mount) or v2 only; whether the block I/O controller has a weight file (BFQ; CFQ before Linux 5.0;
io.cost on v2) or only throttles; swap and swap accounting; which disk there is to name in a throttle rule;
the address of Docker's default bridge (dockerd 20.10 leaves the IPAM Gateway out of `docker network inspect
bridge`); which containerd dockerd talks to (its own, or a system one named by `--containerd` or daemon.json);
free disk space; the architecture. Each function answers one such question. `describe()` puts some on one
line for a report.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import stat
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from registry.runtime.cgroups import V1_FOR, Hierarchies

# -- cgroups ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cgroups:
    """The cgroup hierarchies mounted here and where the runtime puts each controller."""

    hierarchies: Hierarchies

    @property
    def layout(self) -> str:
        """'v1' (no v2 mount), 'hybrid' (v1 controllers and a v2 mount), 'v2' (v2 only) or 'none'."""
        v1, v2 = bool(self.hierarchies.v1), self.hierarchies.v2_root is not None
        return {(True, False): "v1", (True, True): "hybrid", (False, True): "v2"}.get((v1, v2), "none")

    @property
    def mount_points(self) -> list[Path]:
        """Every hierarchy a container's cgroup may be made in (v1 mounts, named ones too, and v2's root)."""
        points = {Path(p) for p in self.hierarchies.v1_options} | set(self.hierarchies.v1.values())
        if self.hierarchies.v2_root is not None:
            points.add(self.hierarchies.v2_root)
        return sorted(points)

    def place(self, controller: str) -> str | None:
        """'v1', 'v2' or None: where the runtime puts `controller` (memory, cpu, pids, io, freezer, devices)."""
        return self.hierarchies.where(controller)

    def describe(self) -> str:
        h = self.hierarchies
        v2 = f"v2 at {h.v2_root} with [{' '.join(sorted(h.v2_controllers)) or 'no controllers'}]" \
            if h.v2_root is not None else "no v2"
        v1 = f"v1 [{' '.join(sorted(h.v1))}]" if h.v1 else "no v1"
        return f"cgroup {self.layout}: {v1}; {v2}"


@functools.cache
def cgroups() -> Cgroups:
    return Cgroups(Hierarchies.detect())


@functools.cache
def cgroup_files(controller: str) -> frozenset[str]:
    """The files a new, empty cgroup gets for `controller` where the runtime would put it (empty if nowhere).

    Many files exist only below the root (blkio.bfq.weight, io.weight, memory.swap.max), so this makes a
    probe cgroup, lists it and removes it. On v2 the controller must be enabled in the root's
    cgroup.subtree_control for a child to get its files; the runtime enables it the same way for any
    container that asks for the controller, so the probe does that too when it is not already on.
    """
    hier = cgroups().hierarchies
    place = hier.where(controller)
    if place == "v1":
        parent = hier.v1[V1_FOR[controller]]
    elif place == "v2" and hier.v2_root is not None:
        parent = hier.v2_root
        control = parent / "cgroup.subtree_control"
        if controller not in control.read_text().split():
            control.write_text(f"+{controller}")
    else:
        return frozenset()
    probe = parent / f"registry-host-probe-{uuid.uuid4().hex[:8]}"
    probe.mkdir()
    try:
        return frozenset(os.listdir(probe))
    finally:
        probe.rmdir()


# The files the runtime writes --blkio-weight to (registry/runtime/cgroups.py), in its order of preference.
WEIGHT_FILES = {"v1": ("blkio.weight", "blkio.bfq.weight"), "v2": ("io.weight",)}


def io_weight_file() -> str | None:
    """The file a container's --blkio-weight lands in here, or None when the host has none (e.g. mq-deadline
    or none on every disk, no BFQ; on v2 no io.cost). blkio.throttle.* / io.max work either way."""
    place = cgroups().place("io")
    if place is None:
        return None
    files = cgroup_files("io")
    return next((name for name in WEIGHT_FILES[place] if name in files), None)


def io_weight_absence() -> str:
    """Why io_weight_file() is None, in a sentence for a skip or a report."""
    place = cgroups().place("io")
    if place is None:
        return "no block I/O cgroup controller (neither v1 blkio nor v2 io)"
    offered = [p.read_text().split() for p in Path("/sys/block").glob("*/queue/scheduler")]
    active = sorted({s.strip("[]") for line in offered for s in line if s.startswith("[")})
    bfq = "BFQ offered but not selected" if any("bfq" in s for line in offered for s in line) else "no BFQ"
    names = " or ".join(WEIGHT_FILES[place])
    return (f"the {place} block I/O controller offers no {names} (disks' schedulers: {', '.join(active) or 'unknown'}, "
            f"{bfq}; a weight needs BFQ{' or io.cost' if place == 'v2' else ''})")


def swap_in_use() -> bool:
    """Whether any swap device or file is active (/proc/swaps has more than its header)."""
    try:
        return len(Path("/proc/swaps").read_text().splitlines()) > 1
    except OSError:
        return False


def swap_accounting() -> bool:
    """Whether a container's memory cgroup can limit swap (v1 memory.memsw.*, v2 memory.swap.max)."""
    place = cgroups().place("memory")
    wanted = {"v1": "memory.memsw.limit_in_bytes", "v2": "memory.swap.max"}.get(place or "")
    return wanted is not None and wanted in cgroup_files("memory")


# -- block devices ----------------------------------------------------------------------------

_VIRTUAL_DISKS = ("loop", "ram", "zram", "dm-", "md", "nbd", "sr", "fd")


def _disk_of(path: str) -> str | None:
    """The whole disk (e.g. vda for vda1) holding the filesystem at `path`, if it is on a block device."""
    dev = os.stat(path).st_dev
    link = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not link.exists():
        return None  # overlay, tmpfs, virtiofs ...: no block device behind it
    node = link.resolve()
    return node.parent.name if (node / "partition").exists() else node.name


@functools.cache
def block_device() -> str | None:
    """A whole disk's node under /dev to name in throttle rules and device-cgroup checks: the disk holding
    /, else a real disk, else any disk (loop, zram, ...); None if there is none."""
    disks = [name for name in sorted(os.listdir("/sys/block"))
             if os.path.exists(f"/dev/{name}") and stat.S_ISBLK(os.stat(f"/dev/{name}").st_mode)]
    root = _disk_of("/")
    ordered = ([root] if root in disks else []) + [d for d in disks if not d.startswith(_VIRTUAL_DISKS)] + disks
    return f"/dev/{ordered[0]}" if ordered else None


# -- Docker's default bridge ------------------------------------------------------------------


class HostLacks(Exception):
    """The host does not offer what a test needs; the message says what and why (for pytest.skip)."""


@dataclass(frozen=True)
class BridgeAddress:
    interface: str   # e.g. docker0
    address: str     # e.g. 172.17.0.1: what containers see connections from the host come from
    source: str      # how it was found: "interface" or "IPAM gateway"


def interface_ipv4(name: str) -> str | None:
    """The first IPv4 address of interface `name` (`ip -4 -o addr show NAME`), or None."""
    ip = shutil.which("ip") or "/usr/sbin/ip"
    if not os.path.exists(ip):
        raise HostLacks("`ip` (iproute2) not found; install it with: apt-get install -y iproute2")
    result = subprocess.run([ip, "-4", "-o", "addr", "show", "dev", name], capture_output=True, text=True,
                            timeout=20)
    for line in result.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    return None


def docker_bridge_address() -> BridgeAddress:
    """The address of dockerd's default bridge on this host, from which a published port's connections reach a
    container (through docker-proxy). The bridge interface's own address first (named by the network's
    `com.docker.network.bridge.name`, docker0 by default); the IPAM Gateway only when the interface has none
    here (e.g. a remote daemon). dockerd 20.10 may leave the Gateway out of `docker network inspect bridge`."""
    result = subprocess.run(["docker", "network", "inspect", "bridge"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise HostLacks(f"dockerd has no default `bridge` network (dockerd --bridge=none?): {result.stderr.strip()}")
    network = json.loads(result.stdout)[0]
    name = (network.get("Options") or {}).get("com.docker.network.bridge.name") or "docker0"
    if Path(f"/sys/class/net/{name}").exists() and (address := interface_ipv4(name)):
        return BridgeAddress(name, address, "interface")
    gateways = [c["Gateway"] for c in (network.get("IPAM") or {}).get("Config") or [] if c.get("Gateway")]
    if gateways:
        return BridgeAddress(name, gateways[0].split("/")[0], "IPAM gateway")
    raise HostLacks(f"dockerd's bridge {name} has no IPv4 address on this host and its network no IPAM Gateway")


# -- dockerd and its containerd ---------------------------------------------------------------

DOCKER_PID_FILES = (Path("/var/run/docker.pid"), Path("/run/docker.pid"))
DEFAULT_DAEMON_JSON = Path("/etc/docker/daemon.json")
# Where dockerd finds containerd when told nothing: a system containerd's socket if it exists (dockerd 20.10+
# then uses it rather than start its own), else the one dockerd starts under its exec-root.
SYSTEM_CONTAINERD_SOCKET = Path("/run/containerd/containerd.sock")
DEFAULT_EXEC_ROOT = Path("/var/run/docker")


def _is_dockerd(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.path.basename(argv0.decode(errors="replace")) == "dockerd"


def dockerd_pid() -> int | None:
    """The running dockerd's pid: its pid file (when that process is a dockerd), else the one `pidof dockerd`
    finds; None when there is none or several and no pid file to tell them apart."""
    for candidate in DOCKER_PID_FILES:
        try:
            pid = int(candidate.read_text().strip())
        except (OSError, ValueError):
            continue
        if _is_dockerd(pid):
            return pid
    pidof = shutil.which("pidof") or "/usr/bin/pidof"
    try:
        found = subprocess.run([pidof, "dockerd"], capture_output=True, text=True, timeout=20).stdout.split()
    except OSError:
        return None
    return int(found[0]) if len(found) == 1 else None


def dockerd_args(pid: int) -> list[str]:
    """dockerd's command line, from /proc (empty if the process is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def _flag(args: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in `args` (the last one wins, as in dockerd)."""
    value = None
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def daemon_json(pid: int) -> Path:
    """The daemon.json this dockerd reads: its --config-file, else /etc/docker/daemon.json (which may not exist)."""
    named = _flag(dockerd_args(pid), "--config-file")
    return Path(named) if named else DEFAULT_DAEMON_JSON


def dockerd_setting(pid: int, name: str) -> str | None:
    """A dockerd option as this dockerd has it: `--name` on its command line, else daemon.json's `name` key."""
    value = _flag(dockerd_args(pid), f"--{name}")
    if value:
        return value
    try:
        settings = json.loads(daemon_json(pid).read_text() or "{}")
    except (OSError, ValueError):
        return None
    found = settings.get(name) if isinstance(settings, dict) else None
    return found if isinstance(found, str) and found else None


def containerd_socket() -> Path:
    """The socket of the containerd that dockerd uses (for `ctr --address`): dockerd's `--containerd`, else
    daemon.json's `containerd`, else the first usual path that is a socket (a system containerd's, then the
    one dockerd starts under its exec-root). Raises HostLacks, saying where it looked, when none is."""
    pid = dockerd_pid()
    if pid is not None:
        configured = dockerd_setting(pid, "containerd")
        if configured:
            if Path(configured).is_socket():
                return Path(configured)
            raise HostLacks(f"dockerd (pid {pid}) is configured with containerd at {configured}, which is not a socket")
    exec_root = Path(dockerd_setting(pid, "exec-root") or DEFAULT_EXEC_ROOT) if pid is not None else DEFAULT_EXEC_ROOT
    usual = [SYSTEM_CONTAINERD_SOCKET, exec_root / "containerd" / "containerd.sock"]
    for candidate in usual:
        if candidate.is_socket():
            return candidate
    who = f"dockerd (pid {pid}) has no --containerd and its {daemon_json(pid)} no \"containerd\"" if pid is not None \
        else "no dockerd found to ask (no pid file, `pidof dockerd` not one pid)"
    raise HostLacks(f"no containerd socket: {who}, and none of {', '.join(map(str, usual))} is a socket")


# -- disk space -------------------------------------------------------------------------------


def short_of_space(path: Path, needed: int, what: str) -> str | None:
    """Why `what` (needing `needed` bytes written under `path`) cannot run here, or None when the filesystem
    holding `path` has room (free to unprivileged users, as shutil.disk_usage reports it)."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free >= needed:
        return None
    return (f"{what} needs {needed / 2**30:.1f} GiB free under {path}; that filesystem has {free / 2**30:.1f} GiB "
            f"free")


# -- platform ---------------------------------------------------------------------------------

_OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x",
             "riscv64": "riscv64", "armv7l": "arm", "i686": "386"}


def oci_arch() -> str:
    """This host's architecture as OCI image configs and indexes name it (amd64, arm64, ...)."""
    machine = platform.machine()
    return _OCI_ARCH.get(machine, machine)


def describe() -> str:
    """The host facts the suite adapts to, on one line (for the report header)."""
    parts = [cgroups().describe()]
    if os.geteuid() == 0:
        weight = io_weight_file()
        parts.append(f"block I/O weight: {weight}" if weight else f"no block I/O weight ({io_weight_absence()})")
        parts.append(f"swap {'on' if swap_in_use() else 'off'}, accounting {'yes' if swap_accounting() else 'no'}")
    parts.append(f"disk for throttles: {block_device() or 'none'}")
    parts.append(f"arch {oci_arch()}")
    return "; ".join(parts)

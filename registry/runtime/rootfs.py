"""The container's filesystem, built inside its own mount namespace (so nothing shows on the host and
everything goes when the namespace does): overlay of the layers, volumes, /proc, /dev, /sys, then
pivot_root, then runc's masked and read-only paths."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from registry.addresses import is_loopback
from registry.runtime import syscalls as sc

# runc's defaults (`runc spec`).
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
DEV_LINKS = [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")]
NOSUID_NODEV_NOEXEC = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


class RootfsError(Exception):
    pass


def overlay_options(lowers: list[str], upper: str, work: str) -> str:
    """Overlay mount data; `lowers` are short paths relative to the cwd, top-most first."""
    data = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    if len(data) >= 4096:  # the kernel would cut it at a page without a word
        raise RootfsError(f"overlay options are {len(data)} bytes even with short layer names")
    return data


def mount_overlay(store_root: Path, lowers: list[str], upper: Path, work: Path, target: Path) -> None:
    if not lowers:  # an image without layers: overlay still wants a lower directory
        (store_root / "empty").mkdir(exist_ok=True)
        lowers = ["empty"]
    cwd = os.getcwd()
    os.chdir(store_root)  # lowerdir entries are short and relative to the store
    try:
        sc.mount("overlay", str(target), "overlay", 0, overlay_options(lowers, str(upper), str(work)))
    finally:
        os.chdir(cwd)


def inside(rootfs: Path, path: str) -> Path:
    """rootfs/path with symlinks in the image resolved inside the rootfs, never above it."""
    current = rootfs
    parts = [p for p in path.split("/") if p not in ("", ".")]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != rootfs else rootfs
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise RootfsError(f"too many symlinks in {path}")
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            current = rootfs if target.startswith("/") else current
            continue
        current = candidate
    return current


def _bind(source: str, target: Path, readonly: bool, recursive: bool = True) -> None:
    flags = sc.MS_BIND | (sc.MS_REC if recursive else 0)
    sc.mount(source, str(target), None, flags)
    if readonly:
        sc.mount(None, str(target), None, flags | sc.MS_REMOUNT | sc.MS_RDONLY)


def mount_volume(rootfs: Path, host: str, container: str, readonly: bool) -> None:
    target = inside(rootfs, container)
    if os.path.isdir(host):
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)
    _bind(host, target, readonly)


def mount_dev(rootfs: Path) -> None:
    dev = rootfs / "dev"
    dev.mkdir(exist_ok=True)
    sc.mount("tmpfs", str(dev), "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k")
    old = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            os.mknod(dev / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    finally:
        os.umask(old)
    for name, target in DEV_LINKS:
        os.symlink(target, dev / name)
    for name in ("pts", "shm", "mqueue"):
        (dev / name).mkdir()
    sc.mount("devpts", str(dev / "pts"), "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620,gid=5")
    sc.mount("shm", str(dev / "shm"), "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    sc.mount("mqueue", str(dev / "mqueue"), "mqueue", NOSUID_NODEV_NOEXEC)


def mount_sys(rootfs: Path, new_netns: bool) -> None:
    target = rootfs / "sys"
    target.mkdir(exist_ok=True)
    if new_netns:
        sc.mount("sysfs", str(target), "sysfs", NOSUID_NODEV_NOEXEC | sc.MS_RDONLY)
    else:  # sysfs of the host's network namespace cannot be mounted anew from here: bind it read-only
        _bind("/sys", target, readonly=True)


def mount_cgroups(rootfs: Path) -> None:
    """/sys/fs/cgroup read-only, as runc and Docker do: the container's own cgroups through its cgroup namespace."""
    from registry.runtime.cgroups import Hierarchies

    target = rootfs / "sys" / "fs" / "cgroup"
    hier = Hierarchies.detect()
    flags = NOSUID_NODEV_NOEXEC | sc.MS_RDONLY
    if hier.v2_root is not None and not hier.v1:
        sc.mount("cgroup2", str(target), "cgroup2", flags)
        return
    sc.mount("tmpfs", str(target), "tmpfs", NOSUID_NODEV_NOEXEC, "mode=755")
    options = sorted(set(hier.v1_options.values()))
    for option in options:
        name = option.replace("name=", "")
        (target / name).mkdir()
        sc.mount("cgroup", str(target / name), "cgroup", flags, option)
    if hier.v2_root is not None:
        (target / "unified").mkdir()
        sc.mount("cgroup2", str(target / "unified"), "cgroup2", flags)
    sc.mount(None, str(target), None, sc.MS_REMOUNT | sc.MS_RDONLY | NOSUID_NODEV_NOEXEC)


FALLBACK_NAMESERVERS = ["8.8.8.8", "8.8.4.4"]  # Docker's, when the host has none a container can reach
RESOLV_SOURCES = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"]


def _nameservers(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            out.append(words[1])
    return out


def container_resolv_conf(sources: list[str] | None = None) -> str:
    """What Docker gives a container on a bridge: the host's resolv.conf without loopback nameservers (they
    are the container's own loopback there). Where the host has only loopback ones (systemd-resolved's
    127.0.0.53, a local dnsmasq), the upstream list systemd-resolved keeps; failing that, 8.8.8.8 and 8.8.4.4.
    Search and options lines come from the host's file."""
    paths = RESOLV_SOURCES if sources is None else sources
    texts = []
    for path in paths:
        try:
            texts.append(Path(path).read_text())
        except OSError:
            texts.append("")
    host = texts[0] if texts else ""
    others = [line for line in host.splitlines()
              if line.split()[:1] and line.split()[0] in ("search", "domain", "options")]
    servers = [ns for ns in _nameservers(host) if not is_loopback(ns)]
    for text in texts[1:]:
        if servers:
            break
        servers = [ns for ns in _nameservers(text) if not is_loopback(ns)]
    if not servers:
        servers = FALLBACK_NAMESERVERS
    return "".join(f"nameserver {ns}\n" for ns in servers) + "".join(line + "\n" for line in others)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o644)  # whatever the umask: Docker's are 0644


def write_etc(rootfs: Path, hostname: str, ip: str | None, resolv: bool, host_network: bool = False) -> None:
    """/etc/hostname, /etc/hosts and (with a network) /etc/resolv.conf, in the container's upper dir; on the
    host's network the host's resolv.conf as it is (its loopback resolvers are reachable there)."""
    etc = inside(rootfs, "/etc")
    etc.mkdir(parents=True, exist_ok=True)
    for name in ("hostname", "hosts", "resolv.conf"):
        path = etc / name
        if path.is_symlink():
            path.unlink()
    _write(etc / "hostname", hostname + "\n")
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    hosts += f"{ip or '127.0.1.1'}\t{hostname}\n"
    _write(etc / "hosts", hosts)
    if resolv:
        try:
            text = Path("/etc/resolv.conf").read_text() if host_network else container_resolv_conf()
        except OSError:
            text = ""
        _write(etc / "resolv.conf", text)


def pivot(rootfs: Path) -> None:
    """pivot_root with the old root stacked under the new one, then detached: no directory needed."""
    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    sc.umount(".", sc.MNT_DETACH)
    os.chdir("/")


def mask_paths() -> None:
    for path in MASKED_PATHS:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path):
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND)
    for path in READONLY_PATHS:
        if os.path.lexists(path):
            sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
            sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC
                     | NOSUID_NODEV_NOEXEC)


def build(store_root: Path, lowers: list[str], upper: Path, work: Path, rootfs: Path, *, hostname: str,
          volumes: list[tuple[str, str, bool]], new_netns: bool, ip: str | None) -> None:
    """Everything from a private / to the pivoted root; runs as the container's PID 1 before exec."""
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)  # nothing we do propagates to the host
    mount_overlay(store_root, lowers, upper, work, rootfs)
    write_etc(rootfs, hostname, ip, resolv=True, host_network=not new_netns)
    shared_hosts = upper.parent / "hosts"  # a bridge container's, kept current by the host (network.refresh_hosts)
    if ip and shared_hosts.is_file():
        _bind(str(shared_hosts), inside(rootfs, "/etc/hosts"), readonly=False, recursive=False)
    for host, container, readonly in volumes:
        mount_volume(rootfs, host, container, readonly)
    proc = rootfs / "proc"
    proc.mkdir(exist_ok=True)
    sc.mount("proc", str(proc), "proc", NOSUID_NODEV_NOEXEC)
    mount_dev(rootfs)
    mount_sys(rootfs, new_netns)
    mount_cgroups(rootfs)
    pivot(rootfs)
    mask_paths()

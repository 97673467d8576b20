"""`registry cp`: files between a container and the host, as `docker cp`.

The container's side runs in a child process whose root is the container's own: the mount namespace
of a running (or paused) container, or, for a stopped one, its overlay mounted in a private mount
namespace and chrooted into. Paths, symlinks and `..` therefore resolve inside the container and
never reach the host. The bytes cross as a tar stream over a pipe, never whole in memory. What is
extracted on the host is checked like tarfile's "tar" filter plus hard links: nothing lands outside
the destination, and no device node is made.

Placement follows docker cp: a file onto a missing path is saved under that name, into a directory
under its own name, over a file in place; a directory onto a missing path becomes it, into a
directory as a subdirectory, and `SRC/.` copies a directory's contents.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tarfile
import tempfile
from pathlib import Path

from registry.runtime import syscalls as sc
from registry.runtime.state import State

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class CopyError(Exception):
    pass


def split_target(value: str) -> tuple[str | None, str]:
    """'NAME:/path' -> ('NAME', '/path'); a host path (absolute, relative with no colon first, or '-')
    -> (None, path), as docker reads its arguments."""
    if value == "-" or value.startswith(("/", "./", "../")) or ":" not in value:
        return None, value
    name, _, path = value.partition(":")
    return name, path


# -- the two ends of the stream --------------------------------------------------------------------

def _send(path: str, out_fd: int, follow: bool) -> None:
    """Write `path` (its contents with a trailing '/.') to `out_fd` as a tar stream."""
    contents = path == "." or path.endswith("/.")
    source = (path[:-2] if path.endswith("/.") else path).rstrip("/") or "/"
    if follow:
        source = os.path.realpath(source)
    if not os.path.lexists(source):
        raise CopyError(f"no such file or directory: {path}")
    name = "." if contents or source == "/" else os.path.basename(source)
    with os.fdopen(out_fd, "wb") as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(source, arcname=name)


def _checked(owner: tuple[int, int] | None,
             strip_setid: bool) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """tarfile's "tar" filter for names (nothing outside the destination), plus: hard links stay inside
    it, device nodes and FIFOs are skipped, modes are kept as they were (the filter's would drop sticky
    and group-write bits), setuid/setgid dropped with `strip_setid`, and, given `owner`, every entry
    belongs to it."""
    def check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        mode = member.mode
        member = tarfile.tar_filter(member, dest)
        if member.isdev():
            return None
        if member.islnk():
            root = os.path.realpath(dest)
            target = os.path.realpath(os.path.join(root, member.linkname))
            if os.path.commonpath([target, root]) != root:
                raise tarfile.LinkOutsideDestinationError(member, target)
        member = member.replace(mode=mode & ~0o6000 if strip_setid else mode, deep=False)
        if owner is not None:
            member = member.replace(uid=owner[0], gid=owner[1], uname="", gname="", deep=False)
        return member
    return check


def _merge(source: Path, target: Path) -> None:
    """Move `source`'s entries into the directory `target`, merging subdirectories (moves keep owners)."""
    for entry in source.iterdir():
        there = target / entry.name
        if there.is_dir() and not there.is_symlink():
            if not entry.is_dir() or entry.is_symlink():
                raise CopyError(f"cannot overwrite a directory with a file: {there}")
            _merge(entry, there)
        elif entry.is_dir() and not entry.is_symlink() and there.exists():
            raise CopyError(f"cannot overwrite a file with a directory: {there}")
        else:
            os.replace(entry, there)


def _place(staged: Path, dest: str, contents: bool) -> None:
    """Move what was extracted into `staged` (one entry, or with `contents` a directory's entries) to `dest`."""
    target = Path(dest)
    if contents:  # SRC/.: the directory's entries, into dest (made if missing)
        if target.exists() and not target.is_dir():
            raise CopyError(f"cannot copy a directory's contents to a file: {dest}")
        target.mkdir(exist_ok=True)
        _merge(staged, target)
        return
    (entry,) = list(staged.iterdir())
    if target.is_dir() and not target.is_symlink():
        target = target / entry.name
    if entry.is_dir() and not entry.is_symlink():
        if target.exists() and not target.is_dir():
            raise CopyError(f"cannot copy a directory to a file: {target}")
        if target.is_dir():
            _merge(entry, target)
            return
    elif target.is_dir() and not target.is_symlink():
        raise CopyError(f"cannot overwrite a directory with a file: {target}")
    os.replace(entry, target)


def _receive(in_fd: int, dest: str, owner: tuple[int, int] | None, raw: bool, strip_setid: bool = False) -> None:
    """Read a tar stream from `in_fd` and put it at `dest` (docker cp's rules). `raw`: the stream is the
    caller's own tar (`cp - NAME:DIR`), extracted into the existing directory `dest` as it is. Owners are
    numbers, never names looked up where the bytes land."""
    check = _checked(owner, strip_setid)
    with os.fdopen(in_fd, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        if raw:
            if not os.path.isdir(dest):
                raise CopyError(f"extraction point is not a directory: {dest}")
            for member in tar:
                tar.extract(member, dest, filter=check, numeric_owner=True)
            return
        parent = os.path.dirname(dest.rstrip("/")) or "/"
        if dest.endswith("/") and not os.path.isdir(dest):
            raise CopyError(f"no such directory: {dest}")
        if not os.path.isdir(parent):
            raise CopyError(f"no such directory: {parent}")
        staged = Path(tempfile.mkdtemp(prefix=".registry-cp-", dir=parent))
        try:
            contents = None
            for member in tar:  # a stream: each member's bytes are read right after its header
                if contents is None:
                    contents = member.name in (".", "./")
                tar.extract(member, staged, filter=check, numeric_owner=True)
            if contents is None:
                raise CopyError("nothing to copy")
            _place(staged, dest, contents)
        finally:
            shutil.rmtree(staged, ignore_errors=True)


# -- entering the container ------------------------------------------------------------------------

def _enter(state: State) -> None:
    """Make the container's filesystem this process's root (called in a forked child)."""
    if state.status == "restarting":  # its overlay is about to be mounted by a start: never mount it twice
        raise CopyError(f"container {state.name} is restarting: try again once it runs")
    running = state.status in ("running", "paused") and state.init_pid and state.monitor_alive()
    if running:
        fd = os.open(f"/proc/{state.init_pid}/ns/mnt", os.O_RDONLY)
        sc.setns(fd)  # root and cwd become the container's
        os.close(fd)
        return
    from registry.runtime import rootfs
    from registry.runtime.paths import runtime_root

    sc.unshare(sc.CLONE_NEWNS)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)  # nothing of this shows on the host
    mountpoint = state.dir / "rootfs"
    for sub in ("upper", "work", "rootfs"):
        (state.dir / sub).mkdir(exist_ok=True)
    rootfs.mount_overlay(runtime_root(), state.spec.lowers, state.dir / "upper", state.dir / "work", mountpoint)
    os.chroot(mountpoint)
    os.chdir("/")


def _in_container(state: State, work: Callable[[], None], err_w: int) -> None:
    """The child: enter, work, exit 0; any failure is one line on `err_w` and exit 1."""
    try:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        # No user or group name is ever looked up inside the container: glibc would read the image's
        # nsswitch.conf and load its libnss_*.so, the image's code in this privileged process
        # (CVE-2019-14271 in docker cp). Entries carry numbers only.
        tarfile.pwd = tarfile.grp = None  # type: ignore[attr-defined]
        _enter(state)
        work()
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - a child never returns into the caller's code
        message = str(exc) if isinstance(exc, CopyError) else f"{type(exc).__name__}: {exc}"
        os.write(err_w, message.encode()[:4000])
        os._exit(1)


def _run(state: State, work: Callable[[], None], host_side: Callable[[], None], close_in_parent: int) -> None:
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        _in_container(state, work, err_w)
    os.close(err_w)
    os.close(close_in_parent)
    failure: BaseException | None = None
    try:
        host_side()
    except (CopyError, tarfile.TarError, OSError) as exc:
        failure = exc
    chunks = []
    while chunk := os.read(err_r, 4096):
        chunks.append(chunk)
    os.close(err_r)
    os.waitpid(pid, 0)
    message = b"".join(chunks).decode(errors="replace")
    if message and not (failure is not None and message.startswith("BrokenPipeError")):
        raise CopyError(message)  # the container's side failed first (the host's then saw a cut stream)
    if failure is not None:
        raise CopyError(str(failure)) from None


def copy_out(state: State, path: str, dest: str, follow: bool = False, archive: bool = False) -> None:
    """CONTAINER:path -> dest on the host ('-': a tar stream on stdout). Entries belong to the caller
    unless `archive` keeps their owners."""
    read_fd, write_fd = os.pipe()

    def host_side() -> None:
        if dest == "-":
            with os.fdopen(read_fd, "rb") as stream:
                shutil.copyfileobj(stream, sys.stdout.buffer, 1 << 20)
            sys.stdout.flush()
        else:
            _receive(read_fd, dest, None if archive else (os.getuid(), os.getgid()), raw=False,
                     strip_setid=not archive)  # no setuid file of the container's becomes the caller's

    def work() -> None:
        os.close(read_fd)
        _send(path, write_fd, follow)
    _run(state, work, host_side, write_fd)


def copy_in(state: State, source: str, path: str, archive: bool = False, follow: bool = False) -> None:
    """source on the host ('-': a tar stream on stdin) -> CONTAINER:path. Entries belong to root
    unless `archive` (-a) keeps the source's owners."""
    if source != "-" and not os.path.lexists(source):
        raise CopyError(f"no such file or directory: {source}")
    read_fd, write_fd = os.pipe()

    def host_side() -> None:
        if source == "-":
            with os.fdopen(write_fd, "wb") as stream:
                shutil.copyfileobj(sys.stdin.buffer, stream, 1 << 20)
        else:
            _send(source, write_fd, follow)

    def work() -> None:
        os.close(write_fd)
        _receive(read_fd, path, None if archive else (0, 0), raw=source == "-")
    _run(state, work, host_side, read_fd)

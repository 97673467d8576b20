"""The processes of a container, from the monitor's fork to execve.

    monitor (outside the cgroups)
      └─ stage (outside the cgroups: unshares the namespaces, forks init, reports its pid, waits for it
         and exits with its status, 128+signal if killed)
           └─ init: PID 1 of the new pid namespace; moves itself into the cgroups, unshares the cgroup
                namespace (its root is then the container's cgroup), builds the rootfs, pivots, becomes the workload
                in place: user, capabilities, no_new_privs, seccomp, execve of the command, as runc does.
                With --init it execs /sbin/docker-init (tini-static, bind-mounted read-only) -- CMD
                instead, after the same steps: the reaper holds no more than the workload.

So the only processes in the container (and in its cgroups) are the workload's. Errors before execve
travel back on a close-on-exec pipe: EOF there means execve succeeded.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from typing import Any

from registry.runtime import network, rootfs, security, syscalls as sc, users
from registry.runtime.cgroups import ContainerCgroups
from registry.runtime.state import Spec

FORWARDED = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM]
EXIT_SETUP_FAILED = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
TINI = "/usr/bin/tini-static"        # Debian's tini, static: it needs nothing from the image
INIT_PATH = "/sbin/docker-init"      # where Docker mounts its init, and where ours shows in the container


def status_code(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128+signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def fail(err_fd: int, message: str, code: int = EXIT_SETUP_FAILED) -> None:
    """Report why the container could not start (to the monitor) and end this process."""
    try:
        os.write(err_fd, message.encode()[:4000])
    finally:
        os._exit(code)


def read_line(fd: int) -> bytes:
    out = b""
    while not out.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            raise EOFError("the other side went away")
        out += chunk
    return out


def _close_all_but(lowest: int, *keep: int) -> None:
    start = lowest
    for fd in sorted(keep):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, os.sysconf("SC_OPEN_MAX"))


def stage(spec: Spec, state_dir: Path, store_root: Path, to_monitor: int, from_monitor: int, err_fd: int,
          stdio: tuple[int, int, int] | None, cgroups: ContainerCgroups, tty_fd: int | None = None) -> None:
    """The monitor's child. Never returns."""
    try:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        for sig in FORWARDED:  # the monitor forwards signals to init; the terminal's go there too
            signal.signal(sig, signal.SIG_IGN)
        if stdio is not None:
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
        keep = [to_monitor, from_monitor, err_fd] + ([tty_fd] if tty_fd is not None else [])
        _close_all_but(3, *keep)  # nothing of the monitor's reaches the container
        # The cgroup namespace is init's to make: its root is where its maker is, and stage stays outside.
        flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWPID
        if spec.network != "host":
            flags |= sc.CLONE_NEWNET
        sc.unshare(flags)
        os.write(to_monitor, b"unshared\n")
        net: dict[str, Any] = json.loads(read_line(from_monitor))
        pid = os.fork()
        if pid == 0:
            os.close(to_monitor)
            os.close(from_monitor)
            init(spec, state_dir, store_root, net, err_fd, cgroups, tty_fd)
        if tty_fd is not None:
            os.close(tty_fd)
        os.write(to_monitor, f"{pid}\n".encode())
        os.close(to_monitor)
        os.close(from_monitor)
        os.close(err_fd)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                os._exit(EXIT_SETUP_FAILED)
        os._exit(status_code(status))
    except BaseException as exc:  # noqa: BLE001 - everything must end in _exit
        fail(err_fd, f"container setup failed: {exc}")


def init(spec: Spec, state_dir: Path, store_root: Path, net: dict[str, Any], err_fd: int, cgroups: ContainerCgroups,
         tty_fd: int | None = None) -> None:
    """PID 1 of the container: sets it up, then execs the workload (or the confined reaper). Never returns."""
    try:
        # Signals that come before execve wait in the mask; prepare_and_exec clears it.
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED + [signal.SIGCHLD])
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        cgroups.join()  # first: what follows counts against the limits; stage, outside, does not
        sc.unshare(sc.CLONE_NEWCGROUP)  # rooted at the container's cgroup, which we are in now
        if tty_fd is None:
            os.setsid()  # with -t, become_controlling makes the session, with the terminal
        if net.get("mode") == "bridge":
            network.setup_container_side(net)
        elif spec.network == "none":
            network.loopback_up()
        if spec.network != "host":
            sc.sethostname(spec.hostname)
        else:
            sc.sethostname(os.uname().nodename)
        if tty_fd is not None:  # imported before pivot_root: the host's files are out of reach after it
            from registry.runtime import terminal
        volumes = list(spec.volumes)
        if spec.init:
            volumes.append((TINI, INIT_PATH, True))  # read-only, as Docker mounts docker-init
        rootfs.build(store_root, spec.lowers, state_dir / "upper", state_dir / "work", state_dir / "rootfs",
                     hostname=spec.hostname, volumes=volumes, new_netns=spec.network != "host",
                     ip=net.get("ip"))
        if tty_fd is not None:
            master, slave = terminal.open_pty()
            terminal.send_master(tty_fd, master)
            os.close(master)
            os.close(tty_fd)
            terminal.become_controlling(slave)
        prepare_and_exec(spec, spec.args, spec.cwd or "/", spec.user, err_fd, with_init=spec.init,
                         keep_parent_death_signal=True)
    except BaseException as exc:  # noqa: BLE001
        fail(err_fd, f"container setup failed: {exc}")
    os._exit(EXIT_SETUP_FAILED)  # not reached


def environment(spec: Spec, home: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in spec.env:
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("HOSTNAME", spec.hostname)
    env.setdefault("HOME", home)
    if spec.tty:
        env.setdefault("TERM", "xterm")  # as Docker does for -t
    return env


def find_executable(name: str, env: dict[str, str]) -> str:
    if "/" in name:
        return name
    for directory in env.get("PATH", "").split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"{name}: executable file not found in $PATH")


def prepare_and_exec(spec: Spec, args: list[str], cwd: str, user: str, err_fd: int, *, with_init: bool = False,
                     keep_parent_death_signal: bool = False) -> None:
    """In the container's filesystem: user, environment, cwd, privileges dropped, then execve of `args`, or
    with `with_init` of the reaper at INIT_PATH with `-- args`, which then has exactly the workload's
    privileges. `keep_parent_death_signal`: still die with the parent (a new uid clears that setting)."""
    for sig in FORWARDED + [signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD]:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        uid, gid, groups, home = users.resolve(user)
    except users.UserError as exc:
        fail(err_fd, str(exc))
    env = environment(spec, home)
    if not args:
        fail(err_fd, "no command: the image has neither Entrypoint nor Cmd, and none was given")
    try:
        os.makedirs(cwd, exist_ok=True)
        os.chdir(cwd)
    except OSError as exc:
        fail(err_fd, f"cannot use working directory {cwd}: {exc.strerror}")
    try:
        path = find_executable(args[0], env)  # with the reaper too: a missing command is our 127, as without
    except FileNotFoundError as exc:
        fail(err_fd, f"exec: {exc}", EXIT_NOT_FOUND)
    if with_init:
        path, args = INIT_PATH, [INIT_PATH, "--", *args]
    _close_all_but(3, err_fd)
    try:
        caps = security.DEFAULT_CAP_MASK
        if not spec.mknod:
            caps &= ~(1 << security.DEFAULT_CAPS["CAP_MKNOD"])
        security.drop_privileges(uid, gid, groups, caps)
        if keep_parent_death_signal:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError as exc:
        fail(err_fd, f"cannot drop privileges: {exc}")
    try:
        os.execve(path, args, env)
    except FileNotFoundError:
        fail(err_fd, f"exec {path}: no such file or directory", EXIT_NOT_FOUND)
    except OSError as exc:
        fail(err_fd, f"exec {path}: {exc.strerror}", EXIT_NOT_EXECUTABLE)

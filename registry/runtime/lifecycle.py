"""Container verbs on top of the state files and the monitor: create, start, stop, kill, pause, rm, logs, exec."""

from __future__ import annotations

import contextlib
import os
import signal
import time

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from collections.abc import Iterator

from registry.runtime import process
from registry.runtime.cgroups import ContainerCgroups
from registry.runtime.monitor import StartError, start_detached, supervise
from registry.runtime.recovery import locked, reconcile, tear_down
from registry.runtime.state import ACTIVE, Spec, State, all_states, new_id, remove_dir
from registry.runtime.store import ImageRecord, ImageStore


class LifecycleError(Exception):
    pass


class NotRunning(StartError):
    """exec into a container that is not running (or paused): one line and exit 1, as docker's client."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1)


def spec_from_image(image: ImageRecord, store: ImageStore, *, command: list[str], entrypoint: str | None,
                    env: list[str], workdir: str | None, user: str | None, hostname: str | None,
                    **options: object) -> Spec:
    """The process to run, by the image config's Entrypoint + Cmd, Env, WorkingDir and User, as Docker does."""
    config = image.config.get("config") or {}
    image_entrypoint = list(config.get("Entrypoint") or [])
    if entrypoint is not None:
        image_entrypoint = [entrypoint] if entrypoint else []
        default_cmd: list[str] = []
    else:
        default_cmd = list(config.get("Cmd") or [])
    args = image_entrypoint + (command or default_cmd)
    merged: dict[str, str] = {}
    for item in list(config.get("Env") or []) + env:
        key, eq, value = item.partition("=")
        if not eq:  # `-e NAME` passes the caller's value
            if key in os.environ:
                merged[key] = os.environ[key]
            continue
        merged[key] = value
    lowers = [store.short_path(layer.diff_id) for layer in reversed(image.layers)]
    return Spec(image=image.reference, image_digest=image.digest, lowers=lowers, args=args,
                env=[f"{k}={v}" for k, v in merged.items()], cwd=workdir or config.get("WorkingDir") or "/",
                user=user or config.get("User") or "0", hostname=hostname or "", **options)  # type: ignore[arg-type]


def create(spec: Spec, name: str | None) -> State:
    existing = {s.name for s in all_states()}
    if name and name in existing:
        raise LifecycleError(f"the container name {name!r} is already in use")
    container_id = new_id()
    name = name or f"c-{container_id[:8]}"
    if not spec.hostname:
        spec.hostname = container_id[:12]
    state = State(id=container_id, name=name, spec=spec)
    state.save()
    return state


def run_foreground(state: State) -> int:
    """Start with the caller's stdio and the CLI as the monitor; the container's exit code."""
    try:
        if state.spec.tty and state.spec.interactive:
            from registry.runtime import terminal
            with terminal.raw_mode(0):
                code = supervise(state, None)
        else:
            code = supervise(state, None)
    finally:
        if state.spec.auto_remove:
            from registry.runtime.volumes import remove_auto_removed
            remove_auto_removed(state)
    return code


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def start(state: State) -> None:
    import fcntl

    # One start at a time: until this one's monitor says it runs (or failed), a second start would see
    # nobody alive, take this one's new cgroups for a dead run's and remove them. A POSIX record lock:
    # the keeper and monitor forked below do not inherit it, so it ends with this call.
    with open(state.dir / "start.lock", "a") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        state = reconcile(state.reload())  # as the start before this one left it
        if state.status in ACTIVE and state.monitor_alive():
            raise LifecycleError(f"container {state.name} is already running")
        (state.dir / "stop-requested").unlink(missing_ok=True)
        start_detached(state)


def _wait_monitor(state: State, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = _current(state)
        if current is None or (current.status == "exited" and not current.monitor_alive()) \
                or not current.monitor_alive():
            return True
        time.sleep(0.02)
    return False


def _current(state: State) -> State | None:
    try:
        return state.reload()
    except (OSError, ValueError):
        return None


def signal_container(state: State, sig: int) -> None:
    """A signal for the workload: to init, which forwards it (SIGKILL and SIGSTOP hit init itself)."""
    if state.init_pid is None or state.status not in ("running", "paused"):
        raise LifecycleError(f"container {state.name} is not running")
    try:
        os.kill(state.init_pid, sig)
    except ProcessLookupError:
        pass


def stop(state: State, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns once the monitor has cleaned up."""
    state = reconcile(state)
    if state.status not in ACTIVE:
        return
    (state.dir / "stop-requested").touch()
    if state.status == "paused":
        unpause(state)
    if state.init_pid:
        try:
            os.kill(state.init_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if _wait_monitor(state, timeout):
        return
    current = _current(state)
    if current and current.init_pid:
        try:
            os.kill(current.init_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if not _wait_monitor(state, 10):
        raise LifecycleError(f"container {state.name} did not stop")


def kill(state: State, sig: int = signal.SIGKILL) -> None:
    state = reconcile(state)
    if sig in (signal.SIGKILL, signal.SIGTERM):
        (state.dir / "stop-requested").touch()  # an explicit kill is not a failure to restart from
    if state.status == "paused" and sig == signal.SIGKILL:
        unpause(state)
    signal_container(state, sig)


def pause(state: State) -> None:
    state = reconcile(state)
    if state.status != "running":
        raise LifecycleError(f"container {state.name} is not running")
    ContainerCgroups.from_json(state.cgroups).freeze(True)
    state.status = "paused"
    state.save()


def unpause(state: State) -> None:
    state = reconcile(state)
    if state.status != "paused":
        raise LifecycleError(f"container {state.name} is not paused")
    ContainerCgroups.from_json(state.cgroups).freeze(False)
    state.status = "running"
    state.save()


def remove(state: State, force: bool = False) -> None:
    state = reconcile(state)
    if state.monitor_alive() and state.status != "exited":
        if not force:
            raise LifecycleError(f"container {state.name} is running: stop it first or use rm -f")
        (state.dir / "stop-requested").touch()
        if state.status == "paused":
            unpause(state)
        if state.init_pid:
            try:
                os.kill(state.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not _wait_monitor(state, 10):
            raise LifecycleError(f"container {state.name} did not stop")
    current = _current(state)
    if current is not None and not current.monitor_alive():
        with contextlib.suppress(FileNotFoundError), locked(current):
            tear_down(current)  # what a crash may have left: cgroups of its id, its veth
    remove_dir(state)


def logs(state: State, follow: bool, out: int = 1) -> None:
    path = state.dir / "container.log"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise LifecycleError(f"container {state.name} has no logs (it ran in the foreground)") from None
    try:
        while True:
            chunk = os.read(fd, 65536)
            if chunk:
                os.write(out, chunk)
                continue
            if not follow:
                return
            current = _current(state)
            current = reconcile(current) if current is not None else None
            if current is None or (current.status == "exited" and not current.monitor_alive()):
                while chunk := os.read(fd, 65536):
                    os.write(out, chunk)
                return
            time.sleep(0.1)
    finally:
        os.close(fd)


NAMESPACES = ["ipc", "uts", "net", "cgroup", "pid", "mnt"]


def exec_in(state: State, args: list[str], *, env: list[str], workdir: str | None, user: str | None,
            tty: bool = False, interactive: bool = False) -> int:
    """Run a process in a running container's namespaces and cgroups; its exit code."""
    from registry.runtime import syscalls as sc
    from registry.runtime import terminal

    state = reconcile(state)
    if state.status == "paused":
        raise NotRunning(f"container {state.name} is paused, unpause it first")
    if state.status != "running" or not state.init_pid:
        raise NotRunning(f"container {state.name} is not running")
    fds = []
    for ns in NAMESPACES:
        if ns in ("cgroup", "net" if state.spec.network == "host" else ""):
            continue
        fds.append(os.open(f"/proc/{state.init_pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC))
    # Entered by the exec'd process itself, once it is in the cgroups.
    cgroup_ns = os.open(f"/proc/{state.init_pid}/ns/cgroup", os.O_RDONLY | os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    spec = Spec(**{**state.spec.__dict__, "env": state.spec.env + env, "tty": tty})
    tty_parent = tty_child = None
    if tty:
        import socket

        tty_parent, tty_child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            # This helper stays outside the cgroups (limits count only the container's processes); its child
            # moves itself in through files opened before /sys/fs/cgroup is the container's view.
            os.close(err_r)
            slave = None
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            cgroups = ContainerCgroups.from_json(state.cgroups)
            join_files = cgroups.open_join_files()
            for fd in fds:
                sc.setns(fd)
            if tty_child is not None:  # a terminal from the container's own devpts
                master, slave = terminal.open_pty()
                terminal.send_master(tty_child.fileno(), master)
                os.close(master)
            child = os.fork()  # only children enter the pid namespace
            if child == 0:
                cgroups.join_by_files(join_files, 0)
                sc.setns(cgroup_ns)  # after the move, as a member of the namespace's root
                if slave is not None:
                    terminal.become_controlling(slave)
                process.prepare_and_exec(spec, args, workdir or spec.cwd or "/", user or spec.user, err_w)
            for fd in [cgroup_ns] + [fd for _, fd in join_files]:
                os.close(fd)
            if slave is not None:
                os.close(slave)
            os.close(err_w)
            for sig in process.FORWARDED:
                signal.signal(sig, lambda s, _f: os.kill(child, s))
            _, status = os.waitpid(child, 0)
            os._exit(process.status_code(status))
        except BaseException as exc:  # noqa: BLE001
            process.fail(err_w, f"exec failed: {exc}")
    for fd in fds + [cgroup_ns]:
        os.close(fd)
    os.close(err_w)
    relay = None
    if tty_parent is not None and tty_child is not None:
        tty_child.close()
        try:
            relay = terminal.Relay(terminal.receive_master(tty_parent), 0 if interactive else None, 1)
        except EOFError:
            pass
        tty_parent.close()
    for sig in process.FORWARDED:
        signal.signal(sig, lambda s, _f: os.kill(pid, s))
    from registry.runtime.monitor import read_all
    message = read_all(err_r)
    os.close(err_r)
    if relay is not None:
        with terminal.raw_mode(0) if interactive else _nothing():
            relay.start()
            _, status = os.waitpid(pid, 0)
            relay.stop()
    else:
        _, status = os.waitpid(pid, 0)
    if message:
        raise StartError(message, process.status_code(status))
    return process.status_code(status)


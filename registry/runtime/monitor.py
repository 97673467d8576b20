"""The monitor: starts a container (process.stage), records it, waits for it, relays its published ports,
applies the restart policy, and tears everything down (cgroups, veth) when it ends.

It stays outside the container's cgroups (the kernel's cgroup.kill and the OOM killer must not take
it). For `run` it is the CLI process itself; for `run -d`/`start` a daemonized process of its own, the
child of a keeper that restarts it if it is killed (see _keep and recovery.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from collections.abc import Callable

    from registry.runtime.portproxy import PortProxy
    from registry.runtime.terminal import Relay

from registry.runtime import process
from registry.runtime.cgroups import CgroupError, ContainerCgroups
from registry.runtime.paths import runtime_root
from registry.runtime.state import ACTIVE, State, all_states


_KILL_POINTS = "REGISTRY_RUNTIME_KILL_POINT" in os.environ  # tests' crash hooks (recovery.kill_point)


class StartError(Exception):
    def __init__(self, message: str, code: int = process.EXIT_SETUP_FAILED) -> None:
        super().__init__(message)
        self.code = code


def stop_requested(state: State) -> bool:
    return (state.dir / "stop-requested").exists()


class Run:
    """One start of the container: from fork to the teardown after it exits."""

    def __init__(self, state: State, stdio: tuple[int, int, int] | None) -> None:
        self.state = state
        self.stdio = stdio
        self.cgroups: ContainerCgroups | None = None
        self.stage_pid: int | None = None
        self.proxy: PortProxy | None = None
        self.relay: Relay | None = None  # the -t terminal relay

    def start(self) -> None:
        """Up to a successful execve (or a StartError with the reason)."""
        state, spec = self.state, self.state.spec
        for sub in ("upper", "work", "rootfs"):
            (state.dir / sub).mkdir(exist_ok=True)
        if spec.ports:
            from registry.runtime.portproxy import PortProxy
            try:
                self.proxy = PortProxy(spec.published())
            except OSError as exc:
                raise StartError(str(exc)) from None
        try:
            try:
                self.cgroups = ContainerCgroups.create(state.id, spec.resources)
            except FileExistsError:  # left by a monitor killed before it could remove them: ours, by the id
                from registry.runtime.recovery import remove_stale_cgroups
                remove_stale_cgroups(state.id)
                self.cgroups = ContainerCgroups.create(state.id, spec.resources)
        except CgroupError as exc:
            self.teardown()
            raise StartError(str(exc)) from None
        state.cgroups = self.cgroups.to_json()
        if _KILL_POINTS:
            from registry.runtime.recovery import kill_point
            kill_point("cgroups-created")
        spec.mknod = self.cgroups.guards_devices
        to_monitor_r, to_monitor_w = os.pipe2(os.O_CLOEXEC)
        from_monitor_r, from_monitor_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        tty_parent = tty_child = None
        if spec.tty:
            import socket  # here only: the module costs ~5 ms of every start

            tty_parent, tty_child = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            os.close(to_monitor_r)
            os.close(from_monitor_w)
            os.close(err_r)
            if tty_parent is not None:
                tty_parent.close()
            process.stage(spec, state.dir, runtime_root(), to_monitor_w, from_monitor_r, err_w, self.stdio,
                          self.cgroups, tty_child.fileno() if tty_child is not None else None)
        self.stage_pid = pid
        for fd in (to_monitor_w, from_monitor_r, err_w):
            os.close(fd)
        if tty_child is not None:
            tty_child.close()
        try:
            try:
                if process.read_line(to_monitor_r) != b"unshared\n":
                    raise StartError("container setup failed")
                net: dict = {}
                if spec.network == "bridge":
                    import fcntl

                    from registry.runtime import network
                    with open(runtime_root() / ".network.lock", "a") as lock:  # one address pick at a time
                        fcntl.flock(lock, fcntl.LOCK_EX)
                        states = all_states()
                        net = network.setup_host_side(state.id, pid, [s.network for s in states if s.id != state.id],
                                                      known_ids=[s.id for s in states])
                        state.network = net
                        state.save()
                        network.refresh_hosts(all_states())  # ours first: init bind-mounts it
                state.network = net
                os.write(from_monitor_w, json.dumps(net).encode() + b"\n")
                init_pid = int(process.read_line(to_monitor_r))
                master = None
                if tty_parent is not None:
                    from registry.runtime.terminal import receive_master
                    master = receive_master(tty_parent)
            except (EOFError, OSError, CgroupError) as exc:
                message = read_all(err_r) or f"container setup failed: {exc}"
                raise StartError(message) from None
            message = read_all(err_r)  # EOF: the workload's execve succeeded
            if message:
                _, status = os.waitpid(pid, 0)
                self.stage_pid = None
                raise StartError(message, process.status_code(status))
            state.init_pid = init_pid  # after execve: signals for the container go to the workload itself
            if master is not None:  # detached with -i: the stdin FIFO `attach` writes to (see _daemon)
                stdin = (0 if spec.interactive else None) if self.stdio is None else \
                    (self.stdio[0] if spec.interactive else None)
                from registry.runtime.terminal import Relay
                self.relay = Relay(master, stdin, 1 if self.stdio is None else self.stdio[1])
                self.relay.start()
            if self.proxy is not None:
                self.proxy.start(net["ip"])
        except BaseException:
            self.teardown()
            raise
        finally:
            for fd in (to_monitor_r, from_monitor_w, err_r):
                os.close(fd)
            if tty_parent is not None:
                tty_parent.close()

    def wait(self) -> int:
        assert self.stage_pid is not None
        while True:
            try:
                _, status = os.waitpid(self.stage_pid, 0)
                break
            except ChildProcessError:
                status = process.EXIT_SETUP_FAILED << 8
                break
        self.stage_pid = None
        return process.status_code(status)

    def teardown(self) -> None:
        """Leave nothing behind: processes, cgroups, the host end of the veth, the published ports."""
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None
        if self.stage_pid is not None:
            try:
                os.kill(self.stage_pid, signal.SIGKILL)
                os.waitpid(self.stage_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.stage_pid = None
        if self.cgroups is not None:
            self.state.oom_killed = self.cgroups.memory_events_oom()
            try:
                self.cgroups.kill_all()
            finally:
                self.cgroups.remove()
        if self.state.network.get("mode") == "bridge":
            import fcntl

            from registry.runtime import network
            with open(runtime_root() / ".network.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                states = all_states()
                network.teardown_host_side(self.state.id, known_ids=[s.id for s in states])
                network.refresh_hosts(states)  # the others' /etc/hosts no longer list this one


def read_all(fd: int) -> str:
    """Everything until EOF: the pipe's writers have all closed it (or exec'd)."""
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(chunk)


def _restart_wanted(state: State, code: int) -> bool:
    policy, _, limit = state.spec.restart.partition(":")
    if stop_requested(state) or policy in ("", "no"):
        return False
    if policy == "always":
        return True
    if policy == "on-failure":
        return code != 0 and (not limit or state.restarts < int(limit))
    return False


def supervise(state: State, stdio: tuple[int, int, int] | None,
              on_started: Callable[[State], None] | None = None) -> int:
    """Start the container, wait for it, restart it by its policy; the exit code of the last run."""
    delay = 0.1
    current: list[Run] = []
    pending: list[int] = []  # signals that came before the container's init was there to take them

    def forward(signum: int, _frame: object) -> None:
        run = current[0] if current else None
        if signum == signal.SIGWINCH and run is not None and run.relay is not None:
            run.relay.resize_from(0)  # the terminal tells its own processes
            return
        if run is None or run.stage_pid is None or not run.state.init_pid:
            pending.append(signum)
            return
        try:
            os.kill(run.state.init_pid, signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in process.FORWARDED}
    try:
        while True:
            run = Run(state, stdio)
            current[:] = [run]
            try:
                run.start()
            except StartError as exc:
                state.status, state.exit_code, state.error = "exited", exc.code, str(exc)
                state.finished, state.init_pid = time.time(), None
                state.save()
                raise
            state.status, state.started, state.error, state.exit_code = "running", time.time(), "", None
            state.set_monitor()
            state.save()
            if on_started is not None:
                on_started(state)
                on_started = None
            while pending:  # signals that came during set-up, for the workload now that it runs
                forward(pending.pop(0), None)
            try:
                code = run.wait()
            finally:
                current[:] = []
                run.teardown()
            state = state.reload() if (state.dir / "state.json").exists() else state
            state.exit_code, state.finished, state.init_pid = code, time.time(), None
            state.oom_killed = run.state.oom_killed
            state.status = "exited"
            if not _restart_wanted(state, code):
                state.save()
                return code
            state.restarts += 1
            state.status = "restarting"
            state.save()
            time.sleep(delay)
            delay = min(delay * 2, 10)
            if stop_requested(state):
                state.status = "exited"
                state.save()
                return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_detached(state: State) -> None:
    """Daemonize a keeper and under it a monitor for the container; return once the monitor has started it
    (or raise why not)."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _keep(state, ready_w)
        finally:
            os._exit(0)
    os.close(ready_w)
    if _KILL_POINTS:
        from registry.runtime.recovery import kill_point
        kill_point("start-forked")
    os.waitpid(pid, 0)
    answer = read_all(ready_r)
    os.close(ready_r)
    if answer != "ok":
        raise StartError(answer or "the monitor died while starting the container")


def _keep(state: State, ready_w: int | None) -> None:
    """The keeper: the monitor's parent, detached and outside the cgroups, and idle (in waitpid) but for this.
    A monitor that ends by itself ends the keeper. One killed by a signal (SIGKILL, the OOM killer) took the
    container with it: the keeper cleans up, records exit 137 and restarts the monitor, which starts the
    container again, if the restart policy says so (as it would have for a container killed by SIGKILL)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    monitor_log = os.open(state.dir / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(devnull, 0)
    os.dup2(monitor_log, 1)
    os.dup2(monitor_log, 2)
    os.close(monitor_log)
    os.chdir("/")
    state.set_keeper()
    delay = 0.1
    while True:
        pid = os.fork()
        if pid == 0:
            try:
                _daemon(state, devnull, ready_w)
            finally:
                os._exit(0)
        if ready_w is not None:  # the monitor tells the starter; EOF if it dies first
            os.close(ready_w)
            ready_w = None
        _, status = os.waitpid(pid, 0)
        if not os.WIFSIGNALED(status):
            return
        try:
            again = _after_crash(state, pid, status)
        except FileNotFoundError:  # removed meanwhile (rm -f)
            return
        if again is None:
            return
        state = again
        print(f"keeper: {state.error}; restarting it ({state.spec.restart})", file=sys.stderr)
        time.sleep(delay)
        delay = min(delay * 2, 10)
        if stop_requested(state):
            state.status = "exited"
            state.save()
            return


def _after_crash(state: State, pid: int, status: int) -> State | None:
    """The keeper's record of a monitor killed by a signal; the state to start again by policy, or None."""
    from registry.runtime.recovery import locked, record_crash

    with locked(state):
        try:
            state = state.reload()
        except (OSError, ValueError):
            return None
        started = state.status in ACTIVE and state.monitor_pid == pid
        reason = (f"the container's monitor was killed by {signal.Signals(os.WTERMSIG(status)).name}"
                  + ("; the container was killed with it" if started else " while starting the container"))
        state = record_crash(state, reason)
        if not started or not _restart_wanted(state, state.exit_code or 0):
            if state.spec.auto_remove:
                from registry.runtime.volumes import remove_auto_removed
                remove_auto_removed(state)
            return None
        state.restarts += 1
        state.status = "restarting"
        state.save()
        return state


def stdin_fifo(state: State) -> Path:
    """A detached `-i` container's stdin: a FIFO in its state directory that `registry attach` writes to."""
    return state.dir / "stdin"


def _daemon(state: State, devnull: int, ready_w: int | None) -> None:
    log = os.open(state.dir / "container.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    stdin = devnull
    if state.spec.interactive:
        fifo = stdin_fifo(state)
        if not fifo.exists():
            os.mkfifo(fifo, 0o600)
        # Opened for reading and writing: the container never sees end-of-file while its monitor lives,
        # however many attaches come and go (Docker keeps an -i container's stdin open the same way).
        stdin = os.open(fifo, os.O_RDWR)

    told = ready_w is None

    def started(_: State) -> None:
        nonlocal told
        told = True
        if ready_w is not None:
            try:
                os.write(ready_w, b"ok")
            except BrokenPipeError:  # the starter is gone (killed): the container runs on regardless
                pass
            os.close(ready_w)

    state.set_monitor()
    try:
        supervise(state, (stdin, log, log), on_started=started)
    except BaseException as exc:  # noqa: BLE001
        print(f"monitor: {exc!r}", file=sys.stderr)
        if not told and ready_w is not None:
            with contextlib.suppress(BrokenPipeError):
                why = str(exc) if isinstance(exc, StartError) else f"monitor failed: {exc}"
                os.write(ready_w, why.encode())
    finally:
        state = state.reload() if (state.dir / "state.json").exists() else state
        if state.spec.auto_remove and state.status == "exited":
            from registry.runtime.volumes import remove_auto_removed
            remove_auto_removed(state)

"""`registry attach`: the caller's terminal on a running detached container, as `docker attach`.

Output is the container's log from the moment of attaching (stdout and stderr, as the monitor
writes them). Input goes to the container's stdin when it was started with `-i` (a FIFO its monitor
holds open, so detaching never closes it). Signals the caller gets are passed to the container
(docker's --sig-proxy); with `--no-stdin` nothing is read. The exit status is the container's.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from registry.runtime.lifecycle import LifecycleError, signal_container
from registry.runtime.monitor import stdin_fifo
from registry.runtime.recovery import reconcile
from registry.runtime.state import State

PROXIED = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
           signal.SIGWINCH]


def _pump_stdin(fifo: int) -> None:
    """Caller's stdin -> the container's, until the caller's ends (the container's stays open)."""
    try:
        while data := os.read(0, 65536):
            os.write(fifo, data)
    except OSError:
        pass


def _ended(state: State) -> State | None:
    current = reconcile(state.reload())
    return current if current.status == "exited" and not current.monitor_alive() else None


def attach(state: State, no_stdin: bool = False, sig_proxy: bool = True, out: int = 1,
           poll: float = 0.05) -> int:
    """Stream the container's output until it exits; its exit code."""
    state = reconcile(state)
    if state.status == "paused":
        raise LifecycleError(f"container {state.name} is paused, unpause it first")
    if state.status not in ("running", "restarting") or not state.monitor_alive():
        raise LifecycleError(f"cannot attach to a stopped container {state.name}, start it first")
    if sig_proxy:  # before the log is open: once it is, signals are the container's
        def proxy(signum: int, _frame: object) -> None:
            try:
                signal_container(state.reload(), signum)
            except (LifecycleError, OSError, ValueError):
                pass
        for sig in PROXIED:
            signal.signal(sig, proxy)
    else:  # Ctrl-C detaches, also when whoever started us ignored SIGINT (a background job of a shell)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    log = os.open(state.dir / "container.log", os.O_RDONLY)
    os.lseek(log, 0, os.SEEK_END)  # what it prints from now on, as docker attach
    if state.spec.interactive and not no_stdin:
        fifo = os.open(stdin_fifo(state), os.O_WRONLY)
        threading.Thread(target=_pump_stdin, args=(fifo,), name="attach-stdin", daemon=True).start()
    try:
        while True:
            chunk = os.read(log, 65536)
            if chunk:
                os.write(out, chunk)
                continue
            ended = _ended(state)
            if ended is not None:
                while chunk := os.read(log, 65536):
                    os.write(out, chunk)
                return ended.exit_code if ended.exit_code is not None else 255
            time.sleep(poll)
    finally:
        os.close(log)

"""After a crash: a container whose state says it runs but whose monitor (and keeper) are gone.

SIGKILL of the monitor takes the container with it (PDEATHSIG from monitor to stage to PID 1), but no one is
left to record that or to remove its cgroups and veth. `reconcile` does it, once, under the container's lock:
every verb that reads or changes a container's status calls it first, so `ps`, `inspect`, `start`, `rm`
and `wait` tell the same story. The keeper (monitor.py) calls `record_crash` itself, then restarts by policy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from collections.abc import Iterator

from registry.runtime.cgroups import ContainerCgroups, Hierarchies
from registry.runtime.paths import cgroup_parent
from registry.runtime.state import ACTIVE, State

KILLED_WITH_MONITOR = 128 + signal.SIGKILL  # 137: what the container got when its monitor went


@contextlib.contextmanager
def locked(state: State) -> Iterator[None]:
    """One reconciler at a time per container (two `ps` at once, or `ps` and the keeper). FileNotFoundError
    once the container is removed (its directory is never made again here)."""
    import fcntl  # not at import time: `run` loads this module and never locks

    with open(state.dir / "recovery.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def reconcile(state: State) -> State:
    """The container's true state: if its state says running/paused/restarting but no monitor or keeper is
    alive, clean up what is left and record it as exited (137) with the reason; else the state as it is."""
    if state.status not in ACTIVE or state.monitor_alive():
        return state
    try:
        with locked(state):
            try:
                current = state.reload()
            except (OSError, ValueError):
                return state  # being removed
            if current.status not in ACTIVE or current.monitor_alive():
                return current
            current = record_crash(current, "the container's monitor was killed; the container was killed with it")
            if current.spec.auto_remove:  # --rm holds after a crash too: the container and its volumes go
                from registry.runtime.volumes import remove_auto_removed
                remove_auto_removed(current)
            return current
    except FileNotFoundError:
        return state  # removed meanwhile


def record_crash(state: State, reason: str) -> State:
    """Tear down what a dead monitor left and record exit 137 with the reason (the caller holds the lock)."""
    tear_down(state)
    state.status, state.exit_code, state.error = "exited", KILLED_WITH_MONITOR, reason
    state.finished, state.init_pid = time.time(), None
    state.save()
    return state


def tear_down(state: State) -> None:
    """Kill whatever is left in the container's cgroups, remove them (those the state names and any others of
    its id, made before the state was saved), and the host side of its network."""
    from registry.runtime.monitor import Run

    known = ContainerCgroups.from_json(state.cgroups) if state.cgroups else ContainerCgroups({}, {})
    stale = stale_cgroups(state.id)
    for key, path in stale.dirs.items():
        if path not in known.dirs.values():
            known.dirs[key] = path
    network = state.network
    if state.spec.network == "bridge" and not network:  # killed before the state recorded its veth
        state.network = {"mode": "bridge"}
    run = Run(state, None)
    run.cgroups = known if known.dirs else None
    try:
        run.teardown()
    finally:
        state.network = network if network.get("mode") != "bridge" else {}


def stale_cgroups(container_id: str) -> ContainerCgroups:
    """The cgroup directories of this container id that exist in any hierarchy (v2 and each v1 mount)."""
    hier = Hierarchies.detect()
    parent = cgroup_parent()
    dirs: dict[str, str] = {}
    if hier.v2_root is not None and (leaf := hier.v2_root / parent / container_id).is_dir():
        dirs["v2"] = str(leaf)
    seen: set[Path] = set()
    for name, mount in sorted(hier.v1.items()):
        if mount in seen:
            continue
        seen.add(mount)
        if (leaf := mount / parent / container_id).is_dir():
            dirs[name] = str(leaf)
    # freeze() looks for "freezer" on v1: make sure a freezer hierarchy keeps that name
    for name, mount in hier.v1.items():
        if name == "freezer" and (leaf := mount / parent / container_id).is_dir():
            dirs = {k: v for k, v in dirs.items() if v != str(leaf)}
            dirs["freezer"] = str(leaf)
    return ContainerCgroups(dirs, {})


def remove_stale_cgroups(container_id: str) -> None:
    """Before a start: cgroups of this id left by a monitor killed mid-start (or a crash) go first."""
    stale = stale_cgroups(container_id)
    if stale.dirs:
        try:
            stale.kill_all()
        finally:
            stale.remove()


def kill_point(name: str) -> None:
    """Tests' hook: REGISTRY_RUNTIME_KILL_POINT=NAME makes the process SIGKILL itself here, as a crash would
    (NAME:group kills its whole process group: a detached monitor with its keeper)."""
    wanted = os.environ.get("REGISTRY_RUNTIME_KILL_POINT")
    if not wanted or wanted.partition(":")[0] != name:
        return
    if wanted.endswith(":group"):
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)

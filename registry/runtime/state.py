"""A container's record on disk (ROOT/containers/<id>/state.json): what to run and what is running.

Written atomically by whoever changes it (the monitor while it runs; the CLI otherwise), so it
survives the CLI process and tells `ps`, `stop`, `exec` and `rm` where everything is.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from typing import Any

from registry.runtime.cgroups import Resources
from registry.runtime.paths import containers_dir
from registry.runtime.records import Record, as_json


ACTIVE = ("running", "paused", "restarting")  # statuses of a container whose monitor should be alive


class Spec(Record):
    def __init__(self, image: str, image_digest: str, lowers: list[str], args: list[str], env: list[str], cwd: str,
                 user: str, hostname: str, network: str = "none", ports: list[tuple[str, int, int]] | None = None,
                 volumes: list[tuple[str, str, bool]] | None = None, resources: Resources | None = None,
                 restart: str = "no", auto_remove: bool = False, tty: bool = False, interactive: bool = False,
                 init: bool = False, mknod: bool = True) -> None:
        self.image = image
        self.image_digest = image_digest
        self.lowers = lowers              # short layer paths relative to the store, top-most first
        self.args = args
        self.env = env
        self.cwd = cwd
        self.user = user
        self.hostname = hostname
        self.network = network            # none | host | bridge
        self.ports = ports or []          # (host address, host port, container port)
        self.volumes = volumes or []      # (host path, container path, read-only)
        self.resources = resources or Resources()
        self.restart = restart            # no | on-failure[:N] | always
        self.auto_remove = auto_remove
        self.tty = tty                    # a pseudo-terminal from the container's devpts as stdio
        self.interactive = interactive    # the caller's stdin goes to the container
        self.init = init                  # --init: tini-static as PID 1, confined like the workload, reaps
        self.mknod = mknod                # CAP_MKNOD only where a devices cgroup limits what nodes can be opened

    def published(self) -> list[tuple[str, int, int]]:
        """-p mappings as (host address, host port, container port), "" meaning 0.0.0.0; records from
        before addresses were kept hold (host port, container port) on 127.0.0.1."""
        return [tuple(p) if len(p) == 3 else ("127.0.0.1", *p) for p in self.ports]  # type: ignore[misc]


class State(Record):
    def __init__(self, id: str, name: str, spec: Spec, status: str = "created", created: float | None = None,
                 started: float | None = None, finished: float | None = None, exit_code: int | None = None,
                 oom_killed: bool = False, monitor_pid: int | None = None, keeper_pid: int | None = None,
                 monitor_since: int | None = None, keeper_since: int | None = None, init_pid: int | None = None,
                 cgroups: dict[str, Any] | None = None, network: dict[str, Any] | None = None, restarts: int = 0,
                 error: str = "") -> None:
        self.id = id
        self.name = name
        self.spec = spec
        self.status = status                  # created | running | paused | restarting | exited
        self.created = time.time() if created is None else created
        self.started = started
        self.finished = finished
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.monitor_pid = monitor_pid
        self.keeper_pid = keeper_pid          # a detached monitor's parent, which restarts it if it is killed
        self.monitor_since = monitor_since    # their start times (clock ticks after boot): a reused pid has another
        self.keeper_since = keeper_since
        self.init_pid = init_pid              # the container's PID 1, as the host sees it
        self.cgroups = cgroups or {}
        self.network = network or {}          # veth, addresses
        self.restarts = restarts
        self.error = error

    @property
    def dir(self) -> Path:
        return containers_dir() / self.id

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f"state.json.{os.getpid()}"
        tmp.write_text(json.dumps(as_json(self), indent=1))
        os.replace(tmp, self.dir / "state.json")

    @classmethod
    def load(cls, container_id: str) -> State:
        raw = json.loads((containers_dir() / container_id / "state.json").read_text())
        spec = raw.pop("spec")
        resources = Resources(**spec.pop("resources"))
        resources.device_read_bps = [tuple(x) for x in resources.device_read_bps]  # type: ignore[misc]
        resources.device_write_bps = [tuple(x) for x in resources.device_write_bps]  # type: ignore[misc]
        spec["ports"] = [tuple(p) for p in spec["ports"]]
        spec["volumes"] = [tuple(v) for v in spec["volumes"]]
        return cls(spec=Spec(resources=resources, **spec), **raw)

    def reload(self) -> State:
        return State.load(self.id)

    def monitor_alive(self) -> bool:
        """Whether someone still answers for the container: its monitor, or the keeper that restarts it."""
        return _alive(self.monitor_pid, self.monitor_since) or _alive(self.keeper_pid, self.keeper_since)

    def set_monitor(self) -> None:
        """This process is the container's monitor."""
        self.monitor_pid, self.monitor_since = os.getpid(), started_at(os.getpid())

    def set_keeper(self) -> None:
        """This process is the container's keeper."""
        self.keeper_pid, self.keeper_since = os.getpid(), started_at(os.getpid())


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (field 3, the state, first), or None if there is no such pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def started_at(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22, starttime


def _alive(pid: int | None, since: int | None = None) -> bool:
    """Whether the process runs: not a zombie, and (if `since` is known) not another one under a reused pid
    (after a reboot, say)."""
    if pid is None:
        return False
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return False
    return since is None or int(fields[19]) == since


def new_id() -> str:
    return os.urandom(32).hex()


def all_states() -> list[State]:
    out: list[State] = []
    root = containers_dir()
    if not root.is_dir():
        return out
    for entry in root.iterdir():
        try:
            out.append(State.load(entry.name))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return sorted(out, key=lambda s: s.created)


class NotFound(Exception):
    pass


def find(name_or_id: str) -> State:
    """By full id, unique id prefix, or name."""
    states = all_states()
    for state in states:
        if state.name == name_or_id or state.id == name_or_id:
            return state
    matches = [s for s in states if s.id.startswith(name_or_id)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise NotFound(f"{name_or_id!r} matches several containers")
    raise NotFound(f"no such container: {name_or_id}")


def remove_dir(state: State) -> None:
    shutil.rmtree(state.dir, ignore_errors=True)

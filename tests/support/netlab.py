"""A test network that behaves like a real one: a network namespace behind a veth pair (an address
outside 127/8, so clients treat it as a real remote host), links that split and delay bytes
(tests/support/splitter.py), and client trust in a CA made by the test, written where users write it.

Two kinds of site hold the servers:
- `veth`: a network namespace of its own, reached from the root namespace (where dockerd, containerd,
  skopeo and podman run) over a veth pair with a free private /30, shaped with `tbf` when it can be;
- `loopback`: 127.0.0.1 in the root namespace, for hosts that cannot make namespaces (docker then
  treats the registry as insecure and skips certificate checks; the other clients still verify).
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator, Sequence

from tests.support.process import terminate
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
POOL = ipaddress.ip_network("10.237.0.0/16")  # not the runtime's 10.213/16; each /30 is checked before use
NETNS_PREFIX = "netlab-"
DOCKER_CERTS_D = Path("/etc/docker/certs.d")          # docker, and `registry pull`
CONTAINERS_CERTS_D = Path("/etc/containers/certs.d")  # skopeo, podman
SHAPING = ["tbf", "rate", "200mbit", "burst", "64kb", "latency", "50ms"]


class Unavailable(Exception):
    """This host cannot make the namespace or the veth pair (the message says why)."""


def _run(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise Unavailable(f"`{' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


# -- network namespaces ---------------------------------------------------------------------------

def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace has an address in or a route to."""
    used = []
    for line in _run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        match = re.search(r"inet (\S+)", line)
        if match:
            used.append(ipaddress.ip_network(match.group(1), strict=False))
    for line in _run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("broadcast", "local", "unicast"):
            first = line.split()[1]
        if first == "default" or not first[:1].isdigit():
            continue
        try:
            used.append(ipaddress.ip_network(first, strict=False))
        except ValueError:
            continue
    return used


def free_subnet(pool: ipaddress.IPv4Network = POOL) -> ipaddress.IPv4Network:
    """A /30 of `pool` that overlaps nothing this host uses, picked at random (other sessions pick too)."""
    used = _used_networks()
    candidates = list(pool.subnets(new_prefix=30))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise Unavailable(f"no free /30 left in {pool}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> list[str]:
    """Namespaces of earlier sessions that were killed before cleaning up (their pytest pid is gone)."""
    removed = []
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(re.escape(NETNS_PREFIX) + r"(\d+)-[0-9a-f]+", name)
        if match and not _pid_alive(int(match.group(1))):
            _run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


@dataclass
class Namespace:
    """A network namespace joined to the root namespace by a veth pair on a private /30.

    `client_address` is the root side (dockerd and the other clients), `server_address` the side in
    the namespace, where the servers listen.
    """
    name: str
    host_if: str
    peer_if: str
    subnet: ipaddress.IPv4Network
    shaped: str = ""  # the qdisc on both ends, or why there is none

    @property
    def client_address(self) -> str:
        return str(list(self.subnet.hosts())[0])

    @property
    def server_address(self) -> str:
        return str(list(self.subnet.hosts())[1])

    @property
    def wrap(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    @classmethod
    def create(cls) -> Namespace:
        if os.geteuid() != 0:
            raise Unavailable("network namespaces need root")
        if shutil.which("ip") is None:
            raise Unavailable("`ip` (iproute2) is not installed")
        remove_stale_namespaces()
        tag = uuid.uuid4().hex[:6]
        ns = cls(f"{NETNS_PREFIX}{os.getpid()}-{tag}", f"nlh{tag}", f"nlp{tag}", free_subnet())
        _run(["ip", "netns", "add", ns.name])
        try:
            prefix = f"/{ns.subnet.prefixlen}"
            _run(["ip", "link", "add", ns.host_if, "type", "veth", "peer", "name", ns.peer_if])
            _run(["ip", "link", "set", ns.peer_if, "netns", ns.name])
            _run(["ip", "addr", "add", ns.client_address + prefix, "dev", ns.host_if])
            _run(["ip", "link", "set", ns.host_if, "up"])
            _run([*ns.wrap, "ip", "addr", "add", ns.server_address + prefix, "dev", ns.peer_if])
            _run([*ns.wrap, "ip", "link", "set", ns.peer_if, "up"])
            _run([*ns.wrap, "ip", "link", "set", "lo", "up"])
            ns._shape()
            ns._wait_reachable()
        except BaseException:
            ns.remove()
            raise
        return ns

    def _shape(self) -> None:
        """A rate-limited link both ways (tbf: netem does not exist in every kernel); optional."""
        if shutil.which("tc") is None:
            self.shaped = "unshaped: `tc` is not installed"
            return
        for prefix, dev in (([], self.host_if), (self.wrap, self.peer_if)):
            result = _run([*prefix, "tc", "qdisc", "add", "dev", dev, "root", *SHAPING], check=False)
            if result.returncode != 0:
                self.shaped = f"unshaped: tc says {result.stderr.strip()}"
                return
        self.shaped = " ".join(SHAPING)

    def _wait_reachable(self, timeout: float = 10) -> None:
        """A listener in the namespace answers a connect from the root namespace (DAD, link up)."""
        probe = subprocess.Popen([*self.wrap, sys.executable, "-c",
                                  "import socket,sys; s=socket.socket(); "
                                  f"s.bind(('{self.server_address}', 0)); s.listen(); "
                                  "print(s.getsockname()[1], flush=True); s.accept()"],
                                 stdout=subprocess.PIPE, text=True)
        try:
            port = int(probe.stdout.readline())  # type: ignore[union-attr]
            deadline = time.monotonic() + timeout
            while True:
                try:
                    socket.create_connection((self.server_address, port), timeout=1).close()
                    return
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise Unavailable(f"{self.server_address} in {self.name} unreachable over the veth: "
                                          f"{exc}") from None
                    time.sleep(0.05)
        finally:
            terminate(probe, 5)

    def remove(self) -> None:
        """Deleting the namespace destroys the veth pair with it (once nothing runs inside)."""
        _run(["ip", "netns", "del", self.name], check=False)
        deadline = time.monotonic() + 10
        while Path(f"/sys/class/net/{self.host_if}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _run(["ip", "link", "del", self.host_if], check=False)

    def leftovers(self) -> list[str]:
        left = []
        if self.name in _run(["ip", "netns", "list"], check=False).stdout.split():
            left.append(f"netns {self.name}")
        if Path(f"/sys/class/net/{self.host_if}").exists():
            left.append(f"link {self.host_if}")
        return left


@dataclass
class Site:
    """Where the servers of a test run and the address the clients reach them at."""
    kind: str                              # "veth" or "loopback"
    address: str                           # listen address of every server at the site
    namespace: Namespace | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def wrap(self) -> list[str]:
        return self.namespace.wrap if self.namespace else []

    @property
    def networks(self) -> list[str]:
        """The networks clients and links reach the servers from, besides loopback."""
        return [str(self.namespace.subnet)] if self.namespace else []

    def port(self) -> int:
        """A port to listen on: free on loopback; in a fresh namespace every port is free."""
        return free_port()

    def describe(self) -> str:
        if self.namespace:
            return (f"netns {self.namespace.name}, servers at {self.address}, clients at "
                    f"{self.namespace.client_address} ({self.namespace.shaped})")
        return f"loopback, servers at {self.address}"


# -- the splitting link ------------------------------------------------------------------------

_TOTAL = re.compile(r"total conns=(\d+) up=(\d+)/(\d+) down=(\d+)/(\d+)")


@dataclass(frozen=True)
class LinkStats:
    """What a splitter has carried since it started; `b - a` is what crossed between two readings."""
    connections: int = 0
    up_bytes: int = 0
    up_pieces: int = 0
    down_bytes: int = 0
    down_pieces: int = 0

    def __sub__(self, other: LinkStats) -> LinkStats:
        return LinkStats(*(getattr(self, f) - getattr(other, f) for f in self.__dataclass_fields__))


class Splitter:
    """tests/support/splitter.py as a process at a site, forwarding `host` -> `target`."""

    def __init__(self, site: Site, target: str, log_path: Path, *, min_piece: int = 1, max_piece: int = 16384,
                 min_delay: float = 0.0, max_delay: float = 0.002, seed: int | None = None) -> None:
        self.site = site
        self.target = target
        self.port = site.port()
        self.log_path = Path(log_path)
        self.args = ["--min-piece", min_piece, "--max-piece", max_piece, "--min-delay", min_delay,
                     "--max-delay", max_delay, *(["--seed", seed] if seed is not None else [])]
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"{self.site.address}:{self.port}"

    def start(self, timeout: float = 15) -> Splitter:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.site.wrap, sys.executable, "-m", "tests.support.splitter", "--listen", self.host,
                 "--target", self.target, *map(str, self.args)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while "listening" not in self.log_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"splitter {self.host} -> {self.target} did not start:\n{self.log_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        terminate(self.proc)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stats(self, settle: float = 0.5) -> LinkStats:
        """The latest totals (after `settle` seconds, so the last report is out)."""
        time.sleep(settle)
        found = _TOTAL.findall(self.log_text())
        return LinkStats(*map(int, found[-1])) if found else LinkStats()

    def problems(self) -> list[str]:
        return [line for line in self.log_text().splitlines()
                if not line.startswith(("listening", "total conns="))]


# -- trust, the way users give it ---------------------------------------------------------------

@contextmanager
def trusted(certs_d: Path, host: str, ca_file: Path) -> Iterator[Path]:
    """CERTS_D/HOST:PORT/ca.crt for the time of the block (docker's and containers' layout); whatever
    this wrote is removed afterwards, also when the block fails."""
    directory = certs_d / host
    made = [p for p in (certs_d.parent, certs_d, directory) if not p.exists()]
    target = directory / "ca.crt"
    if target.exists():
        raise AssertionError(f"{target} exists already: another registry on {host}? (not touching it)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca_file, target)
        yield target
    finally:
        target.unlink(missing_ok=True)
        for path in reversed(made):  # innermost first, only directories this made, only when empty
            try:
                path.rmdir()
            except OSError:
                pass

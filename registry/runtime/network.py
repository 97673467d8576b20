"""Container networking: `none` (loopback only), `host`, and `bridge`, which is Docker's default network:

- one Linux bridge per runtime root (`registry0` for the default root) with a /24 from 10.213.0.0/16 that no
  host address or route uses; each container's veth is a port of it, with an address of the /24 and a default
  route via the bridge's address, so containers reach each other by address;
- outbound through NAT: masquerade of the /24 out of any interface but the bridge, in an nftables table of
  our own (`inet registry_runtime_<bridge>`), or, where the host has no nftables, a nat chain of our own
  hooked into iptables' POSTROUTING; ip_forward on; where iptables' FORWARD policy is DROP (Docker's), a
  chain of our own first in it accepts the bridge's traffic out and the replies;
- names: each container's /etc/hosts (a file in its state dir, bind-mounted) lists the running containers
  of the bridge, rewritten in place on every start and removal (no DNS server of our own);
- the bridge and its rules go when its last container does; a start or a removal also deletes the veths of
  containers that are gone (their monitor was killed), so a crash leaves nothing for long.

All changes of the bridge, its rules and addresses happen under one host-wide lock (two runtime roots on one
host pick different subnets).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    import subprocess
    from typing import Any
    from collections.abc import Iterable, Iterator

POOL = "10.213.0.0/16"
PREFIX = 24
LOCK = "/run/registry-runtime-network.lock"
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_AF_INET = 2  # socket.AF_INET: the socket module is for the bridge paths, which pyroute2 brings it to


class NetworkError(Exception):
    pass


def loopback_up() -> None:
    """`ip link set lo up` in the current namespace, without importing pyroute2 (fast path for none)."""
    from registry.runtime.syscalls import udp_socket

    sock = udp_socket()
    try:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    finally:
        os.close(sock)


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def bridge_name() -> str:
    """`registry0` for the default root; another root (a test's) gets a bridge of its own."""
    import hashlib

    from registry.runtime.paths import DEFAULT_ROOT, runtime_root

    root = str(runtime_root())
    if root.rstrip("/") == DEFAULT_ROOT:
        return "registry0"
    return "rrbr" + hashlib.sha256(root.encode()).hexdigest()[:8]  # 'r' is no hex digit: no veth is named so


def host_names(container_id: str) -> tuple[str, str]:
    return f"rr{container_id[:10]}", f"rp{container_id[:10]}"


def _used_networks(ipr: Any) -> list[Any]:
    import ipaddress

    used = []
    for addr in ipr.get_addr(family=_AF_INET):
        ip = addr.get_attr("IFA_ADDRESS")
        if ip:
            used.append(ipaddress.ip_network(f"{ip}/{addr['prefixlen']}", strict=False))
    for route in ipr.get_routes(family=_AF_INET, table=254) + ipr.get_routes(family=_AF_INET, table=255):
        dst = route.get_attr("RTA_DST")
        if dst and route["dst_len"] > 0:
            used.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
    return used


def _bridge_subnet(ipr: Any, bridge: str) -> tuple[str, int] | None:
    """The bridge's address and prefix, if the bridge is there with one."""
    for index in ipr.link_lookup(ifname=bridge):
        for addr in ipr.get_addr(family=_AF_INET, index=index):
            return addr.get_attr("IFA_ADDRESS"), addr["prefixlen"]
    return None


def _create_bridge(ipr: Any, bridge: str) -> tuple[str, int]:
    import ipaddress
    import random

    used = _used_networks(ipr)
    candidates: list[ipaddress.IPv4Network] = list(ipaddress.IPv4Network(POOL).subnets(new_prefix=PREFIX))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(u) for u in used):
            break
    else:
        raise NetworkError(f"no free /{PREFIX} left in {POOL}")
    gateway = str(next(subnet.hosts()))
    for index in ipr.link_lookup(ifname=bridge):  # there without an address: a half-made one
        ipr.link("del", index=index)
    nat_up(bridge, str(subnet))  # first: a bridge with an address always has its rules (a start skips them)
    ipr.link("add", ifname=bridge, kind="bridge")
    index = ipr.link_lookup(ifname=bridge)[0]
    ipr.addr("add", index=index, address=gateway, prefixlen=PREFIX)
    ipr.link("set", index=index, state="up")
    return gateway, PREFIX


def _bridge_ports(ipr: Any, bridge: str) -> list[str]:
    indexes = ipr.link_lookup(ifname=bridge)
    if not indexes:
        return []
    return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links() if link.get_attr("IFLA_MASTER") == indexes[0]]


# -- NAT --------------------------------------------------------------------------------------------

def firewall() -> str:
    """`nft` where the host has nftables (the nft tool and a kernel that answers), else `iptables`."""
    import subprocess

    for tool, probe in (("nft", ["nft", "list", "tables"]), ("iptables", ["iptables", "-t", "nat", "-S"])):
        try:
            if subprocess.run(probe, capture_output=True, timeout=10).returncode == 0:
                return tool
        except (OSError, subprocess.TimeoutExpired):
            continue
    raise NetworkError("neither nft nor iptables works on this host: no NAT for bridge networking")


def nft_table(bridge: str) -> str:
    return f"registry_runtime_{bridge}"


def iptables_chain(bridge: str) -> str:
    return f"RR-{bridge}".upper()[:28]


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    import subprocess  # here, not above: a container without a bridge never runs a command

    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetworkError(f"`{' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def nat_up(bridge: str, subnet: str, tool: str | None = None) -> None:
    """Masquerade the subnet out of every other interface; let its traffic be forwarded both ways.

    `tool` ("nft" or "iptables") only for tests: otherwise detected."""
    import subprocess

    if (tool or firewall()) == "nft":
        table = nft_table(bridge)
        # add+delete+define in one transaction: our own table only, replaced atomically, never others'.
        script = (f"add table inet {table}\ndelete table inet {table}\n"
                  f"table inet {table} {{\n"
                  f" chain postrouting {{\n"
                  f"  type nat hook postrouting priority srcnat; policy accept;\n"
                  f"  ip saddr {subnet} oifname != \"{bridge}\" masquerade\n"
                  f" }}\n"
                  f" chain forward {{\n"
                  f"  type filter hook forward priority filter; policy accept;\n"
                  f"  iifname \"{bridge}\" accept\n"
                  f"  oifname \"{bridge}\" ct state established,related accept\n"
                  # Nothing else reaches a container from outside: only -p publishes a port (as Docker).
                  f"  oifname \"{bridge}\" drop\n"
                  f" }}\n"
                  f"}}\n")
        result = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise NetworkError(f"nft could not create table inet {table}: {result.stderr.strip()}")
        if _iptables_forward_drops():
            # iptables' FORWARD drops what it does not accept (Docker sets that policy), and a packet must
            # pass every base chain of the hook: ours accepting it is not enough, so accept it there too.
            _iptables_forward(bridge)
    else:
        chain = iptables_chain(bridge)
        _run(["iptables", "-t", "nat", "-N", chain], check=False)
        _run(["iptables", "-t", "nat", "-F", chain])
        _run(["iptables", "-t", "nat", "-A", chain, "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"])
        if _run(["iptables", "-t", "nat", "-C", "POSTROUTING", "-j", chain], check=False).returncode != 0:
            _run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-j", chain])
        _iptables_forward(bridge)
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:  # Docker turns it on too, and leaves it on
        f.write("1")


def _iptables_forward(bridge: str) -> None:
    """Our chain first in iptables' FORWARD: the bridge's traffic out (to other containers or through NAT)
    and the replies to it are accepted, whatever the chain's policy; nothing else reaches a container
    from outside (only -p publishes a port, through a proxy on the host, as Docker)."""
    chain = iptables_chain(bridge)
    _run(["iptables", "-t", "filter", "-N", chain], check=False)
    _run(["iptables", "-t", "filter", "-F", chain])
    _run(["iptables", "-t", "filter", "-A", chain, "-i", bridge, "-j", "ACCEPT"])
    _run(["iptables", "-t", "filter", "-A", chain, "-o", bridge, "-m", "conntrack", "--ctstate",
          "RELATED,ESTABLISHED", "-j", "ACCEPT"])
    _run(["iptables", "-t", "filter", "-A", chain, "-o", bridge, "-j", "DROP"])
    if _run(["iptables", "-t", "filter", "-C", "FORWARD", "-j", chain], check=False).returncode != 0:
        _run(["iptables", "-t", "filter", "-I", "FORWARD", "1", "-j", chain])


def _iptables_forward_drops() -> bool:
    """iptables' FORWARD chain exists with a DROP policy (as Docker leaves it)."""
    import subprocess

    try:
        listed = _run(["iptables", "-t", "filter", "-S", "FORWARD"], check=False)
    except (OSError, subprocess.TimeoutExpired):  # no iptables at all: nothing of it to pass
        return False
    return listed.returncode == 0 and "-P FORWARD DROP" in listed.stdout.splitlines()


def nat_down(bridge: str) -> None:
    """Remove our table or chain (each tool's, whichever is there), nothing else."""
    import subprocess

    with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # a host without nft has no table of ours
        if _run(["nft", "list", "table", "inet", nft_table(bridge)], check=False).returncode == 0:
            _run(["nft", "delete", "table", "inet", nft_table(bridge)], check=False)
    chain = iptables_chain(bridge)
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        for table, hook in (("nat", "POSTROUTING"), ("filter", "FORWARD")):
            while _run(["iptables", "-t", table, "-D", hook, "-j", chain], check=False).returncode == 0:
                pass
            _run(["iptables", "-t", table, "-F", chain], check=False)
            _run(["iptables", "-t", table, "-X", chain], check=False)


# -- containers -------------------------------------------------------------------------------------

def _sweep(ipr: Any, bridge: str, known_ids: Iterable[str]) -> None:
    """Delete the bridge's veths of containers whose state is gone (removed while a killed monitor's
    namespace lingered); a live container's veth is never touched, whatever its status says."""
    live = {host_names(i)[0] for i in known_ids}
    for name in _bridge_ports(ipr, bridge):
        if name.startswith("rr") and name not in live:
            for index in ipr.link_lookup(ifname=name):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=index)


def setup_host_side(container_id: str, netns_pid: int, others: list[dict[str, Any]],
                    known_ids: Iterable[str] | None = None) -> dict[str, Any]:
    """Attach a new veth pair to the bridge (made if needed) with one end in the container's namespace.

    `others` are the network records of the root's other containers (addresses in use unless their veth is
    gone); `known_ids` all containers with a state in this root (any other veth on the bridge is a leftover).
    Returns what the container side needs.
    """
    import ipaddress

    from pyroute2 import IPRoute

    bridge = bridge_name()
    host_if, peer_if = host_names(container_id)
    with host_lock(), IPRoute() as ipr:
        if known_ids is not None:
            _sweep(ipr, bridge, [*known_ids, container_id])
        try:
            found = _bridge_subnet(ipr, bridge)
            gateway, prefix = found if found else _create_bridge(ipr, bridge)
            subnet = ipaddress.ip_network(f"{gateway}/{prefix}", strict=False)
            ports = set(_bridge_ports(ipr, bridge))
            taken = {gateway} | {o["ip"] for o in others if o.get("ip") and o.get("host_if") in ports}
            ip = next((str(h) for h in subnet.hosts() if str(h) not in taken), None)
            if ip is None:
                raise NetworkError(f"no free address left in {subnet}")
            ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": peer_if, "net_ns_pid": netns_pid})
            index = ipr.link_lookup(ifname=host_if)[0]
            ipr.link("set", index=index, master=ipr.link_lookup(ifname=bridge)[0])
            ipr.link("set", index=index, state="up")
        except BaseException:
            _remove(ipr, bridge, host_if)
            raise
    return {"mode": "bridge", "bridge": bridge, "host_if": host_if, "peer_if": peer_if, "subnet": str(subnet),
            "gateway": gateway, "host_ip": gateway, "ip": ip, "prefixlen": prefix}


def setup_container_side(info: dict[str, Any]) -> None:
    """Inside the container's namespace: lo and eth0 up, the address, the default route via the bridge."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        index = ipr.link_lookup(ifname=info["peer_if"])[0]
        ipr.link("set", index=index, ifname="eth0")
        ipr.addr("add", index=index, address=info["ip"], prefixlen=info.get("prefixlen", 30))
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=info.get("gateway", info["host_ip"]))


def teardown_host_side(container_id: str, known_ids: Iterable[str] | None = None) -> None:
    """Delete the container's veth (it also goes by itself when the namespace dies) and any leftover ones;
    the bridge and its NAT go with the last container."""
    from pyroute2 import IPRoute

    bridge = bridge_name()
    host_if, _ = host_names(container_id)
    with host_lock(), IPRoute() as ipr:
        if known_ids is not None:
            _sweep(ipr, bridge, [i for i in known_ids if i != container_id])
        _remove(ipr, bridge, host_if)


def _remove(ipr: Any, bridge: str, host_if: str) -> None:
    """The container's veth; the bridge and its NAT too if no other container is on it."""
    from pyroute2.netlink.exceptions import NetlinkError

    for index in ipr.link_lookup(ifname=host_if):
        with contextlib.suppress(NetlinkError):
            ipr.link("del", index=index)
    if not _bridge_ports(ipr, bridge):
        for index in ipr.link_lookup(ifname=bridge):
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=index)
        nat_down(bridge)


# -- /etc/hosts of the bridge's containers ----------------------------------------------------------

HOSTS_BASE = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def hosts_text(me: tuple[str, str, str], peers: list[tuple[str, str, str]]) -> str:
    """`me` and `peers` are (ip, name, hostname); the container's own line first, then the others by name."""
    def line(ip: str, *names: str) -> str:
        return ip + "\t" + " ".join(dict.fromkeys(n for n in names if n)) + "\n"

    text = HOSTS_BASE + line(me[0], me[2], me[1])
    for ip, name, hostname in sorted(peers, key=lambda p: p[1]):
        text += line(ip, name, hostname)
    return text


def write_in_place(path: os.PathLike[str] | str, text: str) -> None:
    """Rewrite the file's content keeping its inode, so a bind mount of it sees the change."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.fchmod(fd, 0o644)
        data = text.encode()
        os.pwrite(fd, data, 0)  # then cut: a reader never sees an empty file
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def refresh_hosts(states: list[Any]) -> None:
    """Rewrite the hosts file of each running bridge container (state dir `hosts`) to list all of them.

    A container counts while its veth is there: that is true from its start until its namespace dies."""
    members = []
    for s in states:
        net = s.network
        if net.get("mode") == "bridge" and net.get("ip") and os.path.exists(f"/sys/class/net/{net['host_if']}"):
            members.append(s)
    for s in members:
        me = (s.network["ip"], s.name, s.spec.hostname)
        peers = [(o.network["ip"], o.name, o.spec.hostname) for o in members if o.id != s.id]
        with contextlib.suppress(OSError):
            write_in_place(s.dir / "hosts", hosts_text(me, peers))

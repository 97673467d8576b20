"""Container networking: `none` (loopback only), `host`, and `bridge`: a veth pair with a /30 from a private
range no host address or route uses; `-p` ports are published on 127.0.0.1 by the monitor (portproxy)."""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from typing import Any

POOL = "10.213.0.0/16"
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


class NetworkError(Exception):
    pass


def loopback_up() -> None:
    """`ip link set lo up` in the current namespace, without importing pyroute2 (fast path for none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _used_networks(ipr: Any) -> list[Any]:
    import ipaddress

    used = []
    for addr in ipr.get_addr(family=socket.AF_INET):
        ip = addr.get_attr("IFA_ADDRESS")
        if ip:
            used.append(ipaddress.ip_network(f"{ip}/{addr['prefixlen']}", strict=False))
    for route in ipr.get_routes(family=socket.AF_INET):
        dst = route.get_attr("RTA_DST")
        if dst and route["dst_len"] > 0:
            used.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
    return used


def host_names(container_id: str) -> tuple[str, str]:
    return f"rr{container_id[:10]}", f"rp{container_id[:10]}"


def setup_host_side(container_id: str, netns_pid: int, taken: set[str]) -> dict[str, Any]:
    """Create the veth pair with one end in the container's namespace; returns what the container side needs.

    `taken` holds the subnets other containers of this runtime use (their host ends may not be up yet).
    """
    import ipaddress
    import random

    from pyroute2 import IPRoute

    host_if, peer_if = host_names(container_id)
    with IPRoute() as ipr:
        used = _used_networks(ipr)
        candidates = list(ipaddress.ip_network(POOL).subnets(new_prefix=30))
        random.shuffle(candidates)
        for subnet in candidates:
            if str(subnet) not in taken and not any(subnet.overlaps(u) for u in used):
                break
        else:
            raise NetworkError(f"no free /30 left in {POOL}")
        host_ip, container_ip = list(subnet.hosts())
        ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": peer_if, "net_ns_pid": netns_pid})
        try:
            index = ipr.link_lookup(ifname=host_if)[0]
            ipr.addr("add", index=index, address=str(host_ip), prefixlen=30)
            ipr.link("set", index=index, state="up")
        except BaseException:
            teardown_host_side(container_id)
            raise
    return {"mode": "bridge", "host_if": host_if, "peer_if": peer_if, "subnet": str(subnet),
            "host_ip": str(host_ip), "ip": str(container_ip)}


def setup_container_side(info: dict[str, Any]) -> None:
    """Inside the container's namespace: lo and eth0 up, the address, the default route via the host end."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        index = ipr.link_lookup(ifname=info["peer_if"])[0]
        ipr.link("set", index=index, ifname="eth0")
        ipr.addr("add", index=index, address=info["ip"], prefixlen=30)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=info["host_ip"])


def teardown_host_side(container_id: str) -> None:
    """Delete the host end if it is still there (it goes by itself when the namespace dies)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    host_if, _ = host_names(container_id)
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=host_if):
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=index)

"""Reading an address: whether it names this host's loopback."""

from __future__ import annotations


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 (a `%zone` suffix allowed) or `localhost`; False for anything that is no address."""
    import ipaddress  # here: the runtime's start path should not load it for nothing

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False

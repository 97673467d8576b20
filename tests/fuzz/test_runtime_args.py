"""The runtime's command-line values (registry/runtime/cli.py): sizes (`--memory 32m`), port mappings,
restart policies, device rates. For any text, a value or argparse.ArgumentTypeError (which argparse
prints as a usage error), never another exception; numbers in ASCII digits only."""

from __future__ import annotations

import argparse
import ipaddress

from hypothesis import example, given
from hypothesis import strategies as st

from registry.runtime.cli import parse_device_rate, parse_port, parse_restart, parse_size
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import near

SIZES = st.builds(lambda n, unit: f"{n}{unit}", st.one_of(st.integers(0, 10 ** 6), st.sampled_from(["1.5", "0.5", "-1"])),
                  st.sampled_from(["", "b", "k", "m", "g", "kb", "mb", "gb", "K", "M", "G", "KB", "t", "KiB"]))
PORTS = st.builds(lambda host, a, b: f"{host}{a}:{b}", st.sampled_from(["", "127.0.0.1:", "localhost:", "0.0.0.0:"]),
                  st.integers(0, 70000), st.integers(0, 70000))
RESTARTS = st.sampled_from(["no", "always", "on-failure", "on-failure:3", "unless-stopped", "on-failure:0"])


def _clean(parse, value: str):  # type: ignore[no-untyped-def]
    try:
        return parse(value)
    except argparse.ArgumentTypeError as exc:
        assert str(exc)
        return None


@fuzz
@given(near(SIZES))
@example("inf")  # OverflowError: cannot convert float infinity to integer
@example("1e400m")
@example("٣m")  # a digit of another script is no size
@example("1_000")
@example("-5m")
def test_sizes(value: str) -> None:
    size = _clean(parse_size, value)
    if size is not None:
        assert size == -1 or size >= 0, size
        assert value.strip().isascii(), repr(value)


@fuzz
@given(near(PORTS))
@example("٣:80")
@example("²:80")
@example("1" * 5000 + ":80")
@example("٣.0.0.1:80:80")
@example("1.2.3.4" + "\n" + ":80:80")
def test_port_mappings(value: str) -> None:
    mapping = _clean(parse_port, value)
    if mapping is not None:
        address, host_port, container_port = mapping
        assert 0 < host_port < 65536 and 0 < container_port < 65536 and value.isascii(), (value, mapping)
        assert address == "" or ipaddress.IPv4Address(address), (value, mapping)


@fuzz
@given(near(RESTARTS))
@example("on-failure:²")  # accepted, then int() in the container monitor failed
@example("on-failure:" + "9" * 5000)
def test_restart_policies(value: str) -> None:
    policy = _clean(parse_restart, value)
    if policy is not None and ":" in policy:
        limit = policy.partition(":")[2]  # empty: no limit, as without the colon
        assert not limit or (limit.isascii() and limit.isdigit() and int(limit) >= 0), policy


@fuzz
@given(near(st.builds(lambda device, size: f"{device}:{size}", st.sampled_from(["/dev/sda", "/dev/null", "sda", ""]),
                      SIZES)))
@example("/dev/sda:inf")
def test_device_rates(value: str) -> None:
    rate = _clean(parse_device_rate, value)
    if rate is not None:
        assert rate[0].startswith("/dev/") and (rate[1] == -1 or rate[1] >= 0), rate

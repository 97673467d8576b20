"""Acceptance 4: bridge networking with -p (every host address by default), `none` with only loopback, `host`;
and volumes. The bridge network itself (NAT, names, a remote namespace) is tests/runtime/test_bridge.py."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx

from tests.runtime.conftest import Runtime
from tests.support.server import free_port


def wait_http(url: str, timeout: float = 15) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_bridge_publishes_a_port_on_every_address(runtime: Runtime, pulled_base: str, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from the container\n")
    port = free_port()
    runtime.cli("run", "-d", "--name", "web", "--network", "bridge", "-p", f"{port}:8080",
                "-v", f"{www}:/www:ro", pulled_base, "httpd", "-f", "-p", "8080", "-h", "/www")
    try:
        response = wait_http(f"http://127.0.0.1:{port}/index.html")
        assert response.status_code == 200
        assert response.text == "hello from the container\n"
        for _ in range(3):  # the relay serves one connection after another
            assert httpx.get(f"http://127.0.0.1:{port}/index.html", timeout=5).status_code == 200
        state = json.loads(runtime.cli("inspect", "web").stdout)[0]
        host_if = state["network"]["host_if"]
        assert host_if in os.listdir("/sys/class/net")
        inside = runtime.cli("exec", "web", "sh", "-c", "ls /sys/class/net; touch /www/x 2>&1 || echo RO").stdout
        assert inside.split()[:2] == ["eth0", "lo"] and "RO" in inside
        ps = runtime.cli("ps").stdout
        assert f"0.0.0.0:{port}->8080/tcp" in ps
    finally:
        runtime.cli("rm", "-f", "web")
    assert host_if not in os.listdir("/sys/class/net")


def test_bridge_gives_an_address_of_the_bridge_subnet(runtime: Runtime, pulled_base: str) -> None:
    out = runtime.cli("run", "--rm", "--network", "bridge", pulled_base, "sh", "-c",
                      "ip -4 addr show eth0 | grep inet; ip route | grep default; busybox ping -c1 -W5 $(ip route | "
                      "awk '/default/ {print $3}') >/dev/null && echo GATEWAY-OK").stdout
    assert "inet 10.213." in out and "/24" in out
    assert "default via 10.213." in out and ".1 " in out.split("default via")[1]
    assert "GATEWAY-OK" in out


def test_none_has_only_loopback(runtime: Runtime, pulled_base: str) -> None:
    out = runtime.cli("run", "--rm", pulled_base, "sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags").stdout
    names, flags = out.split()[:-1], out.split()[-1]
    assert names == ["lo"]
    assert int(flags, 16) & 1, "loopback is up"


def test_host_network_sees_the_hosts_interfaces(runtime: Runtime, pulled_base: str) -> None:
    # Other tests on this host may add and remove veths meanwhile: every interface there throughout is seen.
    before = set(os.listdir("/sys/class/net"))
    out = runtime.cli("run", "--rm", "--network", "host", pulled_base, "ls", "/sys/class/net").stdout
    after = set(os.listdir("/sys/class/net"))
    assert before & after <= set(out.split()), (out, before, after)


def test_a_taken_port_fails_the_start(runtime: Runtime, pulled_base: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runtime.cli("run", "--rm", "--network", "bridge", "-p", f"{port}:80", pulled_base,
                             "sh", "-c", "echo RAN", check=False)
    assert result.returncode == 125 and f"0.0.0.0:{port}" in result.stderr, result.stderr
    assert "RAN" not in result.stdout


def test_publish_needs_bridge(runtime: Runtime, pulled_base: str) -> None:
    result = runtime.cli("run", "--rm", "-p", "8080:80", pulled_base, "true", check=False)
    assert result.returncode == 125 and "bridge" in result.stderr


def test_writable_volume(runtime: Runtime, pulled_base: str, tmp_path: Path) -> None:
    runtime.cli("run", "--rm", "-v", f"{tmp_path}:/data", pulled_base, "sh", "-c", "echo written > /data/out")
    assert (tmp_path / "out").read_text() == "written\n"


def test_parallel_bridged_containers_get_distinct_addresses(runtime: Runtime, pulled_base: str) -> None:
    """Four starts at once, all running together: four addresses (an exited one's may be reused, as in Docker)."""
    names = [f"par{i}" for i in range(4)]
    procs = [runtime.popen("run", "-d", "--name", name, "--network", "bridge", pulled_base, "sleep", "60")
             for name in names]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        addresses = [json.loads(runtime.cli("inspect", name).stdout)[0]["network"]["ip"] for name in names]
        assert len(set(addresses)) == 4, addresses
        inside = [runtime.cli("exec", name, "sh", "-c", "ip -4 addr show eth0 | grep inet").stdout.split()[1]
                  for name in names]
        assert inside == [f"{a}/24" for a in addresses]
    finally:
        runtime.cli("rm", "-f", *names, check=False)

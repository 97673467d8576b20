"""Bridge networking like Docker's (issue 18): containers on one Linux bridge reach each other by address and
by name, reach a "remote host" through NAT, resolve names through a DNS server there, and are reached from it
through `-p`; afterwards no link, rule, mount or cgroup is left, also after the monitor was SIGKILLed.

The remote host is a network namespace of the test's own (tests/support/netlab.py) joined to the root
namespace by a veth pair on a free private /30: the container gets there through the host's routing and the
runtime's masquerade, so the remote sees the host's address. Traffic never leaves the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Iterator

import pytest

from registry.runtime import network
from registry.runtime.rootfs import container_resolv_conf
from tests.runtime.conftest import Runtime
from tests.support import netlab
from tests.support.process import terminate

# A remote TCP service: answers each connection with the address it came from.
PEER_ECHO = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    c, peer = s.accept()
    c.sendall(f"from {peer[0]}\\n".encode()); c.close()
"""

# A remote DNS server: every A query gets sys.argv[2]; other types an empty answer; logs who asked.
DNS_SERVER = """
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(512)
    end = 12
    while data[end]:
        end += data[end] + 1
    qtype = struct.unpack("!H", data[end + 1:end + 3])[0]
    question = data[12:end + 5]
    name = ".".join(data[13:end].decode(errors="replace").split(chr(0)))
    print(f"query {qtype} from {peer[0]}", flush=True)
    answer = b""
    if qtype == 1:
        answer = b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(sys.argv[2])
    header = data[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if answer else 0, 0, 0)
    s.sendto(header + question + answer, peer)
"""


@pytest.fixture(scope="module", autouse=True)
def forward_policy_drop() -> Iterator[None]:
    """iptables' FORWARD policy DROP for this module, as a host with Docker has it (dockerd sets it at
    start): the runtime's bridge must work there too, whatever order the suite runs in. Restored after."""
    import shutil

    if shutil.which("iptables") is None:
        yield  # nothing on this host can drop forwarded packets that way
        return
    listed = subprocess.run(["iptables", "-t", "filter", "-S", "FORWARD"], capture_output=True, text=True, check=True)
    before = "DROP" if "-P FORWARD DROP" in listed.stdout.splitlines() else "ACCEPT"
    subprocess.run(["iptables", "-t", "filter", "-P", "FORWARD", "DROP"], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-t", "filter", "-P", "FORWARD", before], check=True)


@pytest.fixture(scope="module")
def remote() -> Iterator[netlab.Namespace]:
    try:
        ns = netlab.Namespace.create()
    except netlab.Unavailable as exc:
        pytest.skip(f"no network namespace for the remote host: {exc}")
    yield ns
    ns.remove()
    assert not ns.leftovers()


@pytest.fixture
def image(pulled_base: str) -> str:
    return pulled_base


@pytest.fixture
def www(tmp_path: Path) -> Path:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("served by the container\n")
    return tmp_path / "www"


def _in_remote(remote: netlab.Namespace, script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*remote.wrap, sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _inspect(runtime: Runtime, name: str) -> dict:
    return json.loads(runtime.cli("inspect", name).stdout)[0]


def _rules_left(bridge: str) -> list[str]:
    """The runtime's NAT table (nft) and chain lines (iptables) for the bridge, whichever tool the host has."""
    import shutil

    left = []
    if shutil.which("nft") and subprocess.run(["nft", "list", "table", "inet", network.nft_table(bridge)],
                                              capture_output=True, check=False).returncode == 0:
        left.append(f"nft table inet {network.nft_table(bridge)}")
    if shutil.which("iptables"):
        for table in ("nat", "filter"):
            rules = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=False).stdout
            left += [line for line in rules.splitlines() if network.iptables_chain(bridge) in line]
    return left


def _assert_clean(bridge: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (os.path.exists(f"/sys/class/net/{bridge}") or _rules_left(bridge)):
        time.sleep(0.1)
    assert not os.path.exists(f"/sys/class/net/{bridge}"), f"bridge {bridge} left"
    assert not _rules_left(bridge)


def _serve(runtime: Runtime, image: str, name: str, www: Path, *extra: str) -> dict:
    runtime.cli("run", "-d", "--name", name, "--network", "bridge", *extra, "-v", f"{www}:/www:ro",
                image, "httpd", "-f", "-p", "8080", "-h", "/www")
    return _inspect(runtime, name)


HTTP_GET = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} 8080"  # busybox wget crashes (static NSS)


def _http_get(runtime: Runtime, image: str, host: str) -> str:
    """GET /index.html from a fresh bridge container (retried while the server starts): the whole response."""
    return runtime.cli("run", "--rm", "--network", "bridge", image, "sh", "-c",
                       f"for i in $(seq 50); do out=$({HTTP_GET.format(host=host)}) && [ -n \"$out\" ] && "
                       "echo \"$out\" && exit 0; sleep 0.2; done; exit 1").stdout


def test_containers_reach_each_other_by_address_and_by_name(runtime: Runtime, image: str, www: Path) -> None:
    try:
        server = _serve(runtime, image, "web1", www)
        ip, bridge = server["network"]["ip"], server["network"]["bridge"]
        assert server["network"]["host_if"] in os.listdir(f"/sys/class/net/{bridge}/brif")
        assert "200 OK" in (out := _http_get(runtime, image, ip)) and "served by the container" in out, out
        assert "200 OK" in (out := _http_get(runtime, image, "web1")) and "served by the container" in out, out
        # A container started later is listed in the earlier one's /etc/hosts (rewritten in place) ...
        runtime.cli("run", "-d", "--name", "web2", "--network", "bridge", image, "sleep", "60")
        ip2 = _inspect(runtime, "web2")["network"]["ip"]
        hosts = runtime.cli("exec", "web1", "cat", "/etc/hosts").stdout
        assert f"{ip2}\tweb2" in hosts.splitlines()[-1], hosts
        assert f"{ip}\t" in hosts and "web1" in hosts.splitlines()[2], hosts
        out = runtime.cli("exec", "web2", "sh", "-c", HTTP_GET.format(host="web1") +
                          "; stat -c %a /etc/hosts /etc/hostname /etc/resolv.conf").stdout
        assert "served by the container\n" in out and out.endswith("644\n644\n644\n"), out
        # ... and is gone from it once removed.
        runtime.cli("rm", "-f", "web2")
        assert "web2" not in runtime.cli("exec", "web1", "cat", "/etc/hosts").stdout
    finally:
        runtime.cli("rm", "-f", "web1", "web2", check=False)
    _assert_clean(bridge)


def test_outbound_tcp_goes_through_nat(runtime: Runtime, image: str, remote: netlab.Namespace) -> None:
    echo = _in_remote(remote, PEER_ECHO, remote.server_address)
    try:
        port = int(echo.stdout.readline())  # type: ignore[union-attr]
        out = runtime.cli("run", "--rm", "--network", "bridge", image, "sh", "-c",
                          f"ip -4 addr show eth0 | grep inet; nc {remote.server_address} {port} </dev/null").stdout
        assert "inet 10.213." in out
        # The remote sees the host's address on its link, not the container's: masqueraded.
        assert f"from {remote.client_address}\n" in out, out
    finally:
        terminate(echo)


def test_name_resolution_through_a_remote_dns_server(runtime: Runtime, image: str, remote: netlab.Namespace,
                                                      tmp_path: Path) -> None:
    dns = _in_remote(remote, DNS_SERVER, remote.server_address, "192.0.2.77")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {remote.server_address}\n")
    try:
        assert dns.stdout.readline() == "ready\n", dns.stderr.read()  # type: ignore[union-attr]
        out = runtime.cli("run", "--rm", "--network", "bridge", "-v", f"{resolv}:/etc/resolv.conf:ro",
                          image, "busybox", "nslookup", "-type=a", "service.remote.test").stdout
        assert "192.0.2.77" in out, out
    finally:
        terminate(dns)
    log = dns.stdout.read()  # type: ignore[union-attr]
    assert f"query 1 from {remote.client_address}" in log, log


def test_resolv_conf_drops_loopback_resolvers(tmp_path: Path) -> None:
    host, resolved = tmp_path / "host", tmp_path / "resolved"
    host.write_text("# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n")
    resolved.write_text("nameserver 192.0.2.53\nnameserver ::1\nnameserver 2001:db8::53\n")
    assert container_resolv_conf([str(host), str(resolved)]) == (
        "nameserver 192.0.2.53\nnameserver 2001:db8::53\noptions edns0 trust-ad\nsearch example.org\n")
    # Only loopback everywhere: Docker's fallback.
    resolved.write_text("nameserver 127.0.0.1\n")
    assert container_resolv_conf([str(host), str(resolved)]).startswith("nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    assert container_resolv_conf([str(tmp_path / "missing")]) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    # A reachable resolver is kept as it is, loopback ones dropped around it.
    host.write_text("nameserver 127.0.0.1\nnameserver 10.255.255.53\n")
    assert container_resolv_conf([str(host)]) == "nameserver 10.255.255.53\n"


def _fetch_from_remote(remote: netlab.Namespace, url: str) -> subprocess.CompletedProcess:
    script = ("import sys, time, urllib.request\n"
              "for _ in range(50):\n"
              "    try:\n"
              "        print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end=''); break\n"
              "    except OSError as exc:\n"
              "        err = exc; time.sleep(0.2)\n"
              "else:\n"
              "    sys.exit(f'unreachable: {err}')\n")
    return subprocess.run([*remote.wrap, sys.executable, "-c", script, url], capture_output=True, text=True,
                          timeout=60, check=False)


def test_published_ports_from_the_remote_namespace(runtime: Runtime, image: str, remote: netlab.Namespace,
                                                   www: Path) -> None:
    from tests.support.server import free_port

    everywhere, loopback = free_port(), free_port()
    try:
        _serve(runtime, image, "pub1", www, "-p", f"{everywhere}:8080")
        bridge = _serve(runtime, image, "pub2", www, "-p", f"127.0.0.1:{loopback}:8080")["network"]["bridge"]
        got = _fetch_from_remote(remote, f"http://{remote.client_address}:{everywhere}/index.html")
        assert got.stdout == "served by the container\n", got.stderr
        ps = runtime.cli("ps").stdout
        assert f"0.0.0.0:{everywhere}->8080/tcp" in ps and f"127.0.0.1:{loopback}->8080/tcp" in ps, ps
        # -p IP:HOST:CTR listens on that address only: loopback here, not the veth's.
        import httpx
        assert httpx.get(f"http://127.0.0.1:{loopback}/index.html", timeout=10).text == "served by the container\n"
        refused = subprocess.run([*remote.wrap, sys.executable, "-c",
                                  f"import socket; socket.create_connection(('{remote.client_address}', {loopback}),"
                                  " timeout=5)"], capture_output=True, text=True, timeout=30, check=False)
        assert refused.returncode != 0 and "refused" in refused.stderr, refused.stderr
    finally:
        runtime.cli("rm", "-f", "pub1", "pub2", check=False)
    _assert_clean(bridge)


def test_unpublished_ports_are_not_reachable_from_outside(runtime: Runtime, image: str, remote: netlab.Namespace,
                                                        www: Path) -> None:
    """A host on the network with a route to the bridge's subnet through this one reaches no container
    port that -p did not publish (the host forwards, with ip_forward on, but drops new connections in)."""
    served = _serve(runtime, image, "hidden", www)
    address, subnet = served["network"]["ip"], served["network"]["subnet"]
    try:
        subprocess.run([*remote.wrap, "ip", "route", "add", subnet, "via", remote.client_address], check=True)
        outbound = runtime.cli("exec", "hidden", "sh", "-c", HTTP_GET.format(host="127.0.0.1"))
        assert "served by the container" in outbound.stdout  # it serves: the port is open inside
        blocked = subprocess.run([*remote.wrap, sys.executable, "-c",
                                  f"import socket; socket.create_connection(('{address}', 8080), timeout=3)"],
                                 capture_output=True, text=True, timeout=30, check=False)
        assert blocked.returncode != 0 and ("timed out" in blocked.stderr or "refused" in blocked.stderr), blocked
    finally:
        runtime.cli("rm", "-f", "hidden", check=False)
    _assert_clean(served["network"]["bridge"])


def test_bad_publish_addresses_are_refused(runtime: Runtime, image: str) -> None:
    for bad in ("nohost:80:80", "::1:80:80", "1.2.3:80:80", "80", "0:80"):
        result = runtime.cli("run", "--rm", "--network", "bridge", "-p", bad, image, "true", check=False)
        assert result.returncode == 125 or result.returncode == 2, (bad, result)
        assert "invalid port mapping" in result.stderr, (bad, result.stderr)


def test_a_killed_monitor_leaves_nothing_after_the_next_rm(runtime: Runtime, image: str) -> None:
    runtime.cli("run", "-d", "--name", "crash1", "--network", "bridge", image, "sleep", "120")
    state = _inspect(runtime, "crash1")
    bridge, host_if = state["network"]["bridge"], state["network"]["host_if"]
    os.kill(state["monitor_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10  # the container dies with it (parent-death signals); its keeper cleans up
    while (os.path.exists(f"/sys/class/net/{host_if}") or _inspect(runtime, "crash1")["status"] != "exited") \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    crashed = _inspect(runtime, "crash1")
    assert crashed["status"] == "exited" and crashed["exit_code"] == 137 and "SIGKILL" in crashed["error"]
    assert not os.path.exists(f"/sys/class/net/{host_if}")
    _assert_clean(bridge)  # it was the bridge's last container: the bridge and its rules went with it
    # A start meanwhile makes the bridge again and works.
    runtime.cli("run", "-d", "--name", "crash2", "--network", "bridge", image, "sleep", "120")
    assert _inspect(runtime, "crash2")["network"]["ip"].endswith(".2")
    runtime.cli("rm", "-f", "crash2")
    runtime.cli("rm", "-f", "crash1")
    _assert_clean(bridge)


def test_a_killed_monitor_is_cleaned_by_rm_alone(runtime: Runtime, image: str) -> None:
    runtime.cli("run", "-d", "--name", "crash3", "--network", "bridge", image, "sleep", "120")
    state = _inspect(runtime, "crash3")
    os.kill(state["monitor_pid"], signal.SIGKILL)
    time.sleep(0.5)
    runtime.cli("rm", "-f", "crash3")
    _assert_clean(state["network"]["bridge"])


@pytest.mark.parametrize("tool", ["nft", "iptables"])
def test_nat_rules_of_either_tool_come_and_go(tool: str) -> None:
    """Both NAT back ends, whichever this host would pick: our own table or chain, nothing of anyone else's."""
    import shutil
    import uuid

    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed on this host")
    bridge = f"rrbrt{uuid.uuid4().hex[:7]}"
    def others() -> set[str]:  # tables of docker and the like (other runtimes' tests may come and go meanwhile)
        if shutil.which("nft") is None:
            return set()
        out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
        return {line for line in out.splitlines() if "registry_runtime_" not in line}

    others_before = others()
    network.nat_up(bridge, "10.213.254.0/24", tool=tool)
    try:
        if tool == "nft":
            table = subprocess.run(["nft", "list", "table", "inet", network.nft_table(bridge)], capture_output=True,
                                   text=True, check=True).stdout
            assert f'ip saddr 10.213.254.0/24 oifname != "{bridge}" masquerade' in table, table
        else:
            nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True, check=True).stdout
            chain = network.iptables_chain(bridge)
            assert f"-A POSTROUTING -j {chain}" in nat, nat
            assert f"-A {chain} -s 10.213.254.0/24 ! -o {bridge} -j MASQUERADE" in nat, nat
        network.nat_up(bridge, "10.213.254.0/24", tool=tool)  # again (a start after a crash): still one of each
        # nft: our table, and, under a FORWARD policy of DROP (this module sets it), our iptables filter chain
        # (its 3 rules, the chain, the jump); iptables: our nat chain (chain, rule, jump) and that filter chain.
        filter_chain = 5 if tool == "iptables" or network._iptables_forward_drops() else 0
        assert len(_rules_left(bridge)) == (1 if tool == "nft" else 3) + filter_chain, _rules_left(bridge)
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    finally:
        network.nat_down(bridge)
    assert not _rules_left(bridge)
    assert others() == others_before

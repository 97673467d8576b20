"""Slow downloaders do not starve the server (issue 16).

64 clients with a 4 KiB receive buffer read a blob at about 10 KB/s each. While they are attached,
a small push, a login that needs a bcrypt check and /readyz answer about as fast as with no reader
(before: every thread of the pool waited on a reader's socket, and all three waited for minutes).
Plain HTTP blob GETs use sendfile; over TLS they are streamed: both are checked. The measured
figures are in bench/starve.py (`slow`); the bounds here are generous on purpose.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.auth.conftest import AuthRegistry, User, add_accounts, basic
from tests.support.logcheck import assert_clean
from tests.support.slow_peers import SlowReaders, push_small_image, read_in_bursts, sha256

READERS = 64
BLOB = os.urandom(8 << 20)  # larger than what the server's socket buffers hold for 64 readers
ROUNDS = 2
SLACK = 2.0  # seconds a request may take beyond its time with no reader; before: minutes
PASSWORD = uuid.uuid4().hex


class Server:
    def __init__(self, registry: AuthRegistry) -> None:
        self.registry = registry
        self.client = registry.client(timeout=30)
        self.logins = iter(f"login{i}" for i in range(ROUNDS + 1))
        self.auth = basic("pusher", PASSWORD)
        response = self.client.post("/v2/slow/blob/blobs/uploads/", params={"digest": sha256(BLOB)}, content=BLOB,
                                    headers={**self.auth, "Content-Type": "application/octet-stream"})
        assert response.status_code == 201, response.text
        push_small_image(self.client, "slow/push", "warm", self.auth)  # the pusher's login is cached now

    def timings(self) -> dict[str, float]:
        """Seconds for a small push, a login that needs bcrypt (a user not seen before), /readyz."""
        figures = {}
        t0 = time.perf_counter()
        push_small_image(self.client, "slow/push", uuid.uuid4().hex[:8], self.auth)
        figures["push"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        response = self.client.get("/v2/", headers=basic(next(self.logins), PASSWORD))
        figures["login"] = time.perf_counter() - t0
        assert response.status_code == 200, response.text
        t0 = time.perf_counter()
        response = self.client.get("/readyz")
        figures["readyz"] = time.perf_counter() - t0
        assert response.status_code == 200, response.text
        return figures


@pytest.fixture(scope="module", params=["http", "tls"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"slow-{request.param}")
    args = ["--auth-mode", "basic", "--auth-anonymous-pull"]
    if request.param == "tls":
        args.append("--tls-self-signed")
    with AuthRegistry(root / "data", args=args) as registry:
        add_accounts(registry.data_dir, [User("pusher", PASSWORD)] +
                     [User(f"login{i}", PASSWORD) for i in range(ROUNDS + 1)])
        server = Server(registry)
        yield server
        server.client.close()
        log = registry.log_text()
    assert_clean(log, "the server's log")  # the suite checks after each test too; this module's own word


def test_slow_readers_do_not_delay_push_login_or_readyz(server: Server) -> None:
    registry = server.registry
    idle = server.timings()
    tls = registry.ssl_context() if registry.tls else None
    with SlowReaders("127.0.0.1", registry.port, f"/v2/slow/blob/blobs/{sha256(BLOB)}", count=READERS,
                     tls=tls) as readers:
        time.sleep(2)  # every reader's socket is full by now
        try:
            loaded = [server.timings() for _ in range(ROUNDS)]
        except httpx.TimeoutException as exc:
            pytest.fail(f"no answer within 30 s while {READERS} slow readers are attached: {exc!r}")
        starved = [i for i, n in enumerate(readers.received) if n == 0]
    assert not readers.errors, readers.errors[:3]
    # All 64 are served at once: none waits in a queue for a thread that another reader holds.
    assert not starved, f"{len(starved)} of {READERS} readers got no byte"
    for name, seconds in idle.items():
        worst = max(figures[name] for figures in loaded)
        assert worst < seconds + SLACK, f"{name}: {worst:.2f} s with {READERS} slow readers, {seconds:.2f} s without"
    assert registry.proc is not None and registry.proc.poll() is None


def test_a_client_reading_in_bursts_gets_the_exact_bytes(server: Server) -> None:
    """The socket fills and drains again and again, so the download goes back and forth between
    the copying thread and the event loop; the bytes must still be exact, whole or by range."""
    registry = server.registry
    tls = registry.ssl_context() if registry.tls else None
    path = f"/v2/slow/blob/blobs/{sha256(BLOB)}"
    status, headers, digest, length = read_in_bursts("127.0.0.1", registry.port, path, tls=tls)
    assert (status, length, digest) == (200, len(BLOB), sha256(BLOB))
    assert headers["content-length"] == str(len(BLOB))
    first, last = 12345, len(BLOB) - 54321
    status, headers, digest, length = read_in_bursts("127.0.0.1", registry.port, path, tls=tls,
                                                     headers={"Range": f"bytes={first}-{last}"})
    assert (status, length, digest) == (206, last - first + 1, sha256(BLOB[first:last + 1]))
    assert headers["content-range"] == f"bytes {first}-{last}/{len(BLOB)}"


def test_the_server_still_serves_a_fast_pull_afterwards(server: Server) -> None:
    with server.registry.client(timeout=60) as client, \
            client.stream("GET", f"/v2/slow/blob/blobs/{sha256(BLOB)}") as response:
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
    assert sha256(body) == sha256(BLOB)

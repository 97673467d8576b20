"""Slow downloaders and the requests timed while they are attached (tests/test_slow_peers.py and
bench/starve.py share them).

A slow reader is a raw socket with a small receive buffer that GETs a blob and then takes
`chunk` bytes every `interval` seconds: the server's socket stays full, as with a client on a
slow link. One thread drives them all (non-blocking reads), so 64 readers cost the measuring
process almost nothing.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class SlowReaders:
    """`count` clients each GETting `path` on its own connection and reading slowly."""

    host: str
    port: int
    path: str
    count: int = 64
    rcvbuf: int = 4096
    chunk: int = 1024
    interval: float = 0.1
    tls: ssl.SSLContext | None = None
    received: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _socks: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SlowReaders:
        request = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                   "Connection: close\r\n\r\n").encode()
        for _ in range(self.count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # Before connect, so the window the client advertises is small from the first segment.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.settimeout(10)
            sock.connect((self.host, self.port))
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            sock.sendall(request)
            sock.setblocking(False)
            self._socks.append(sock)
            self.received.append(0)
        self._thread = threading.Thread(target=self._read, name="slow-readers", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        open_ = set(range(len(self._socks)))
        while open_ and not self._stop.wait(self.interval):
            for i in list(open_):
                try:
                    data = self._socks[i].recv(self.chunk)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                except OSError as exc:
                    self.errors.append(f"reader {i}: {exc!r}")
                    open_.discard(i)
                    continue
                if not data:
                    open_.discard(i)  # the whole blob arrived (or the server closed)
                self.received[i] += len(data)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for sock in self._socks:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> SlowReaders:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_in_bursts(host: str, port: int, path: str, headers: dict[str, str] | None = None,
                   tls: ssl.SSLContext | None = None, rcvbuf: int = 4096, burst: int = 256 * 1024,
                   pause: float = 0.02) -> tuple[int, dict[str, str], str, int]:
    """GET path on a raw socket, taking `burst` bytes then pausing, so the server's socket fills
    and drains over and over. (status, headers, sha256 of the body, body length)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(30)
    sock.connect((host, port))
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=host)
    with sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            assert data, f"connection closed before the headers: {head!r}"
            head += data
        head, _, body = head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        found = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
        hasher = hashlib.sha256(body)
        length = len(body)
        taken = 0
        while data := sock.recv(min(65536, burst - taken)):
            hasher.update(data)
            length += len(data)
            taken += len(data)
            if taken >= burst:
                time.sleep(pause)
                taken = 0
    return int(status_line.split()[1]), found, "sha256:" + hasher.hexdigest(), length


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_small_image(client: httpx.Client, repo: str, tag: str, headers: dict[str, str] | None = None) -> str:
    """A monolithic push of a tiny image: layer and config by POST ?digest=, then the manifest.
    Returns the manifest's digest; raises on any unexpected status."""
    headers = headers or {}
    unique = f"{repo}:{tag}:{time.time_ns()}".encode()
    layer = unique.ljust(32 * 1024, b"\0")
    config = json.dumps({"architecture": "amd64", "os": "linux", "note": unique.decode()}).encode()
    for body in (layer, config):
        response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(body)}, content=body,
                               headers={**headers, "Content-Type": "application/octet-stream"})
        assert response.status_code == 201, f"blob POST: {response.status_code} {response.text}"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
    }).encode()
    response = client.put(f"/v2/{repo}/manifests/{tag}", content=manifest,
                          headers={**headers, "Content-Type": OCI_MANIFEST})
    assert response.status_code == 201, f"manifest PUT: {response.status_code} {response.text}"
    return sha256(manifest)


def timed(fn: Callable[[], object]) -> float:
    """Seconds `fn` took; an exception (a timeout included) propagates."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0

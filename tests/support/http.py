"""Raw HTTP helpers for tests that stream big bodies or cut connections on purpose."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
from collections.abc import Iterator


def pattern_stream(total: int, seed: int = 0, block: int = 1024 * 1024) -> Iterator[bytes]:
    """`total` bytes of varied content, generated on the fly (never held whole)."""
    base = bytearray(os.urandom(block)) if seed < 0 else bytearray(hashlib.sha256(str(seed).encode()).digest() * (block // 32))
    sent = 0
    index = 0
    while sent < total:
        base[:8] = index.to_bytes(8, "little")
        piece = bytes(base[: min(block, total - sent)])
        sent += len(piece)
        index += 1
        yield piece


def stream_digest(total: int, seed: int = 0) -> str:
    hasher = hashlib.sha256()
    for piece in pattern_stream(total, seed):
        hasher.update(piece)
    return "sha256:" + hasher.hexdigest()


def request(host: str, method: str, path: str, body: Iterator[bytes] | bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, dict[str, str], bytes]:
    hostname, port = host.rsplit(":", 1)
    conn = http.client.HTTPConnection(hostname, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def send_partial(host: str, method: str, path: str, declared: int, send: bytes,
                 extra_headers: dict[str, str] | None = None) -> None:
    """Send headers declaring `declared` bytes, then only `send`, then drop the connection."""
    hostname, port = host.rsplit(":", 1)
    with socket.create_connection((hostname, int(port))) as sock:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {declared}",
                 "Content-Type: application/octet-stream"]
        lines += [f"{k}: {v}" for k, v in (extra_headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + send)
        sock.shutdown(socket.SHUT_WR)

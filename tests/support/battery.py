"""What the malformed-request battery (tests/test_battery.py) needs: requests sent byte for byte over a
socket, and a count of everything a registry stored, taken before and after each request.

httpx and http.client normalise or refuse much of what the battery sends (unknown methods, `%2f` and
`..` in paths, non-ASCII header bytes, two Content-Length headers, a body that disagrees with its
declared length), so every battery request goes out as raw bytes and the answer is read until the
server closes the connection (`Connection: close`).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Sequence

Header = tuple[str | bytes, str | bytes]


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_head: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    def error_codes(self) -> list[str]:
        """The codes of the spec's error body `{"errors": [{"code", "message"}, ...]}`; AssertionError
        when the body is not that."""
        content_type = self.headers.get("content-type", "")
        assert content_type.startswith("application/json"), f"not JSON ({content_type!r}): {self.body[:300]!r}"
        body = self.json()
        assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], body
        for entry in body["errors"]:
            assert isinstance(entry, dict) and isinstance(entry.get("code"), str), body
            assert isinstance(entry.get("message"), str) and entry["message"], body
        return [entry["code"] for entry in body["errors"]]

    def describe(self) -> str:
        return f"{self.raw_head.decode('latin-1')}\r\n\r\n{self.body[:600]!r}"


def build_request(method: str | bytes, target: str | bytes, host: str, headers: Sequence[Header] = (),
                  body: bytes = b"", content_length: bool = True, version: bytes = b"HTTP/1.1") -> bytes:
    """The request's bytes: the request line as given, Host, Connection: close, Content-Length (unless the
    caller sends its own framing or `content_length` is False), then the caller's headers as given."""
    names = {_bytes(name).lower() for name, _ in headers}
    lines = [_bytes(method) + b" " + _bytes(target) + b" " + version, b"Host: " + host.encode(),
             b"Connection: close"]
    if content_length and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines += [_bytes(name) + b": " + _bytes(value) for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send(port: int, data: bytes, timeout: float = 30, tls: ssl.SSLContext | None = None) -> Answer:
    """Send `data` on a fresh connection to 127.0.0.1:`port` and read the one answer until the server
    closes. AssertionError when no HTTP answer comes back."""
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
    received = b""
    deadline = time.monotonic() + timeout
    with sock:
        try:
            sock.sendall(data)
        except OSError:  # the server may answer and close before it has read everything
            pass
        try:
            while time.monotonic() < deadline:
                piece = sock.recv(65536)
                if not piece:
                    break
                received += piece
                if _complete(received):  # an answer sent before the request's body was read: the server
                    break                # waits up to 10 s for that body before it closes (aiohttp lingering)
        except OSError:  # a reset after the answer: what came is what counts
            pass
    return parse_answer(received)


def _complete(received: bytes) -> bool:
    """Whether `received` holds a whole answer framed by its Content-Length (HEAD answers and chunked ones
    are read until the server closes)."""
    head, separator, rest = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return 0 < int(value) <= len(rest)
    return False


def parse_answer(received: bytes) -> Answer:
    head, separator, rest = received.partition(b"\r\n\r\n")
    assert separator and head.startswith((b"HTTP/1.", b"HTTP/0.9 ")), f"no HTTP answer: {received[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(rest)
    elif "content-length" in headers:
        body = rest[:int(headers["content-length"])]
    else:
        body = rest
    return Answer(status, headers, body, head)


def _unchunk(data: bytes) -> bytes:
    body = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        body, data = body + data[:size], data[size + 2:]
    return body


def chunked(*pieces: bytes) -> bytes:
    """A chunked request body of these pieces (the last, empty chunk added)."""
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces if p) + b"0\r\n\r\n"


# -- what a registry stored ------------------------------------------------------------------------

@dataclass(frozen=True)
class Stored:
    """Rows per table of the SQLite database, and the files (with sizes) under blobs/ and uploads/."""

    rows: dict[str, int]
    files: dict[str, int] = field(default_factory=dict)


# The record of requests, not what the registry holds: the audit trail keeps refused admin actions and
# failed logins on purpose (registry/events/).
JOURNAL_TABLES = ("events",)


def stored(data_dir: Path, file_roots: Iterable[str] = ("blobs", "uploads")) -> Stored:
    data_dir = Path(data_dir)
    with sqlite3.connect(f"file:{data_dir / 'registry.db'}?mode=ro", uri=True, timeout=30) as conn:
        tables = [row[0] for row in conn.execute(
            "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'")
            if row[0] not in JOURNAL_TABLES]
        rows = {table: conn.execute(f'select count(*) from "{table}"').fetchone()[0] for table in tables}
    conn.close()
    files = {}
    for root in file_roots:
        for path in (data_dir / root).rglob("*"):
            try:
                if path.is_file():
                    files[str(path.relative_to(data_dir))] = path.stat().st_size
            except OSError:  # removed while we looked
                continue
    return Stored(rows, files)


def storage_growth(before: Stored, after: Stored) -> list[str]:
    """What `after` holds that `before` did not: more rows in a table, a new file, a file that grew.
    (Fewer is no growth: a refused upload may drop its own session, as a wrong digest does.)"""
    grown = [f"table {table}: {before.rows.get(table, 0)} -> {count} rows"
             for table, count in after.rows.items() if count > before.rows.get(table, 0)]
    for path, size in after.files.items():
        if path not in before.files:
            grown.append(f"new file {path} ({size} bytes)")
        elif size > before.files[path]:
            grown.append(f"{path} grew from {before.files[path]} to {size} bytes")
    return grown

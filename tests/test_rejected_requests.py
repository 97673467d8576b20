"""Requests the HTTP parser rejects before routing: each gets a 4xx, exactly one access-log line
(route `unmatched`), one count in registry_http_requests_total, and never a traceback.

Docker, skopeo and podman all open with a TLS hello on a plain-HTTP registry's port; before this
was handled, every such session left a 30-line `Error handling request` traceback in the log.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.admin.test_metrics import delta, scrape
from tests.support.server import RegistryProcess

# The first bytes of a TLS 1.2/1.3 ClientHello record (handshake, version 3.1, a length) and some of its body.
TLS_HELLO = bytes.fromhex("160301020001000200030300") + bytes(range(32)) + b"\x00\x00\x02\x13\x01\x01\x00"

MALFORMED = {
    "tls-hello": TLS_HELLO,
    "bad-request-line": b"THIS IS NOT HTTP\r\n\r\n",
    "bad-header": b"GET /v2/ HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    "cl-and-te": (b"POST /v2/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "oversized-header": b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    "binary-garbage": bytes(range(256)) * 4,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    root = tmp_path_factory.mktemp("rejected")
    with RegistryProcess(root / "data", args=["--log-format", "json"]) as process:
        yield process


def send_raw(host: str, port: int, data: bytes) -> bytes:
    """Send bytes on a fresh connection; return whatever comes back before the server closes."""
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(data)
        except OSError:  # the server may answer and close before it has read everything
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer


def access_lines(log: Path, since: int) -> list[dict]:
    time.sleep(0.3)  # the access line is written once the response is out
    with open(log, "rb") as handle:
        handle.seek(since)
        text = handle.read().decode(errors="replace")
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [e for e in entries if e.get("logger") == "registry.access"]


def log_size(log: Path) -> int:
    return log.stat().st_size


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_rejected_request_is_logged_once_and_counted(server: RegistryProcess, case: str) -> None:
    before = scrape(server.url)
    mark = log_size(server.log_path)
    answer = send_raw("127.0.0.1", server.port, MALFORMED[case])
    assert answer.startswith(b"HTTP/1."), f"{case}: no HTTP answer: {answer[:200]!r}"
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, f"{case}: answered {answer[:200]!r}"

    lines = access_lines(server.log_path, mark)
    rejected = [e for e in lines if e["route"] == "unmatched" and e["status"] == status]
    assert len(rejected) == 1, f"{case}: expected one access line for the rejected request, got {lines}"
    after = scrape(server.url)
    counted = sum(delta(before, after, "registry_http_requests_total", route="unmatched", method=method,
                        code=str(status)) for method in ("OTHER", "GET", "POST"))
    assert counted == 1, f"{case}: registry_http_requests_total{{route=unmatched}} rose by {counted}"

    text = server.log_path.read_text(errors="replace")[mark:]
    assert "Traceback" not in text and "Error handling request" not in text, text[-3000:]


def test_server_still_serves_after_garbage(server: RegistryProcess) -> None:
    for data in MALFORMED.values():
        send_raw("127.0.0.1", server.port, data)
    assert httpx.get(f"{server.url}/v2/", timeout=10).status_code == 200
    assert "Traceback" not in server.log_path.read_text(errors="replace")

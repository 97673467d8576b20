"""Interrupted uploads: a client gone mid-PATCH, a truncated monolithic body, kill -9 mid-upload.

Whatever happens, no partial blob is ever served, the session stays consistent, and the client
can push again.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import httpx

from tests.support.http import pattern_stream, request, send_partial, stream_digest


def _blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_client_gone_mid_patch_leaves_session_consistent(client, registry):
    data = os.urandom(16 * 1024 * 1024)
    start = client.post("/v2/interrupt/patch/blobs/uploads/")
    assert start.status_code == 202
    location = start.headers["Location"]

    sent = 9 * 1024 * 1024 + 123
    send_partial(registry.host, "PATCH", location, declared=len(data), send=data[:sent])

    def status_settled():
        status = client.get(location)
        return status if status.status_code == 204 else None

    status = _wait_for(status_settled)
    staged = int(status.headers["Range"].split("-")[1]) + 1
    # What the server consumed before the connection died stays staged (its last unread
    # buffer may be dropped); the status says exactly how much.
    assert 0 < staged <= sent
    assert status.headers["Location"] == location

    # Resume from exactly where the server says it is, then finish: the digest must verify.
    rest = client.patch(location, content=data[staged:], headers={
        "Content-Range": f"{staged}-{len(data) - 1}", "Content-Type": "application/octet-stream"})
    assert rest.status_code == 202, rest.text
    done = client.put(rest.headers["Location"], params={"digest": _sha(data)})
    assert done.status_code == 201, done.text
    assert client.get(f"/v2/interrupt/patch/blobs/{_sha(data)}").content == data


def test_truncated_monolithic_body_stores_nothing(client, registry):
    data = os.urandom(2 * 1024 * 1024)
    digest = _sha(data)
    send_partial(registry.host, "POST", f"/v2/interrupt/mono/blobs/uploads/?digest={digest}",
                 declared=len(data), send=data[: len(data) // 2])
    time.sleep(0.5)
    assert client.head(f"/v2/interrupt/mono/blobs/{digest}").status_code == 404
    hexpart = digest.split(":")[1]
    assert not any(p.name == hexpart for p in _blob_files(registry.data_dir))
    # And the same push, complete, works.
    assert client.post("/v2/interrupt/mono/blobs/uploads/", params={"digest": digest},
                       content=data).status_code == 201
    assert client.get(f"/v2/interrupt/mono/blobs/{digest}").content == data


def test_kill_9_mid_upload_then_restart(fresh_registry):
    server = fresh_registry
    total = 256 * 1024 * 1024
    digest = stream_digest(total, seed=7)
    hexpart = digest.split(":")[1]

    # A chunked session with one committed chunk survives the crash.
    with httpx.Client(base_url=server.url, timeout=60) as http:
        session = http.post("/v2/crash/app/blobs/uploads/")
        first_chunk = b"A" * 100_000
        session = http.patch(session.headers["Location"], content=first_chunk,
                             headers={"Content-Range": f"0-{len(first_chunk) - 1}"})
        assert session.status_code == 202
        survivor = session.headers["Location"]

    # A large monolithic push is under way when the server dies.
    sent = {"bytes": 0}

    def slow_body():
        for piece in pattern_stream(total, seed=7):
            sent["bytes"] += len(piece)
            yield piece
            time.sleep(0.002)

    errors: list[BaseException] = []

    def push():
        try:
            request(server.host, "POST", f"/v2/crash/app/blobs/uploads/?digest={digest}", body=slow_body(),
                    headers={"Content-Length": str(total), "Content-Type": "application/octet-stream"})
        except BaseException as exc:  # noqa: BLE001 - the connection dies with the server
            errors.append(exc)

    pusher = threading.Thread(target=push)
    pusher.start()
    _wait_for(lambda: sent["bytes"] > 32 * 1024 * 1024, timeout=60)
    server.kill()
    pusher.join(60)
    assert errors, "the push must fail when the server dies"

    server.start()
    with httpx.Client(base_url=server.url, timeout=120) as http:
        assert http.head(f"/v2/crash/app/blobs/{digest}").status_code == 404
        assert not any(p.name == hexpart for p in _blob_files(server.data_dir))

        # The session begun before the crash is still there, at the same offset, and finishes.
        status = http.get(survivor)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{len(first_chunk) - 1}"
        tail = b"B" * 5000
        finished = http.put(survivor, params={"digest": _sha(first_chunk + tail)}, content=tail,
                            headers={"Content-Range": f"{len(first_chunk)}-{len(first_chunk) + len(tail) - 1}"})
        assert finished.status_code == 201, finished.text

    # The client pushes the big blob again and it is served whole and correct.
    status, headers, _ = request(server.host, "POST", f"/v2/crash/app/blobs/uploads/?digest={digest}",
                                 body=pattern_stream(total, seed=7),
                                 headers={"Content-Length": str(total), "Content-Type": "application/octet-stream"})
    assert status == 201
    with httpx.Client(base_url=server.url, timeout=120) as http:
        hasher = hashlib.sha256()
        with http.stream("GET", f"/v2/crash/app/blobs/{digest}") as response:
            assert response.status_code == 200
            for piece in response.iter_bytes(1024 * 1024):
                hasher.update(piece)
        assert "sha256:" + hasher.hexdigest() == digest


def test_client_gone_mid_download_leaves_server_serving(client, registry):
    import socket

    data = os.urandom(64 * 1024 * 1024)
    digest = _sha(data)
    assert client.post("/v2/interrupt/download/blobs/uploads/", params={"digest": digest},
                       content=data).status_code == 201
    for _ in range(3):
        host, port = registry.host.split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(f"GET /v2/interrupt/download/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.recv(256 * 1024)  # take a little, then hang up
    assert client.get(f"/v2/interrupt/download/blobs/{digest}").content == data
    assert client.get(f"/v2/interrupt/download/blobs/{digest}", headers={"Range": "bytes=5-9"}).content == data[5:10]

"""Streaming end to end: a 2 GiB blob pushed and pulled keeps the server's peak RSS under 200 MiB."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from tests.support.host import short_of_space
from tests.support.http import pattern_stream, request

BLOB_BYTES = 2 * 1024 ** 3
PEAK_RSS_LIMIT = 200 * 1024 ** 2
# The blob is staged in the data dir and committed by rename (one copy on disk), plus room left for the other
# tests and processes sharing that filesystem.
DISK_NEEDED = BLOB_BYTES + 1024 ** 3


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_2gib_push_and_pull_stay_under_200mib(fresh_registry):
    server = fresh_registry
    if reason := short_of_space(server.data_dir, DISK_NEEDED, "a 2 GiB push"):
        pytest.skip(reason)
    hasher = hashlib.sha256()

    def body():
        for piece in pattern_stream(BLOB_BYTES, seed=2):
            hasher.update(piece)
            yield piece

    with httpx.Client(base_url=server.url, timeout=600) as http:
        location = http.post("/v2/memory/big/blobs/uploads/").headers["Location"]
    status, headers, text = request(server.host, "PATCH", location, body=body(),
                                    headers={"Content-Length": str(BLOB_BYTES),
                                             "Content-Type": "application/octet-stream"})
    assert status == 202, text
    assert headers["range"] == f"0-{BLOB_BYTES - 1}"
    digest = "sha256:" + hasher.hexdigest()
    with httpx.Client(base_url=server.url, timeout=600) as http:
        done = http.put(headers["location"], params={"digest": digest})
        assert done.status_code == 201, done.text

        pulled = hashlib.sha256()
        size = 0
        with http.stream("GET", f"/v2/memory/big/blobs/{digest}") as response:
            assert response.status_code == 200
            for piece in response.iter_raw(4 * 1024 * 1024):
                pulled.update(piece)
                size += len(piece)
    assert size == BLOB_BYTES
    assert "sha256:" + pulled.hexdigest() == digest

    peak = _peak_rss(server.pid)
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
    print(f"server peak RSS over a 2 GiB push and pull: {peak / 2**20:.0f} MiB")

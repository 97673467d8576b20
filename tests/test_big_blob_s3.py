"""A 6 GiB blob pushed to S3 in three 2 GiB chunks: past S3's 5 GiB single-copy limit, so the
commit copies with UploadPartCopy; the server's peak RSS stays under 250 MiB throughout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from tests.support.backends import postgres_s3_registry
from tests.support.host import short_of_space
from tests.support.http import pattern_stream, request

CHUNK = 2 * 1024 ** 3
CHUNKS = 3
PEAK_RSS_LIMIT = 250 * 1024 ** 2
# In Swift's data dir at the commit's peak: the upload's parts (6 GiB) and the UploadPartCopy copy of them
# (6 GiB) until the staging object is deleted; plus room left for the other tests sharing that filesystem.
DISK_NEEDED = 2 * CHUNK * CHUNKS + 1024 ** 3


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_6gib_blob_in_three_chunks_on_s3(tmp_path, postgres, swift_s3):
    if reason := short_of_space(swift_s3.data_dir, DISK_NEEDED, "a 6 GiB blob on S3 (Swift)"):
        pytest.skip(reason)
    registry = postgres_s3_registry(tmp_path / "data", postgres, swift_s3)
    hasher = hashlib.sha256()
    tails: list[bytes] = []

    def chunk_body(seed: int):
        last = b""
        for piece in pattern_stream(CHUNK, seed=seed):
            hasher.update(piece)
            last = piece
            yield piece
        tails.append(last[-16:])

    with registry, httpx.Client(base_url=registry.url, timeout=900) as http:
        location = http.post("/v2/big/six/blobs/uploads/").headers["Location"]
        for index in range(CHUNKS):
            start = index * CHUNK
            status, headers, body = request(registry.host, "PATCH", location, body=chunk_body(100 + index),
                                            headers={"Content-Length": str(CHUNK),
                                                     "Content-Range": f"{start}-{start + CHUNK - 1}",
                                                     "Content-Type": "application/octet-stream"}, timeout=900)
            assert status == 202, body
            assert headers["range"] == f"0-{start + CHUNK - 1}"
            location = headers["location"]
        digest = "sha256:" + hasher.hexdigest()
        done = http.put(location, params={"digest": digest})
        assert done.status_code == 201, done.text

        total = CHUNK * CHUNKS
        head = http.head(f"/v2/big/six/blobs/{digest}")
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == total
        # The last bytes of each chunk, read back by Range across the part boundaries.
        for index, tail in enumerate(tails):
            end = (index + 1) * CHUNK - 1
            piece = http.get(f"/v2/big/six/blobs/{digest}", headers={"Range": f"bytes={end - 15}-{end}"})
            assert piece.status_code == 206 and piece.content == tail
        peak = _peak_rss(registry.pid)
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
    print(f"server peak RSS over a 6 GiB push to S3: {peak / 2**20:.0f} MiB")

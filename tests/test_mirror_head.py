"""A HEAD of a blob the mirror has not cached is answered with a HEAD to the upstream: clients
check what exists before they download (docker, containerd), and a check must not cost a download."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.mirror import AccessLog, push_blob
from tests.support.server import RegistryProcess


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    root = tmp_path_factory.mktemp("mirror-head")
    with RegistryProcess(root / "upstream") as upstream:
        env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "up", "url": upstream.url}])}
        with RegistryProcess(root / "mirror", env=env) as mirror:
            yield mirror, upstream


def test_head_of_uncached_blob_is_a_head_upstream(pair: tuple[RegistryProcess, RegistryProcess]) -> None:
    mirror, upstream = pair
    repo = f"heads/{uuid.uuid4().hex[:8]}"
    data = os.urandom(3 * 1024 * 1024)
    digest = push_blob(upstream.url, repo, data)
    log = AccessLog(upstream.log_path)
    mark = log.mark()

    head = httpx.head(f"{mirror.url}/v2/up/{repo}/blobs/{digest}", timeout=30)
    assert head.status_code == 200, head.text
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest

    seen = AccessLog.matching(log.since(mark), prefix=f"/v2/{repo}/blobs/")
    assert [a.method for a in seen] == ["HEAD"], f"upstream saw:\n{AccessLog.show(seen)}"
    assert mirror.storage.blob_bytes(digest) is None, "a HEAD must not fill the cache"

    # The GET that follows downloads it once; a HEAD afterwards is answered from the cache.
    got = httpx.get(f"{mirror.url}/v2/up/{repo}/blobs/{digest}", timeout=60)
    assert got.status_code == 200 and _sha(got.content) == digest
    mark = log.mark(settle=1.0)
    assert httpx.head(f"{mirror.url}/v2/up/{repo}/blobs/{digest}", timeout=30).status_code == 200
    assert not AccessLog.matching(log.since(mark), prefix=f"/v2/{repo}/blobs/")
    assert "Traceback" not in mirror.log_path.read_text(errors="replace")


def test_head_of_blob_missing_upstream_is_blob_unknown(pair: tuple[RegistryProcess, RegistryProcess]) -> None:
    mirror, _ = pair
    missing = _sha(b"nobody pushed this " + os.urandom(8))
    head = httpx.head(f"{mirror.url}/v2/up/heads/none/blobs/{missing}", timeout=30)
    assert head.status_code == 404
    got = httpx.get(f"{mirror.url}/v2/up/heads/none/blobs/{missing}", timeout=30)
    assert got.status_code == 404 and got.json()["errors"][0]["code"] == "BLOB_UNKNOWN"

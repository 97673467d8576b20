"""One upstream fetch per blob across registry processes: two mirror processes share PostgreSQL
and a blob store; 20 concurrent cold pulls spread over both reach the upstream once."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.server import RegistryProcess

BLOB = 16 * 1024 * 1024


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_twenty_cold_pulls_over_two_processes_fetch_once(tmp_path, postgres):
    data = os.urandom(BLOB)
    digest = _sha(data)
    with RegistryProcess(tmp_path / "upstream") as upstream:
        assert httpx.post(f"{upstream.url}/v2/library/big/blobs/uploads/", params={"digest": digest},
                          content=data, timeout=60).status_code == 201
        env = {"REGISTRY_MIRROR_UPSTREAMS": json.dumps([{"alias": "hub", "url": upstream.url, "docker_hub": True}]),
               "REGISTRY_DATABASE_URL": postgres.create_database(),
               "REGISTRY_STORAGE_ROOT": str(tmp_path / "shared-blobs")}
        first = RegistryProcess(tmp_path / "m1", env=env).start()
        second = RegistryProcess(tmp_path / "m2", env=env).start()
        try:
            mirrors = [first, second]

            def pull(i: int) -> str:
                mirror = mirrors[i % 2]
                response = httpx.get(f"{mirror.url}/v2/library/big/blobs/{digest}", timeout=120)
                assert response.status_code == 200, response.text
                return _sha(response.content)

            with ThreadPoolExecutor(20) as pool:
                received = list(pool.map(pull, range(20)))
        finally:
            first.stop()
            second.stop()
        upstream_gets = [line for line in upstream.log_path.read_text().splitlines()
                         if f"GET /v2/library/big/blobs/{digest}" in line]
    assert received == [digest] * 20
    assert len(upstream_gets) == 1, upstream_gets

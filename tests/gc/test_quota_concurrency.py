"""A quota holds under concurrent pushes on PostgreSQL: 50 upload finishes that together need five times
the quota, sent at once to two worker processes, leave the namespace at or under it.

The usage is a counter moved by the link's own transaction, and a link locks its namespace's counter
first (migration 0010), so a finish reads a total no concurrent one can overtake. When the check and
the link were separate transactions, every finish saw the namespace empty and all 50 were linked.
"""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.api.helpers import random_bytes, sha256, start_upload, with_query
from tests.support.server import RegistryProcess

BLOB_BYTES = 64 * 1024
QUOTA_BLOBS = 10
FINISHES = 50


def test_fifty_concurrent_finishes_never_take_a_namespace_over_its_quota(tmp_path, postgres) -> None:
    quota = QUOTA_BLOBS * BLOB_BYTES
    env = {"REGISTRY_DATABASE_URL": postgres.create_database(),
           "REGISTRY_QUOTA_NAMESPACES": json.dumps([{"namespace": "team", "bytes": quota}])}
    blobs = [random_bytes(BLOB_BYTES) for _ in range(FINISHES)]
    with RegistryProcess(tmp_path / "data", env=env, args=["--workers", "2"]) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            sessions = []
            for index, data in enumerate(blobs):  # every upload staged first, none finished
                name = f"team/app{index % 5}"
                location = start_upload(http, name).headers["Location"]
                patched = http.patch(location, content=data, headers={"Content-Type": "application/octet-stream"})
                assert patched.status_code == 202, patched.text
                sessions.append((name, patched.headers["Location"], sha256(data)))

        async def finish_all() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=FINISHES)  # 50 connections, spread over both workers
            async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
                return await asyncio.gather(*[client.put(with_query(location, digest=digest))
                                              for _, location, digest in sessions])

        results = asyncio.run(finish_all())
        statuses = [r.status_code for r in results]
        denied = [r for r in results if r.status_code == 403]
        assert set(statuses) <= {201, 403}, [r.text for r in results if r.status_code not in (201, 403)]
        assert all(r.json()["errors"][0]["code"] == "DENIED" for r in denied)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            stored = [http.head(f"/v2/{name}/blobs/{digest}").status_code == 200 for name, _, digest in sessions]
        linked_bytes = sum(BLOB_BYTES for present in stored if present)
        assert linked_bytes <= quota, f"{sum(stored)} blobs linked: {linked_bytes} bytes over a {quota}-byte quota"
        assert statuses.count(201) == sum(stored) == QUOTA_BLOBS  # and the quota is filled, not starved

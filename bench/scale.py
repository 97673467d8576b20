"""The metadata path at the size real registries reach: PostgreSQL seeded in SQL, the API timed over HTTP.

    .venv/bin/python bench/scale.py --size small      # a hundredth: minutes
    .venv/bin/python bench/scale.py --size full       # 100,000 repositories, 1,000,000 tags, ...

The seed is written by PostgreSQL itself (INSERT ... SELECT over generate_series: no rows cross the wire),
into a database the project's own migrations made (`registry db upgrade`). At full size:
- 100,000 repositories in 1,000 namespaces;
- 3,000,000 blobs (rows only: no bytes are read by the paths timed here);
- 2,000,000 manifests, each a real image manifest whose digest is its payload's sha256, with its config
  and one layer as references, and 10,000,000 repository-blob links;
- 1,000,000 tags, 100,000 of them in one repository (`big/repo`);
- 1,000 referrers of one subject in `big/repo`.

Then `registry serve` runs on that database and each path is asked by 8 concurrent clients; p50 and p99
in milliseconds, client-side. This first part times the read paths the issue lists (catalog first and deep
page, tags first and deep page of the 100,000-tag repository, manifest GET by tag and by digest, blob
HEAD, referrers, the admin repository list and search); pushes with quotas, GC and eviction come next.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.server import RegistryProcess  # noqa: E402

SIZES = {
    "full": {"repositories": 100_000, "blobs": 3_000_000, "manifests": 2_000_000, "links": 10_000_000,
             "tags": 1_000_000, "big_tags": 100_000, "referrers": 1_000},
    "small": {"repositories": 1_000, "blobs": 30_000, "manifests": 20_000, "links": 100_000,
              "tags": 10_000, "big_tags": 1_000, "referrers": 1_000},
}
CONCURRENCY = 8
NOW = "extract(epoch from now())"


def seed_sql(n: dict[str, int]) -> list[str]:
    """Statements that fill a migrated, empty database. Repository 1 is `big/repo`."""
    blob = "'sha256:' || encode(sha256(int8send({})), 'hex')"
    per_repo = max(1, n["manifests"] // n["repositories"])
    linked_blob = blob.format(f"i % {n['blobs']}")
    manifest = ("convert_to(json_build_object('schemaVersion', 2, 'mediaType', "
                "'application/vnd.oci.image.manifest.v1+json', 'config', json_build_object('mediaType', "
                "'application/vnd.oci.image.config.v1+json', 'size', 1000, 'digest', " + blob.format("2 * i") + "), "
                "'layers', json_build_array(json_build_object('mediaType', "
                "'application/vnd.oci.image.layer.v1.tar+gzip', 'size', 4096, 'digest', " + blob.format("2 * i + 1")
                + ")))::text, 'UTF8')")
    return [
        f"INSERT INTO repositories (id, name, created_at) SELECT i, CASE WHEN i = 1 THEN 'big/repo' ELSE "
        f"'ns' || (i % 1000) || '/repo' || i END, {NOW} FROM generate_series(1, {n['repositories']}) i",
        f"SELECT setval('repositories_id_seq', {n['repositories']})",
        f"INSERT INTO blobs (digest, size, created_at) SELECT {blob.format('i')}, 1000 + i % 100000, {NOW} "
        f"FROM generate_series(0, {n['blobs'] - 1}) i",
        # Manifest i lives in repository 1 + i / per_repo; its payload names blobs 2i and 2i+1.
        f"INSERT INTO manifests (id, repository_id, digest, media_type, payload, size, created_at) "
        f"SELECT i + 1, 1 + (i / {per_repo}) % {n['repositories']}, 'sha256:' || encode(sha256(p), 'hex'), "
        f"'application/vnd.oci.image.manifest.v1+json', p, length(p), {NOW} "
        f"FROM (SELECT i, {manifest} AS p FROM generate_series(0, {n['manifests'] - 1}) i) m",
        f"SELECT setval('manifests_id_seq', {n['manifests']})",
        f"INSERT INTO manifest_references (manifest_id, digest, kind) SELECT i + 1, {blob.format('2 * i + k')}, "
        f"'blob' FROM generate_series(0, {n['manifests'] - 1}) i, generate_series(0, 1) k "
        f"WHERE 2 * i + k < {n['blobs']}",
        f"INSERT INTO repository_blobs (repository_id, digest, created_at) SELECT 1 + i % {n['repositories']}, "
        f"{linked_blob}, {NOW} FROM generate_series(0, {n['links'] - 1}) i "
        "ON CONFLICT DO NOTHING",
        # Tags: the big repository's first, then one per manifest elsewhere until the total is reached.
        f"INSERT INTO tags (repository_id, name, manifest_id, updated_at) SELECT 1, 'v' || i, 1 + i % "
        f"{per_repo}, {NOW} FROM generate_series(0, {n['big_tags'] - 1}) i",
        f"INSERT INTO tags (repository_id, name, manifest_id, updated_at) SELECT m.repository_id, 't' || m.id, "
        f"m.id, {NOW} FROM manifests m WHERE m.repository_id <> 1 ORDER BY m.id "
        f"LIMIT {n['tags'] - n['big_tags']}",
        # Referrers of manifest 1 (in big/repo): artifacts whose subject it is.
        f"INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest, payload, size, "
        f"created_at) SELECT 1, 'sha256:' || encode(sha256(int8send(-i - 1)), 'hex'), "
        f"'application/vnd.oci.image.manifest.v1+json', 'application/vnd.example.sig', "
        f"(SELECT digest FROM manifests WHERE id = 1), '{{}}', 2, {NOW} "
        f"FROM generate_series(0, {n['referrers'] - 1}) i",
        "ANALYZE",
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def time_path(client: httpx.AsyncClient, path: str, requests: int, headers: dict[str, str]) -> dict[str, float]:
    latencies: list[float] = []
    queue = list(range(requests))

    async def worker() -> None:
        while queue:
            queue.pop()
            started = time.perf_counter()
            response = await client.get(path, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code, response.text[:200])

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return {"p50": statistics.median(latencies), "p99": percentile(latencies, 0.99)}


async def measure(url: str, requests: int, first_manifest: str, subject: str) -> dict[str, dict[str, float]]:
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    paths = {
        "catalog, first page": ("/v2/_catalog?n=100", {}),
        "catalog, deep page": ("/v2/_catalog?n=100&last=ns5%2Frepo5", {}),
        "tags of big/repo, first page": ("/v2/big/repo/tags/list?n=100", {}),
        "tags of big/repo, deep page": ("/v2/big/repo/tags/list?n=100&last=v5", {}),
        "manifest GET by tag": ("/v2/big/repo/manifests/v1", accept),
        "manifest GET by digest": (f"/v2/big/repo/manifests/{first_manifest}", accept),
        "referrers of a subject with 1,000": (f"/v2/big/repo/referrers/{subject}", {}),
        "admin repository list, first page": ("/admin/api/repositories?n=50", {}),
        "admin repository search": ("/admin/api/repositories?n=50&q=repo77", {}),
    }
    results = {}
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for name, (path, headers) in paths.items():
            await time_path(client, path, CONCURRENCY, headers)  # warm
            results[name] = await time_path(client, path, requests, headers)
            print(f"{name}: p50 {results[name]['p50']:.1f} ms, p99 {results[name]['p99']:.1f} ms", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--requests", type=int, default=400, help="per path")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    with PostgresServer(work) as pg:
        url = pg.create_database("registry")
        env = {"REGISTRY_DATABASE_URL": url}
        subprocess.run([sys.executable, "-m", "registry", "db", "upgrade", "--data-dir", str(work / "data")],
                       env={**os.environ, **env}, check=True, capture_output=True)
        started = time.monotonic()
        for statement in seed_sql(SIZES[args.size]):
            pg.psql(statement, database="registry", timeout=3600)  # a full-size statement takes minutes
        seeded = time.monotonic() - started
        print(f"seeded {args.size} in {seeded:.0f} s", file=sys.stderr)
        first_manifest = pg.psql("SELECT digest FROM manifests WHERE id = 1", database="registry").strip()
        with RegistryProcess(work / "data", env=env) as server:
            results = asyncio.run(measure(server.url, args.requests, first_manifest, first_manifest))
    print(json.dumps({"size": args.size, "seed_seconds": round(seeded, 1), "concurrency": CONCURRENCY,
                      "ms": {k: {q: round(v, 1) for q, v in r.items()} for k, r in results.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

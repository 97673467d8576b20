"""Referrers of one subject with many referrers, timed over HTTP against a real server process.

    python -m tests.support.referrers_load [--referrers 1000] [--gets 100] [--clients 8] [--postgres]
                                           [--server-path BEFORE --server-path AFTER]

Pushes a small image (the subject), then `--referrers` small artifacts whose subject it is (each with
an artifactType and an annotation, over HTTP, 8 at once), then times `--gets` GETs of
/v2/<name>/referrers/<digest> from `--clients` concurrent clients and prints p50/p99 in ms, and the
same for the artifactType-filtered list. SQLite by default; --postgres starts a throwaway PostgreSQL
(tests/support/postgres.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.server import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
EMPTY = b"{}"
KINDS = ("application/vnd.example.sbom.v1", "application/vnd.example.signature.v1")
REPOSITORY = "load/referrers"
REPO_ROOT = Path(__file__).resolve().parents[2]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def _manifest(config: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [],
                       **extra}).encode()


async def _put_blob(session: aiohttp.ClientSession, data: bytes) -> None:
    async with session.post(f"/v2/{REPOSITORY}/blobs/uploads/", params={"digest": sha256(data)}, data=data) as r:
        assert r.status == 201, await r.text()


async def _put_manifest(session: aiohttp.ClientSession, body: bytes) -> None:
    async with session.put(f"/v2/{REPOSITORY}/manifests/{sha256(body)}", data=body,
                           headers={"Content-Type": OCI_MANIFEST}) as r:
        assert r.status == 201, await r.text()


async def push(url: str, referrers: int) -> str:
    """The subject and its referrers; returns the subject's digest."""
    async with aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=8)) as session:
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        for blob in (config, EMPTY):
            await _put_blob(session, blob)
        subject = _manifest({"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)})
        await _put_manifest(session, subject)
        descriptor = {"mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": len(subject)}
        empty = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(EMPTY), "size": len(EMPTY)}
        bodies = [_manifest(empty, artifactType=KINDS[i % 2], subject=descriptor,
                            annotations={"org.opencontainers.image.created": f"2026-01-01T00:00:{i % 60:02}Z",
                                         "load.index": str(i)})
                  for i in range(referrers)]
        queue = iter(bodies)

        async def pusher() -> None:
            for body in queue:
                await _put_manifest(session, body)

        await asyncio.gather(*(pusher() for _ in range(8)))
        return sha256(subject)


async def timed_gets(url: str, path: str, gets: int, clients: int, expect: int) -> dict[str, float]:
    latencies: list[float] = []
    bodies: set[bytes] = set()
    remaining = iter(range(gets))
    async with aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=clients)) as session:
        async def client() -> None:
            for _ in remaining:
                started = time.perf_counter()
                async with session.get(path) as r:
                    body = await r.read()
                latencies.append(time.perf_counter() - started)
                assert r.status == 200, body[:300]
                bodies.add(body)  # parsed once below: the client's CPU is the server's on a small machine

        await asyncio.gather(*(client() for _ in range(clients)))
    assert len(bodies) == 1 and len(json.loads(bodies.pop())["manifests"]) == expect
    return {"p50_ms": round(percentile(latencies, 50) * 1000, 1), "p99_ms": round(percentile(latencies, 99) * 1000, 1)}


@contextlib.contextmanager
def registries(root: Path, postgres: bool, server_paths: list[str]) -> Iterator[list[RegistryProcess]]:
    """A server per source tree (this one's when none is given), each with a database of its own."""
    with contextlib.ExitStack() as stack:
        pg = None
        if postgres:
            from tests.support.postgres import PostgresServer

            pg = stack.enter_context(PostgresServer(root / "pg"))
        servers = []
        for index, source in enumerate(server_paths or [str(REPO_ROOT)]):
            # `python -m registry` looks in its working directory first: the servers start from `root`.
            env = {"PYTHONPATH": str(Path(source).resolve())}
            if pg is not None:
                env["REGISTRY_DATABASE_URL"] = pg.create_database()
            server = RegistryProcess(root / f"data{index}", env=env)
            stack.callback(server.stop)
            with contextlib.chdir(root):
                servers.append(server.start())
        yield servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--referrers", type=int, default=1000)
    parser.add_argument("--gets", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; each one's figures are printed")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--server-path", action="append", default=[], metavar="DIR",
                        help="a source tree (PYTHONPATH) for a server of its own; given twice, the servers' rounds "
                             "interleave (before/after on one machine's noise)")
    args = parser.parse_args()
    database = "PostgreSQL" if args.postgres else "SQLite"
    with tempfile.TemporaryDirectory(prefix="referrers-load-") as tmp, \
            registries(Path(tmp), args.postgres, args.server_path) as servers:
        paths = []
        for server in servers:
            started = time.monotonic()
            subject = asyncio.run(push(server.url, args.referrers))
            print(f"{server.env['PYTHONPATH']}: pushed {args.referrers} referrers in "
                  f"{time.monotonic() - started:.1f}s ({database})", flush=True)
            paths.append(f"/v2/{REPOSITORY}/referrers/{subject}")
        for round_ in range(args.rounds):
            for server, path in zip(servers, paths):
                whole = asyncio.run(timed_gets(server.url, path, args.gets, args.clients, args.referrers))
                filtered = asyncio.run(timed_gets(server.url, f"{path}?artifactType={KINDS[0]}", args.gets,
                                                  args.clients, (args.referrers + 1) // 2))
                print(json.dumps({"server": server.env["PYTHONPATH"], "round": round_ + 1,
                                  "all": whole, "filtered": filtered}), flush=True)


if __name__ == "__main__":
    main()

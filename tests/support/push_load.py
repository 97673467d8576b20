"""Many small pushes at once while another process times GET /v2/: how long an event loop of
the server stalls under write load (tests/test_sqlite_workers.py and bench/starve.py).

Each push is a layer of 1 KiB (POST, then PUT ?digest=) and a manifest PUT naming it and a
config pushed once before. The probe runs in its own process (`python -m tests.support.push_load
URL`): in the pushing process, its timings would include that client's own loop and GIL.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.slow_peers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256

REPO_ROOT = Path(__file__).resolve().parents[2]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def concurrent_pushes_with_probe(url: str, pushes: int, concurrency: int) -> dict[str, Any]:
    """`pushes` small image pushes, `concurrency` at once, while a separate process (its own GIL and
    loop: the pushing client's load must not inflate the probe) times GET /v2/ every 5 ms."""
    probe = subprocess.Popen([sys.executable, "-m", "tests.support.push_load", url], cwd=REPO_ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        outcome = asyncio.run(_push_many(url, pushes, concurrency))
    finally:
        out, _ = probe.communicate("", timeout=60)
    report = json.loads(out)
    latencies = report["latencies"]
    return {"probes": len(latencies), "probe_failures": report["failures"][:3],
            "probe_p50_ms": percentile(latencies, 50) * 1000, "probe_p99_ms": percentile(latencies, 99) * 1000, "probe_max_ms": max(latencies) * 1000,
            **outcome}


async def _push_many(url: str, pushes: int, concurrency: int) -> dict[str, Any]:
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    latencies: list[float] = []
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        async with session.post("/v2/workers/push/blobs/uploads/", params={"digest": sha256(config)},
                                data=config) as response:
            assert response.status == 201, await response.text()
        counter = iter(range(pushes))

        async def one(i: int) -> None:
            layer = f"layer {i} {uuid.uuid4().hex}".encode().ljust(1024, b".")
            async with session.post("/v2/workers/push/blobs/uploads/") as response:
                await response.read()
                if response.status != 202:
                    raise RuntimeError(f"POST: {response.status}")
                location = response.headers["Location"]
            async with session.put(location, params={"digest": sha256(layer)}, data=layer,
                                   headers={"Content-Type": "application/octet-stream"}) as response:
                if response.status != 201:
                    raise RuntimeError(f"PUT blob: {response.status} {await response.text()}")
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
            }).encode()
            async with session.put(f"/v2/workers/push/manifests/t{i}", data=manifest,
                                   headers={"Content-Type": OCI_MANIFEST}) as response:
                if response.status != 201:
                    raise RuntimeError(f"PUT manifest: {response.status} {await response.text()}")

        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                try:
                    await one(i)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    failures.append(repr(exc))
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    return {"pushes": pushes, "seconds": seconds, "pushes_per_s": pushes / seconds, "failed": len(failures),
            "first_failures": failures[:3], "push_p50_ms": percentile(latencies, 50) * 1000,
            "push_p99_ms": percentile(latencies, 99) * 1000}


def probe(url: str) -> None:
    """GET /v2/ on a new connection every 5 ms (new connections land on either worker) until stdin
    closes; print the latencies and the failures as JSON."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    parts = urllib.parse.urlsplit(url)
    latencies: list[float] = []
    failures: list[str] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("GET", "/v2/")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"GET /v2/: {response.status}")
        except OSError as exc:
            failures.append(f"GET /v2/: {exc!r}")
        finally:
            conn.close()
        latencies.append(time.perf_counter() - t0)
        time.sleep(0.005)
    print(json.dumps({"latencies": latencies, "failures": failures}))


if __name__ == "__main__":
    probe(sys.argv[1])

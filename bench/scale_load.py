"""The HTTP side of bench/scale.py: read paths, small pushes and reads while a job runs, each timed
client-side by concurrent clients (milliseconds)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import time
from collections.abc import Awaitable
from typing import Any

import httpx

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies: list[float]) -> dict[str, float]:
    if not latencies:  # a job so short no request started during it: say so rather than invent a figure
        return {"p50": float("nan"), "p99": float("nan"), "n": 0}
    return {"p50": statistics.median(latencies), "p99": percentile(latencies, 0.99), "n": len(latencies)}


async def ask(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> float:
    """One request, its latency in ms; anything but 200 stops the bench (a figure of errors is no figure)."""
    started = time.perf_counter()
    response = await client.request(method, path, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
    return elapsed


async def time_path(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], requests: int,
                    concurrency: int) -> list[float]:
    latencies: list[float] = []
    remaining = [requests]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            latencies.append(await ask(client, method, path, headers))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def time_paths(client: httpx.AsyncClient, paths: dict[str, tuple[str, str, dict[str, str]]], requests: int,
                     concurrency: int, report: Any) -> dict[str, dict[str, float]]:
    """Each path in turn: one warm-up round, then `requests` requests by `concurrency` clients."""
    results = {}
    for name, (method, path, headers) in paths.items():
        await time_path(client, method, path, headers, concurrency, concurrency)
        results[name] = summary(await time_path(client, method, path, headers, requests, concurrency))
        report(name, results[name])
    return results


# -- pushes -------------------------------------------------------------------------------------------
async def upload(client: httpx.AsyncClient, repository: str, data: bytes, steps: dict[str, list[float]]) -> str:
    """POST then a monolithic PUT; returns the digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = time.perf_counter()
    response = await client.post(f"/v2/{repository}/blobs/uploads/")
    steps["upload start (POST)"].append((time.perf_counter() - started) * 1000)
    if response.status_code != 202:
        raise RuntimeError(f"POST upload to {repository}: {response.status_code} {response.text[:200]}")
    location = response.headers["Location"]
    started = time.perf_counter()
    response = await client.put(location, params={"digest": digest}, content=data,
                                headers={"Content-Type": "application/octet-stream"})
    steps["upload finish (PUT)"].append((time.perf_counter() - started) * 1000)
    if response.status_code != 201:
        raise RuntimeError(f"PUT upload to {repository}: {response.status_code} {response.text[:200]}")
    return digest


async def push(client: httpx.AsyncClient, repository: str, tag: str, steps: dict[str, list[float]]) -> None:
    """A small image: a config and one 1 KiB layer of fresh random bytes, then its manifest."""
    started = time.perf_counter()
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
    layer = os.urandom(1024)
    config_digest = await upload(client, repository, config, steps)
    layer_digest = await upload(client, repository, layer, steps)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                                      "digest": config_digest},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(layer),
                                       "digest": layer_digest}]}).encode()
    put_started = time.perf_counter()
    response = await client.put(f"/v2/{repository}/manifests/{tag}", content=manifest,
                                headers={"Content-Type": MANIFEST})
    now = time.perf_counter()
    if response.status_code != 201:
        raise RuntimeError(f"PUT manifest {repository}:{tag}: {response.status_code} {response.text[:200]}")
    steps["manifest PUT"].append((now - put_started) * 1000)
    steps["push"].append((now - started) * 1000)


async def time_pushes(client: httpx.AsyncClient, repository: str, pushes: int,
                      concurrency: int) -> dict[str, dict[str, float]]:
    """`pushes` small pushes by `concurrency` clients: the whole push, and each kind of request in it."""
    steps: dict[str, list[float]] = {"push": [], "upload start (POST)": [], "upload finish (PUT)": [],
                                     "manifest PUT": []}
    await push(client, repository, "warm", {k: [] for k in steps})
    remaining = [pushes]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await push(client, repository, f"p{remaining[0]}", steps)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {name: summary(latencies) for name, latencies in steps.items()}


# -- reads while a job runs ---------------------------------------------------------------------------
async def during(client: httpx.AsyncClient, job: Awaitable[Any], paths: dict[str, tuple[str, str, dict[str, str]]],
                 concurrency: int) -> tuple[Any, dict[str, dict[str, float]]]:
    """Run `job` while `concurrency` clients ask the paths round-robin (client k starts with path k, so
    each path is asked at once); the latencies of the requests sent before the job finished."""
    names = list(paths)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    done = asyncio.Event()

    async def worker(k: int) -> None:
        turn = k
        while not done.is_set():
            name = names[turn % len(names)]
            method, path, headers = paths[name]
            latencies[name].append(await ask(client, method, path, headers))
            turn += 1

    async def run_job() -> Any:
        try:
            return await job
        finally:
            done.set()

    result, *_ = await asyncio.gather(run_job(), *(worker(k) for k in range(concurrency)))
    return result, {name: summary(values) for name, values in latencies.items()}

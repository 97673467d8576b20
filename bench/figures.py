"""Further figures that bench/run.py's first workload lacked, in the `filesystem` set:

- pull_concurrent: N clients (threads, one keep-alive connection each) GET the big blob at once;
  aggregate MB/s from their common start to the last byte of the last one.
- small_upload: 1 KiB blobs, POST then PUT ?digest= (monolithic), at 32 in flight; a finished
  upload counts as one (uploads/s).
- blob_head: HEAD of the big blob at 32 in flight (requests/s).
- catalog_page / catalog_walk: with 10,000 repositories seeded through the API (untimed, once per
  set), the latency of `GET /v2/_catalog?n=100` (median of 20 in a row), and of walking every page
  by the Link header.

The same client code also pulls from nginx for the machine's sendfile limit (bench/limits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import statistics
import threading
import time
import urllib.parse
from typing import Any
from collections.abc import Iterator

import aiohttp

from run import (MB, OCI_CONFIG, OCI_MANIFEST, BlobClient, Burst, StepError,  # noqa: E402
                 _burst, describe_response, discard_body, push_small_blob)
from servers import process_tree  # noqa: E402

SMALL_BLOB_BYTES = 1024
CATALOG_PREFIX = "catalog/r"
CATALOG_REQUESTS = 20


# --------------------------------------------------------------------------------------------
# Large GETs: one client or N at once (registries and nginx alike)

def get_body(c: BlobClient, path: str, size: int) -> None:
    """GET path and splice the body to /dev/null (see run.discard_body); checks the length."""
    resp = c.send("GET", path)
    if resp.status != 200:
        raise StepError(f"GET {path}: expected 200, got {resp.status}",
                        describe_response("GET", path, resp.status, resp.headers, resp.read()))
    total = discard_body(resp, c.conn.sock, resp.length) if resp.length is not None else 0
    if resp.will_close:
        c._reset()
    if total != size:
        raise StepError(f"GET {path}: read {total} bytes, expected {size}",
                        describe_response("GET", path, resp.status, resp.headers, None))


@contextlib.contextmanager
def separate_cores(server_pid: int | None) -> Iterator[None]:
    """For a single-stream figure: every thread of the server's process tree on the first CPU,
    the calling (client) thread on the last. Left alone, the scheduler often wakes a loopback
    peer on the waker's CPU, and then server and client share one core while the other idles
    (a pull at about 2 GB/s instead of 6.5). Affinity is restored to every CPU afterwards
    (threads the server started meanwhile included)."""
    mine = os.sched_getaffinity(0)
    cpus = sorted(mine)
    if server_pid is None or len(cpus) < 2:
        yield
        return
    _pin_tree(server_pid, {cpus[0]})
    os.sched_setaffinity(0, {cpus[-1]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)
        _pin_tree(server_pid, set(cpus))


def _pin_tree(pid: int, cpus: set[int]) -> None:
    for process in process_tree(pid):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{process}/task"):
                with contextlib.suppress(OSError):  # a thread that ended meanwhile
                    os.sched_setaffinity(int(tid), cpus)


def get_once(base_url: str, path: str, size: int, server_pid: int | None = None) -> float:
    """Seconds of one GET of `path` on a new connection (opened untimed), the server and this
    client on separate cores (see separate_cores)."""
    c = BlobClient(base_url)
    try:
        c.conn.connect()
        with separate_cores(server_pid):
            t0 = time.perf_counter()
            get_body(c, path, size)
            return time.perf_counter() - t0
    finally:
        c.close()


def get_concurrent(base_url: str, path: str, size: int, clients: int) -> float:
    """`clients` threads GET path at once, each on its own connection (opened untimed); aggregate MB/s
    from their release at a barrier to the end of the slowest. hashlib is not involved, and
    readinto releases the GIL while waiting on the socket."""
    conns = [BlobClient(base_url) for _ in range(clients)]
    for c in conns:
        c.conn.connect()
    barrier = threading.Barrier(clients + 1)
    errors: list[StepError | Exception] = []

    def one(c: BlobClient) -> None:
        barrier.wait()
        try:
            get_body(c, path, size)
        except Exception as exc:  # noqa: BLE001 - reported below, after every thread ended
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in conns]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    for c in conns:
        c.close()
    if errors:
        first = errors[0]
        if isinstance(first, StepError):
            raise StepError(f"{len(errors)} of {clients} pulls failed; first: {first}", first.detail)
        raise StepError(f"{len(errors)} of {clients} pulls failed; first: {first!r}")
    return size * clients / seconds / MB


# --------------------------------------------------------------------------------------------
# Small requests at N in flight

def small_blobs(label: str, n: int) -> list[tuple[bytes, str]]:
    """n distinct 1 KiB bodies (label and index, padded) with their digests; built untimed."""
    out = []
    for i in range(n):
        body = f"{label} small blob {i}\n".encode().ljust(SMALL_BLOB_BYTES, b".")[:SMALL_BLOB_BYTES]
        out.append((body, "sha256:" + hashlib.sha256(body).hexdigest()))
    return out


def relative(location: str) -> str:
    """The path?query of a Location (the reference sends absolute URLs; the session has a base URL)."""
    parts = urllib.parse.urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def upload_small_blobs(base_url: str, repo: str, blobs: list[tuple[bytes, str]], concurrency: int) -> Burst:
    async def one(session: aiohttp.ClientSession, i: int) -> None:
        body, digest = blobs[i]
        path = f"/v2/{repo}/blobs/uploads/"
        async with session.post(path) as resp:
            text = await resp.read()
            loc = resp.headers.get("Location")
            if resp.status != 202 or not loc:
                raise StepError(f"POST {path}: expected 202 with a Location, got {resp.status}",
                                describe_response("POST", path, resp.status, resp.headers, text))
        put = relative(loc)
        put += ("&" if "?" in put else "?") + urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream"}
        async with session.put(put, data=body, headers=headers) as resp:
            text = await resp.read()
            if resp.status != 201:
                raise StepError(f"PUT {put}: expected 201, got {resp.status}",
                                describe_response("PUT", put, resp.status, resp.headers, text, headers))

    return asyncio.run(_burst(base_url, concurrency, len(blobs), one))


def head_blobs(base_url: str, repo: str, digest: str, size: int, n: int, concurrency: int) -> Burst:
    path = f"/v2/{repo}/blobs/{digest}"

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        async with session.head(path) as resp:
            await resp.read()
            length = resp.headers.get("Content-Length")
            if resp.status != 200 or length != str(size):
                raise StepError(f"HEAD {path}: expected 200 with Content-Length {size}, got {resp.status} "
                                f"with {length}", describe_response("HEAD", path, resp.status, resp.headers, None))

    return asyncio.run(_burst(base_url, concurrency, n, one))


# --------------------------------------------------------------------------------------------
# Catalog of many repositories

def catalog_name(i: int) -> str:
    return f"{CATALOG_PREFIX}{i:05d}"


def catalog_manifest(config: bytes) -> bytes:
    """One OCI manifest for every seeded repository: the config blob, no layers (both registries
    accept it), so a repository costs one blob mount and one manifest PUT."""
    cdesc = {"mediaType": OCI_CONFIG, "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)}
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc, "layers": []},
                      separators=(",", ":")).encode()


def seed_catalog(c: BlobClient, base_url: str, count: int, config: bytes, concurrency: int) -> Burst:
    """Untimed set-up: repositories catalog/r00000 .. r{count-1}, each with one manifest (ours lists
    only repositories holding a manifest; the reference lists any with a blob link). The first gets
    the config pushed; every other one mounts it from there, then gets the manifest PUT as tag v1."""
    digest = push_small_blob(c, catalog_name(0), config)
    manifest = catalog_manifest(config)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        repo = catalog_name(i)
        if i:
            mount = f"/v2/{repo}/blobs/uploads/?mount={digest}&from={catalog_name(0)}"
            async with session.post(mount) as resp:
                text = await resp.read()
                if resp.status != 201:
                    raise StepError(f"POST {mount}: expected 201 (mounted), got {resp.status}",
                                    describe_response("POST", mount, resp.status, resp.headers, text))
        path = f"/v2/{repo}/manifests/v1"
        async with session.put(path, data=manifest, headers={"Content-Type": OCI_MANIFEST}) as resp:
            text = await resp.read()
            if resp.status != 201:
                raise StepError(f"PUT {path}: expected 201, got {resp.status}",
                                describe_response("PUT", path, resp.status, resp.headers, text))

    return asyncio.run(_burst(base_url, concurrency, count, one))


def next_link(headers: Any) -> str | None:
    """The target of a `Link: <...>; rel="next"` header, as a path, or None on the last page."""
    link = headers.get("Link")
    if not link or 'rel="next"' not in link:
        return None
    return relative(link[link.index("<") + 1:link.index(">")])


def catalog_page_ms(c: BlobClient, page: int, requests: int = CATALOG_REQUESTS) -> tuple[float, list[float]]:
    """Median latency (ms) of GET /v2/_catalog?n=page, `requests` times in a row on one connection."""
    path = f"/v2/_catalog?n={page}"
    lat = []
    for i in range(requests):
        t0 = time.perf_counter()
        _, headers, body = c.call("GET", path, 200)
        lat.append((time.perf_counter() - t0) * 1000)
        if i == 0:
            names = json.loads(body).get("repositories") or []
            if len(names) != page or next_link(headers) is None:
                raise StepError(f"GET {path}: {len(names)} names and Link {headers.get('Link')!r}; "
                                f"expected {page} and a next page", describe_response("GET", path, 200, headers, body[:500]))
    return statistics.median(lat), lat


def catalog_walk_ms(c: BlobClient, page: int, seeded: int) -> tuple[float, int, int]:
    """(ms, pages, names): every page of the catalog from ?n=page on, following Link, timed together.
    Checks that every seeded repository was listed, once."""
    path: str | None = f"/v2/_catalog?n={page}"
    names: list[str] = []
    pages = 0
    t0 = time.perf_counter()
    while path:
        _, headers, body = c.call("GET", path, 200)
        names += json.loads(body).get("repositories") or []
        pages += 1
        path = next_link(headers)
    ms = (time.perf_counter() - t0) * 1000
    found = sum(1 for n in names if n.startswith(CATALOG_PREFIX))
    if found != seeded or len(set(names)) != len(names):
        raise StepError(f"catalog walk: {found} of the {seeded} seeded repositories listed "
                        f"({len(names)} names, {len(set(names))} distinct, {pages} pages)")
    return ms, pages, len(names)

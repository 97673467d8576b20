#!/usr/bin/env python3
"""Side-by-side benchmark: our registry (`python -m registry serve`) against the reference,
Debian's `docker-registry` (CNCF Distribution 2.8.2), on two storage sets and as a pull-through mirror.

    cd /work/main && .venv/bin/python bench/run.py [--storage filesystem|s3|mirror|both|all] [--repeat 3]
        [--blob-mib 256] [--s3-blob-mib N] [--manifests 2000] [--s3-manifests 1000]
        [--concurrency 32] [--mirror-clients 8] [--mirror-layer-mib 8,12,16,20,24,32]
        [--figures all|new|first|catalog|KEY,...] [--no-limits | --limits-only] [--pullers 8]
        [--small-uploads 1000] [--head-requests 3000] [--catalog-repos 10000] [--catalog-page 100]
        [--only ours|reference]
    .venv/bin/python bench/run.py --mirror     # the mirror set only (= --storage mirror)
    .venv/bin/python bench/run.py --storage filesystem --figures new --repeat 1   # the further figures only

The machine's limits (sha256, disk write+fsync and read, nginx sendfile; bench/limits.py) are
measured first; the new figures (bench/figures.py) run in the filesystem set; every row shows
its target ratio and pass/MISS (bench/README.md, Targets).

- filesystem: ours on SQLite + filesystem, the reference on its filesystem driver; each with a
  fresh data dir under one temp dir on the same (non-tmpfs) disk.
- s3: ours on PostgreSQL + S3, the reference on its s3 driver; both against the same OpenStack
  Swift (s3api) on 127.0.0.1, in separate buckets (bench/servers.py).
- mirror: ours as a pull-through mirror, the reference in proxy mode, both in front of the same
  upstream (our registry on loopback); cold and warm pulls by several clients at once, and the
  requests the upstream saw (bench/mirror.py).

The sets run one after the other (filesystem, s3, mirror). Within a set both registries run at the same
time on 127.0.0.1; every figure is measured on ours, then on the reference (A, B), and the whole
sequence repeats `--repeat` times; the table shows medians. See bench/README.md for what each
figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fcntl
import gzip
import hashlib
import http.client
import io
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tarfile
import tempfile
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import (MIRROR_SET, REFERENCE_BIN, REPO_ROOT, S3_PART_BYTES, STORAGE_SETS,  # noqa: E402
                     Helper, OurServer, ReferenceServer, S3Backing, Server)

RESULTS_DIR = REPO_ROOT / "bench" / "results"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"

MB = 1_000_000  # throughput is reported in MB/s = 10^6 bytes per second
IO_BLOCK = 1 << 20  # client-side read/send buffer for blob bodies
BLOB_REPO = "bench/blob"
PROBE_REPO = "bench/probe"
TAGS_LIST_REQUESTS = 20
MAX_ERRORS_KEPT = 5
PULLS_PER_REPETITION = 5
IDLE_RECONNECT_SECONDS = 30  # the blob client reopens a keep-alive connection idle this long
# The S3 set runs at most this many manifests by default (--s3-manifests): the reference manages
# ~20-45 manifest PUTs/s on Swift, so 2,000 manifests x 3 repetitions would take ~8 minutes for that
# phase alone. With it, `make bench` (all three sets) takes ~5-6 minutes on 2 cores.
S3_MAX_DEFAULT_MANIFESTS = 1000

PUSH_NOTE = ("Each blob push uses a fresh digest (the first 64 bytes of the blob file are rewritten for every "
             "repetition and push kind), so neither registry can short-cut an existing blob; nothing is deleted.")
NOTES = [
    PUSH_NOTE,
    "The HTTP client is Python on the same 2-core machine; it competes with the servers for CPU and may "
    "cap the faster side. Its blob bodies cost it little: it sends them with sendfile(2) and receives them "
    "with splice(2) into /dev/null (the untimed verification pull reads and hashes every byte).",
    f"A single pull runs {PULLS_PER_REPETITION} times per repetition, registries alternating, with the "
    "server's threads on the first core and the client on the last (unpinned, the scheduler often puts "
    "both on one core: about 2 GB/s instead of 6.5). Even pinned, this machine's loopback speed comes in "
    "phases of about a second, near 1.8 or near 7 GB/s, for nginx too.",
]

FILESYSTEM_NOTES = [
    "Our registry fsyncs every committed blob and manifest; the reference (filesystem driver) does not "
    "fsync. The bench runs sync(2) before every timed step so neither pays for the other's dirty pages.",
    "The pull reads back the blob pushed monolithically in the same repetition (likely in the page "
    "cache for both registries).",
]

S3_NOTES = [
    "Both registries talk to the SAME OpenStack Swift (s3api) server on 127.0.0.1 (one proxy process, "
    "workers=0), ours in bucket bench-ours (prefix ours/), the reference in bucket bench-reference "
    "(rootdirectory /ref). Swift fsyncs every object it stores, for both; its single proxy process "
    "can cap both registries, which pulls the ratios toward 1.0.",
    "Ours fsyncs nothing extra on S3: blob durability is the S3 server's. Ours keeps its metadata, "
    "manifests included, in PostgreSQL (fsync on, one WAL flush per commit), so its manifest and tags "
    "phases do not touch S3; the reference keeps manifests, links and tags as S3 objects and has no database.",
    "Peak RSS and server CPU are the registry process only. PostgreSQL's and Swift's CPU during each "
    "registry's timed steps are listed in their own rows (how much database / S3-server work it caused).",
    f"Multipart part size {S3_PART_BYTES >> 20} MiB for both (ours: storage.s3.part_size; reference: "
    "chunksize). Blob GETs stream through both registries (ours: no redirect, the default; reference: "
    "storage.redirect.disable: true).",
    "Distribution 2.8.2 has no `forcepathstyle` option (it came in 3.0); it uses path-style "
    "addressing whenever `regionendpoint` is set, which Swift on loopback needs. AWS_* variables are "
    "removed from both registries' environments (with AWS_CA_BUNDLE set, 2.8.2 panics at start: "
    "LoadCustomCABundleError).",
]


# --------------------------------------------------------------------------------------------
# Errors: every failed request is reported with its request line and the response it got.

class StepError(Exception):
    """A request that did not get the expected answer; `detail` says exactly which and what."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.detail = {"message": message, **(detail or {})}


def describe_response(method: str, url: str, status: int | None, headers: Any, body: bytes | str | None,
                      request_headers: dict[str, str] | None = None) -> dict[str, Any]:
    if isinstance(body, bytes):
        body = body[:2000].decode("utf-8", "replace")
    return {
        "request": f"{method} {url}",
        "request_headers": dict(request_headers or {}),
        "status": status,
        "response_headers": dict(headers.items()) if headers is not None else None,
        "response_body": body,
    }


# --------------------------------------------------------------------------------------------
# Blocking HTTP client for blob transfers (one keep-alive connection; bodies go out with sendfile
# and come in with splice, so the client copies nothing)

@dataclass
class FileWindow:
    """Bytes [offset, offset+length) of an open file, sent as a request body with sendfile(2)."""
    f: Any
    offset: int
    length: int


_DEVNULL: int | None = None


def discard_body(resp: http.client.HTTPResponse, sock: Any, length: int) -> int:
    """Read a Content-Length body to nowhere without copying it into this process: what
    http.client already buffered, then splice(2) socket -> pipe -> /dev/null. The bench's
    clients share the machine's cores with the servers; a load generator that copies every
    byte is a bottleneck that hides the difference between servers (a `verify` pull, untimed,
    still reads and hashes the bytes). Returns the bytes consumed."""
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = os.open(os.devnull, os.O_WRONLY)
    total = len(resp.fp.read(min(length, len(resp.fp.peek(1))))) if length else 0
    pipe_r, pipe_w = os.pipe()
    timeout = sock.gettimeout()
    sock.setblocking(True)  # splice on a non-blocking socket would return EAGAIN
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe_w, fcntl.F_SETPIPE_SZ, IO_BLOCK)
        while total < length:
            n = os.splice(sock.fileno(), pipe_w, min(IO_BLOCK, length - total))
            if not n:
                break  # the server closed early; the caller reports the short body
            while n:
                drained = os.splice(pipe_r, _DEVNULL, n)
                n -= drained
                total += drained
    finally:
        sock.settimeout(timeout)
        os.close(pipe_r)
        os.close(pipe_w)
    resp.length = 0
    resp.read()  # marks the response finished so the connection is reused
    return total


class BlobClient:
    def __init__(self, base_url: str) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.base_url = base_url
        self.host = parsed.hostname
        self.port = parsed.port
        self.conn = self._connect()
        self.last_used = time.monotonic()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=600, blocksize=IO_BLOCK)

    def close(self) -> None:
        self.conn.close()

    def _reset(self) -> None:
        self.conn.close()
        self.conn = self._connect()

    def refresh_if_idle(self, idle: float = IDLE_RECONNECT_SECONDS) -> None:
        """Open a new connection now if this one sat idle for `idle` seconds: a server may have
        closed it (ours, aiohttp, after 75 s), and a request on it would fail with no response.
        Called before each timed step (so the connect is untimed) and before every request."""
        if time.monotonic() - self.last_used > idle:
            self._reset()
            self.conn.connect()
            self.last_used = time.monotonic()

    def send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
             ) -> http.client.HTTPResponse:
        """Send a request and return the response with its body unread."""
        headers = dict(headers or {})
        if body is None and method in ("POST", "PUT", "PATCH"):
            headers.setdefault("Content-Length", "0")
        self.refresh_if_idle()
        self.last_used = time.monotonic()
        try:
            if isinstance(body, FileWindow):  # zero-copy upload: the client costs the servers no CPU
                self.conn.putrequest(method, path)
                for name, value in headers.items():
                    self.conn.putheader(name, value)
                self.conn.endheaders()
                self.conn.sock.sendfile(body.f, body.offset, body.length)
            else:
                self.conn.request(method, path, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The server answered (and closed) before taking the whole body: fetch that answer.
            try:
                resp = self.conn.getresponse()
                text = resp.read()
                self._reset()
                raise StepError(f"{method} {path}: connection closed while sending the body ({exc!r})",
                                describe_response(method, path, resp.status, resp.headers, text, headers))
            except (OSError, http.client.HTTPException):
                self._reset()
                raise StepError(f"{method} {path}: {exc!r} while sending the body, no response",
                                {"request": f"{method} {path}", "request_headers": headers}) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._reset()
            raise StepError(f"{method} {path}: {exc!r}",
                            {"request": f"{method} {path}", "request_headers": headers}) from exc
        try:
            return self.conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._reset()
            raise StepError(f"{method} {path}: no response ({exc!r})",
                            {"request": f"{method} {path}", "request_headers": headers}) from exc
        finally:
            self.last_used = time.monotonic()

    def call(self, method: str, path: str, expect: int | tuple[int, ...], body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        resp = self.send(method, path, body, headers)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._reset()
            raise StepError(f"{method} {path}: reading the response failed ({exc!r})",
                            describe_response(method, path, resp.status, resp.headers, None, headers)) from exc
        self.last_used = time.monotonic()
        if resp.will_close:
            self._reset()
        expected = (expect,) if isinstance(expect, int) else expect
        if resp.status not in expected:
            raise StepError(f"{method} {path}: expected {'/'.join(map(str, expected))}, got {resp.status}",
                            describe_response(method, path, resp.status, resp.headers, data, headers))
        return resp.status, resp.headers, data


def location_path(method: str, path: str, headers: http.client.HTTPMessage) -> str:
    loc = headers.get("Location")
    if not loc:
        raise StepError(f"{method} {path}: response has no Location header",
                        describe_response(method, path, None, headers, None))
    parts = urllib.parse.urlsplit(loc)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(path: str, **params: str) -> str:
    return path + ("&" if "?" in path else "?") + urllib.parse.urlencode(params)


def check_digest_header(method: str, path: str, headers: http.client.HTTPMessage, digest: str) -> None:
    got = headers.get("Docker-Content-Digest")
    if got is not None and got != digest:
        raise StepError(f"{method} {path}: Docker-Content-Digest is {got}, expected {digest}",
                        describe_response(method, path, None, headers, None))


def start_upload(c: BlobClient, repo: str) -> str:
    path = f"/v2/{repo}/blobs/uploads/"
    _, headers, _ = c.call("POST", path, 202)
    return location_path("POST", path, headers)


def push_small_blob(c: BlobClient, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = start_upload(c, repo)
    put = with_query(loc, digest=digest)
    _, headers, _ = c.call("PUT", put, 201, body=data,
                           headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    check_digest_header("PUT", put, headers, digest)
    return digest


def push_monolithic(c: BlobClient, repo: str, blob: Path, size: int, digest: str) -> None:
    """POST an upload, then PUT ?digest= with the whole blob streamed from the file."""
    loc = start_upload(c, repo)
    put = with_query(loc, digest=digest)
    with open(blob, "rb", buffering=0) as f:
        _, headers, _ = c.call("PUT", put, 201, body=FileWindow(f, 0, size),
                               headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
    check_digest_header("PUT", put, headers, digest)


def push_chunked(c: BlobClient, repo: str, blob: Path, size: int, digest: str, chunk: int,
                 anomalies: list[str]) -> None:
    """POST an upload, PATCH it in `chunk`-byte pieces with Content-Range, then PUT ?digest=."""
    loc = start_upload(c, repo)
    offset = 0
    with open(blob, "rb", buffering=0) as f:
        while offset < size:
            n = min(chunk, size - offset)
            _, headers, _ = c.call("PATCH", loc, 202, body=FileWindow(f, offset, n), headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(n),
                "Content-Range": f"{offset}-{offset + n - 1}",
            })
            rng = headers.get("Range")
            if rng != f"0-{offset + n - 1}" and len(anomalies) < MAX_ERRORS_KEPT:
                anomalies.append(f"PATCH {loc} (bytes {offset}-{offset + n - 1}) answered Range: {rng!r}, "
                                 f"expected '0-{offset + n - 1}'")
            loc = location_path("PATCH", loc, headers)
            offset += n
    put = with_query(loc, digest=digest)
    _, headers, _ = c.call("PUT", put, 201)
    check_digest_header("PUT", put, headers, digest)


def pull_blob(c: BlobClient, repo: str, digest: str, size: int, verify: bool = False) -> None:
    """GET the blob and read it into a reusable buffer (discarded); checks length (and content if verify)."""
    path = f"/v2/{repo}/blobs/{digest}"
    client = c
    for _ in range(3):
        resp = client.send("GET", path)
        if resp.status in (301, 302, 303, 307, 308):
            resp.read()
            target = urllib.parse.urlsplit(urllib.parse.urljoin(f"{c.base_url}{path}", resp.getheader("Location", "")))
            if f"{target.hostname}:{target.port}" != f"{c.host}:{c.port}":
                client = BlobClient(f"{target.scheme}://{target.netloc}")
            path = target.path + (f"?{target.query}" if target.query else "")
            continue
        break
    try:
        if resp.status != 200:
            raise StepError(f"GET {path}: expected 200, got {resp.status}",
                            describe_response("GET", path, resp.status, resp.headers, resp.read()))
        hasher = hashlib.sha256() if verify else None
        total = 0
        length = resp.length
        if hasher is None and length is not None:
            total = discard_body(resp, client.conn.sock, length)
        else:
            view = memoryview(bytearray(IO_BLOCK))
            while n := resp.readinto(view):
                total += n
                if hasher:
                    hasher.update(view[:n])
        if resp.will_close:
            client._reset()
        if total != size:
            raise StepError(f"GET {path}: read {total} bytes, expected {size}",
                            describe_response("GET", path, resp.status, resp.headers, None))
        if hasher and "sha256:" + hasher.hexdigest() != digest:
            raise StepError(f"GET {path}: content hashes to sha256:{hasher.hexdigest()}, expected {digest}",
                            describe_response("GET", path, resp.status, resp.headers, None))
    finally:
        if client is not c:
            client.close()


def tags_list_latencies(c: BlobClient, repo: str, expected: int, requests: int,
                        anomalies: list[str]) -> list[float]:
    path = f"/v2/{repo}/tags/list"
    out = []
    for i in range(requests):
        t0 = time.perf_counter()
        _, headers, body = c.call("GET", path, 200)
        out.append(time.perf_counter() - t0)
        if i == 0:
            try:
                doc = json.loads(body)
                tags = doc.get("tags") or []
            except ValueError as exc:
                raise StepError(f"GET {path}: body is not JSON ({exc})",
                                describe_response("GET", path, 200, headers, body)) from exc
            if len(tags) != expected:
                raise StepError(f"GET {path}: {len(tags)} tags returned, expected {expected}"
                                f" (Link: {headers.get('Link')!r})",
                                describe_response("GET", path, 200, headers, body[:500]))
    return out


# --------------------------------------------------------------------------------------------
# Manifests at N in flight (aiohttp, connection pool of N)

def tiny_image() -> tuple[bytes, bytes]:
    """(config, layer): a real one-file tar.gz layer and an OCI config pointing at its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"registry bench\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]},
    }, separators=(",", ":")).encode()
    return config, layer


def build_manifests(n: int, config: bytes, layer: bytes) -> list[tuple[str, bytes, str]]:
    """(tag, body, digest) for n distinct manifests: same blobs, an annotation naming the tag."""
    out = []
    cdesc = {"mediaType": OCI_CONFIG, "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)}
    ldesc = {"mediaType": OCI_LAYER_GZ, "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}
    width = max(4, len(str(n - 1)))
    for i in range(n):
        tag = f"t{i:0{width}d}"
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc, "layers": [ldesc],
                           "annotations": {"org.example.registry-bench.tag": tag}}, separators=(",", ":")).encode()
        out.append((tag, body, "sha256:" + hashlib.sha256(body).hexdigest()))
    return out


@dataclass
class Burst:
    seconds: float = 0.0
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


async def _burst(base_url: str, concurrency: int, n: int,
                 one: Callable[[aiohttp.ClientSession, int], Any]) -> Burst:
    result = Burst()
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base_url=base_url, connector=connector, timeout=timeout) as session:
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                try:
                    await one(session, i)
                    result.ok += 1
                except StepError as exc:
                    result.failed += 1
                    if len(result.errors) < MAX_ERRORS_KEPT:
                        result.errors.append(exc.detail)
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    result.failed += 1
                    if len(result.errors) < MAX_ERRORS_KEPT:
                        result.errors.append({"message": f"request #{i}: {exc!r}"})
                result.latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - t0
    return result


def put_manifests(base_url: str, repo: str, manifests: list[tuple[str, bytes, str]], concurrency: int) -> Burst:
    async def one(session: aiohttp.ClientSession, i: int) -> None:
        tag, body, digest = manifests[i]
        path = f"/v2/{repo}/manifests/{tag}"
        headers = {"Content-Type": OCI_MANIFEST}
        async with session.put(path, data=body, headers=headers) as resp:
            text = await resp.read()
            if resp.status != 201:
                raise StepError(f"PUT {path}: expected 201, got {resp.status}",
                                describe_response("PUT", path, resp.status, resp.headers, text, headers))
            got = resp.headers.get("Docker-Content-Digest")
            if got is not None and got != digest:
                raise StepError(f"PUT {path}: Docker-Content-Digest {got}, expected {digest}",
                                describe_response("PUT", path, resp.status, resp.headers, text, headers))

    return asyncio.run(_burst(base_url, concurrency, len(manifests), one))


def get_manifests(base_url: str, repo: str, manifests: list[tuple[str, bytes, str]], concurrency: int) -> Burst:
    async def one(session: aiohttp.ClientSession, i: int) -> None:
        tag, body, digest = manifests[i]
        path = f"/v2/{repo}/manifests/{tag}"
        headers = {"Accept": OCI_MANIFEST}
        async with session.get(path, headers=headers) as resp:
            text = await resp.read()
            if resp.status != 200:
                raise StepError(f"GET {path}: expected 200, got {resp.status}",
                                describe_response("GET", path, resp.status, resp.headers, text, headers))
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
            if text != body or ctype != OCI_MANIFEST:
                raise StepError(f"GET {path}: body or Content-Type differs from what was PUT "
                                f"(Content-Type {ctype!r}, {len(text)} bytes vs {len(body)})",
                                describe_response("GET", path, resp.status, resp.headers, text, headers))

    return asyncio.run(_burst(base_url, concurrency, len(manifests), one))


# --------------------------------------------------------------------------------------------
# The run

FIGURES = [
    # key, label, unit, higher_is_better
    ("push_monolithic", "monolithic push {blob}", "MB/s", True),
    ("push_chunked", "chunked push {blob} ({chunk} PATCHes)", "MB/s", True),
    ("pull", "pull {blob}", "MB/s", True),
    ("manifest_put", "manifest PUT by tag x{n} @{c}", "req/s", True),
    ("manifest_get", "manifest GET by tag x{n} @{c}", "req/s", True),
    ("tags_list", "tags list ({n} tags), median of {t}", "ms", False),
    # the further figures (bench/figures.py), filesystem set only
    ("pull_concurrent", "{p} concurrent pulls {blob}, aggregate", "MB/s", True),
    ("small_upload", "small uploads (1 KiB POST+PUT) x{u} @{c}", "req/s", True),
    ("blob_head", "blob HEAD x{h} @{c}", "req/s", True),
    ("catalog_page", "catalog ?n={pg}, {r} repos, median of {t}", "ms", False),
    ("catalog_walk", "catalog walk, all pages of {pg}, {r} repos", "ms", False),
]
FIRST_FIGURES = ("push_monolithic", "push_chunked", "pull", "manifest_put", "manifest_get", "tags_list")
NEW_FIGURES = ("pull_concurrent", "small_upload", "blob_head", "catalog_page", "catalog_walk")
FIGURE_GROUPS = {"all": FIRST_FIGURES + NEW_FIGURES, "new": NEW_FIGURES, "first": FIRST_FIGURES,
                 "catalog": ("catalog_page", "catalog_walk")}


def figure_runs(args: argparse.Namespace, set_name: str, figure: str) -> bool:
    """--figures selects; the new figures run in the filesystem set only (on Swift they would
    measure Swift, and seeding 10,000 repositories there would take many minutes)."""
    return figure in args.figures and (figure not in NEW_FIGURES or set_name == "filesystem")


def parse_figures(text: str) -> tuple[str, ...]:
    """--figures: comma-separated figure keys and groups (all, new, first, catalog), in FIGURES order."""
    wanted: set[str] = set()
    for word in (w.strip() for w in text.split(",") if w.strip()):
        if word in FIGURE_GROUPS:
            wanted.update(FIGURE_GROUPS[word])
        elif word in FIRST_FIGURES + NEW_FIGURES:
            wanted.add(word)
        else:
            raise ValueError(word)
    return tuple(k for k, *_ in FIGURES if k in wanted)


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def make_blob(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n


def set_variant(path: Path, label: str) -> str:
    """Rewrite the first 64 bytes with a unique label; return the file's new sha256 digest."""
    head = label.encode().ljust(64, b".")[:64]
    with open(path, "r+b") as f:
        f.write(head)
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 << 20)
        view = memoryview(buf)
        while n := f.readinto(view):
            h.update(view[:n])
    return "sha256:" + h.hexdigest()


def fs_type(path: Path) -> str:
    best, kind = "", "?"
    real = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        mnt = parts[1].replace("\\040", " ")
        if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, kind = mnt, parts[2]
    return kind


LOADAVG_START: list[float] = []
MACHINE, CLIENT = "_machine", "_client"  # keys in the CPU snapshot taken before each step
OTHER_CPU_ANOMALY_SECONDS = 1.0


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (/proc/stat: user nice system irq softirq steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class StorageSet:
    """One pair of registries on one kind of storage, and what became of it."""

    name: str  # "filesystem", "s3" or "mirror"
    title: str  # the table's section header
    blob_mib: int
    manifests: int
    notes: list[str]
    candidates: list[Server] = field(default_factory=list)  # every registry we tried to start
    servers: list[Server] = field(default_factory=list)  # the ones that started
    unavailable: dict[str, str] = field(default_factory=dict)  # key -> why it was not measured
    start_failed: bool = False
    backing: S3Backing | None = None
    helpers: list[Helper] = field(default_factory=list)
    bench: Bench | None = None
    error: str | None = None  # the set did not run at all
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # set-specific state (the mirror set's upstream)
    extra_logs: list[tuple[str, Path]] = field(default_factory=list)  # (key, path): more logs to keep


class Bench:
    def __init__(self, args: argparse.Namespace, sset: StorageSet, blob: Path) -> None:
        self.args = args
        self.sset = sset
        self.servers = list(sset.servers)  # started; the probe may drop some
        self.helpers = sset.helpers
        self.blob = blob
        self.size = sset.blob_mib << 20
        self.chunk = args.chunk_mib << 20
        keys = [s.key for s in sset.candidates]
        self.samples: dict[str, dict[str, list[float]]] = {k: {} for k in keys}
        self.extra: dict[str, dict[str, list[Any]]] = {k: {} for k in keys}
        self.failures: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k in keys}
        self.anomalies: dict[str, list[str]] = {k: [] for k in keys}
        self.clients = {s.key: BlobClient(s.url) for s in self.servers}
        self.steps: list[dict[str, Any]] = []
        self.run_id = dt.datetime.now().strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
        self.seeded: dict[str, dict[str, Any]] = {}  # catalog seeding, per registry
        # nginx's sendfile ceiling, pulled right after the registries in every repetition (same noise)
        self.nginx: Any = None
        self.ceiling_failed = False
        self.ceilings: dict[str, list[float]] = {"sendfile_1_mbps": [], "sendfile_n_mbps": []}

    def close(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for c in self.clients.values():
            c.close()

    def record_failure(self, server: Server, figure: str, detail: dict[str, Any]) -> None:
        detail = {**detail}
        if not server.alive():
            detail["server_exit_code"] = server.proc.returncode if server.proc else None
            detail["server_log_tail"] = server.log_tail()
        self.failures[server.key].setdefault(figure, []).append(detail)
        log(f"  !! {server.key} {figure} FAILED: {detail.get('message')}")
        for k in ("request", "status", "response_body"):
            if detail.get(k) is not None:
                log(f"     {k}: {str(detail[k])[:400]}")

    def probe(self) -> None:
        """Untimed: push a small blob and read it back from each registry. One that cannot (e.g. a
        storage driver that cannot talk to the S3 server) is left out of the set, with the reason."""
        data = f"registry-bench probe {self.run_id} {self.sset.name}".encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        for s in list(self.servers):
            try:
                push_small_blob(self.clients[s.key], PROBE_REPO, data)
                pull_blob(self.clients[s.key], PROBE_REPO, digest, len(data), verify=True)
            except StepError as exc:
                detail = {**exc.detail, "server_log_tail": s.log_tail(20)}
                self.record_failure(s, "probe", detail)
                status = exc.detail.get("status")
                body = str(exc.detail.get("response_body") or "").strip()[:300]
                last_log = s.log_tail(1).strip()
                self.sset.unavailable[s.key] = (
                    f"could not store and read back a {len(data)}-byte blob on {self.sset.name} storage: "
                    f"{exc.detail.get('message')}" + (f" -> {status} {body}" if status else "")
                    + (f"; last server log line: {last_log[:400]}" if last_log else ""))
                self.servers.remove(s)

    def measure(self, server: Server, figure: str, fn: Callable[[], float], fmt: str,
                nbytes: int | None = None) -> None:
        """Run one timed step (fn returns the figure's value) after a sync(2); record value or failure."""
        if not server.alive():
            self.record_failure(server, figure, {"message": f"{server.title} is not running"})
            return
        if server.key in self.clients:
            self.clients[server.key].refresh_if_idle()  # untimed
        os.sync()
        cpu0 = {s.key: s.cpu() for s in self.servers + self.helpers}  # type: ignore[operator]
        cpu0[MACHINE], cpu0[CLIENT] = machine_busy_seconds(), time.process_time()
        t0 = time.perf_counter()
        try:
            value = fn()
        except StepError as exc:
            self.record_failure(server, figure, exc.detail)
            return
        except Exception as exc:  # noqa: BLE001 - report anything, keep measuring the other side
            self.record_failure(server, figure, {"message": f"{exc!r}", "traceback": traceback.format_exc()})
            return
        finally:
            self._account(server, figure, time.perf_counter() - t0, cpu0, nbytes)
        self.samples[server.key].setdefault(figure, []).append(value)
        log(f"  {server.key:9s} {figure:15s} {fmt.format(value)}")

    def _account(self, server: Server, figure: str, wall: float, cpu0: dict[str, float | None],
                 nbytes: int | None = None) -> None:
        """CPU seconds each server used during this step: the measured one's cost, and whether the
        idle one was busy in the background (which would steal CPU from the measured one). Helpers
        (Swift, PostgreSQL) are recorded too: what the measured registry made them do."""
        def used(x: Server | Helper) -> float | None:
            now = x.cpu()
            return round(now - cpu0[x.key], 3) if now is not None and cpu0.get(x.key) is not None else None

        cpu = {s.key: used(s) for s in self.servers}
        step: dict[str, Any] = {"server": server.key, "figure": figure, "wall_seconds": round(wall, 3),
                                "cpu_seconds": cpu}
        if nbytes is not None:  # blob bytes moved: server CPU seconds per GB come from this
            step["bytes"] = nbytes
        helper_cpu = {h.key: used(h) for h in self.helpers}
        if self.helpers:
            step["helper_cpu_seconds"] = helper_cpu
        # Everything else the machine did meanwhile: other processes (another job on the box), kernel
        # threads (writeback). Much of it means the figure is noisy.
        client = time.process_time() - cpu0[CLIENT]  # type: ignore[operator]
        busy = machine_busy_seconds() - cpu0[MACHINE]  # type: ignore[operator]
        other = busy - client - sum(v for v in [*cpu.values(), *helper_cpu.values()] if v is not None)
        step["client_cpu_seconds"] = round(client, 3)
        step["other_cpu_seconds"] = round(other, 3)
        self.steps.append(step)
        if other > max(OTHER_CPU_ANOMALY_SECONDS, 0.15 * wall):
            self.anomalies[server.key].append(
                f"other processes on the machine used {other:.2f} s of CPU during its {figure} step "
                f"({wall:.2f} s wall): outside load, the figure may be low")
        for s in self.servers:
            busy = cpu[s.key]
            if s is not server and busy is not None and busy > max(0.25, 0.1 * wall):
                self.anomalies[s.key].append(
                    f"used {busy:.2f} s of CPU while idle, during {server.key}'s {figure} step "
                    f"({wall:.2f} s wall): background work competing with the measured server")

    def wants(self, figure: str) -> bool:
        return figure_runs(self.args, self.sset.name, figure)

    def run(self) -> None:
        a = self.args
        if not self.blob.exists() or self.blob.stat().st_size != self.size:
            log(f"generating a {self.sset.blob_mib} MiB random blob in {self.blob}")
            make_blob(self.blob, self.size)
        self.probe()
        if not self.servers:
            return
        if self.wants("catalog_page") or self.wants("catalog_walk"):
            self.seed_catalog()
        for rep in range(1, a.repeat + 1):
            log(f"[{self.sset.name}] repetition {rep}/{a.repeat}")
            self.run_blobs(rep)
            if any(self.wants(f) for f in ("manifest_put", "manifest_get", "tags_list")):
                self.run_manifests(rep)
            if self.wants("small_upload"):
                self.run_small_uploads(rep)
            if self.wants("catalog_page") or self.wants("catalog_walk"):
                self.run_catalog()

    def run_blobs(self, rep: int) -> None:
        """Pushes, then the pulls and HEADs of the blob pushed monolithically in this repetition."""
        reads = [f for f in ("pull", "pull_concurrent", "blob_head") if self.wants(f)]
        if not (self.wants("push_monolithic") or self.wants("push_chunked") or reads):
            return
        # 1. monolithic push, fresh digest (untimed when only what reads the blob was asked for)
        mono_digest = set_variant(self.blob, f"{self.run_id} {self.sset.name} rep{rep} monolithic")
        have_blob = []
        for s in self.servers:
            c = self.clients[s.key]
            push = lambda c=c: push_monolithic(c, BLOB_REPO, self.blob, self.size, mono_digest)  # noqa: E731
            if self.wants("push_monolithic"):
                self.measure(s, "push_monolithic", lambda push=push: self._timed_mb(push), "{:.1f} MB/s",
                             nbytes=self.size)
            elif reads:
                try:
                    push()
                except StepError as exc:
                    self.record_failure(s, "blob_setup", exc.detail)
                    continue
            have_blob.append(s)
        # 2. chunked push, another fresh digest
        if self.wants("push_chunked"):
            chunk_digest = set_variant(self.blob, f"{self.run_id} {self.sset.name} rep{rep} chunked")
            for s in self.servers:
                c = self.clients[s.key]
                anomalies = self.anomalies[s.key]
                self.measure(s, "push_chunked", lambda c=c, an=anomalies: self._timed_mb(
                    lambda: push_chunked(c, BLOB_REPO, self.blob, self.size, chunk_digest, self.chunk, an)),
                    "{:.1f} MB/s", nbytes=self.size)
        # 3. pull the monolithic blob of this repetition
        if self.wants("pull"):
            # A single pull lasts about 0.1 s, and this machine's loopback speed comes in phases of
            # about a second: several pulls per repetition, alternating registries, all in the median.
            for _ in range(PULLS_PER_REPETITION):
                for s in have_blob:
                    c = self.clients[s.key]
                    self.measure(s, "pull", lambda c=c, s=s: self._pinned_pull(s, c, mono_digest), "{:.1f} MB/s",
                                 nbytes=self.size)
        if rep == 1:  # untimed: the bytes served are the bytes pushed
            for s in have_blob:
                if not any(f in self.samples[s.key] for f in ("pull", "push_monolithic")) and not reads:
                    continue
                try:
                    pull_blob(self.clients[s.key], BLOB_REPO, mono_digest, self.size, verify=True)
                except StepError as exc:
                    self.record_failure(s, "pull_verify", exc.detail)
        # 3b. the same blob by several clients at once, and HEADs of it
        import figures

        path = f"/v2/{BLOB_REPO}/blobs/{mono_digest}"
        if self.wants("pull_concurrent"):
            for s in have_blob:
                self.measure(s, "pull_concurrent", lambda s=s: figures.get_concurrent(
                    s.url, path, self.size, self.args.pullers), "{:.1f} MB/s", nbytes=self.size * self.args.pullers)
        if self.wants("pull") or self.wants("pull_concurrent"):
            self.pull_ceiling()
        if self.wants("blob_head"):
            for s in have_blob:
                self.measure(s, "blob_head", lambda s=s: self._burst(s, "blob_head", figures.head_blobs(
                    s.url, BLOB_REPO, mono_digest, self.size, self.args.head_requests, self.args.concurrency)),
                    "{:.0f} req/s")

    def pull_ceiling(self) -> None:
        """The same blob file (hard-linked; rewritten in place per push) pulled from nginx with
        sendfile, by one client and by --pullers at once, right after the registries' pulls."""
        import figures
        import limits

        if self.args.no_limits or self.ceiling_failed:
            return
        try:
            if self.nginx is None:
                home = self.blob.parent / f"ceiling-{self.sset.name}"
                docroot = home / "root"
                docroot.mkdir(parents=True, exist_ok=True)
                (docroot / "ping").write_text("ok\n")
                os.link(self.blob, docroot / "blob")
                self.nginx = limits.StaticNginx(home, docroot)
                self.nginx.start()
            os.sync()
            one = statistics.median(self.size / figures.get_once(self.nginx.url, "/blob", self.size, self.nginx.pid) / MB
                                    for _ in range(PULLS_PER_REPETITION))
            os.sync()
            many = figures.get_concurrent(self.nginx.url, "/blob", self.size, self.args.pullers)
        except (OSError, RuntimeError, StepError) as exc:
            self.anomalies[self.servers[0].key].append(f"nginx sendfile ceiling not measured: {exc}")
            self.ceiling_failed = True  # once is enough
            return
        self.ceilings["sendfile_1_mbps"].append(one)
        self.ceilings["sendfile_n_mbps"].append(many)
        log(f"  nginx     sendfile        {one:.1f} MB/s; {self.args.pullers} clients {many:.1f} MB/s")

    def run_manifests(self, rep: int) -> None:
        """4-6. manifests in a fresh repository per repetition."""
        a = self.args
        config, layer = tiny_image()
        repo = f"bench/manifests-r{rep}"
        manifests = build_manifests(self.sset.manifests, config, layer)
        ready = []
        for s in self.servers:
            try:
                push_small_blob(self.clients[s.key], repo, config)
                push_small_blob(self.clients[s.key], repo, layer)
                ready.append(s)
            except StepError as exc:
                self.record_failure(s, "manifest_setup", exc.detail)
        # The GETs and tags list need the tags: PUT them (untimed) if only those were asked for.
        for s in ready:
            if self.wants("manifest_put"):
                self.measure(s, "manifest_put", lambda s=s: self._burst(s, "manifest_put",
                             put_manifests(s.url, repo, manifests, a.concurrency)), "{:.0f} req/s")
            else:
                b = put_manifests(s.url, repo, manifests, a.concurrency)
                if b.failed:
                    self.record_failure(s, "manifest_setup", {"message": f"{b.failed} manifest PUTs failed",
                                                              **(b.errors[0] if b.errors else {})})
        if self.wants("manifest_get"):
            for s in ready:
                self.measure(s, "manifest_get", lambda s=s: self._burst(s, "manifest_get",
                             get_manifests(s.url, repo, manifests, a.concurrency)), "{:.0f} req/s")
        if self.wants("tags_list"):
            for s in ready:
                c = self.clients[s.key]
                self.measure(s, "tags_list", lambda c=c, s=s: self._tags(s, c, repo), "{:.2f} ms")

    def run_small_uploads(self, rep: int) -> None:
        """1 KiB blobs, distinct per registry and repetition, POST+PUT at --concurrency in flight."""
        import figures

        for s in self.servers:
            blobs = figures.small_blobs(f"{self.run_id} {s.key} rep{rep}", self.args.small_uploads)
            self.measure(s, "small_upload", lambda s=s, blobs=blobs: self._burst(s, "small_upload",
                         figures.upload_small_blobs(s.url, f"bench/small-r{rep}", blobs, self.args.concurrency)),
                         "{:.0f} uploads/s")

    def seed_catalog(self) -> None:
        """Untimed, once per set: --catalog-repos repositories in each registry, through the API."""
        import figures

        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": []}}, separators=(",", ":")).encode()
        n = self.args.catalog_repos
        for s in list(self.servers):
            log(f"  seeding {n} repositories into {s.key} (mount + manifest PUT each, "
                f"{self.args.concurrency} in flight)")
            t0, cpu0 = time.perf_counter(), s.cpu()
            try:
                b = figures.seed_catalog(self.clients[s.key], s.url, n, config, self.args.concurrency)
            except StepError as exc:
                self.record_failure(s, "catalog_seed", exc.detail)
                continue
            secs = time.perf_counter() - t0
            self.seeded[s.key] = {"repositories": b.ok, "failed": b.failed, "seconds": round(secs, 2),
                                  "repos_per_second": round(b.ok / secs, 1),
                                  "server_cpu_seconds": round((s.cpu() or 0) - (cpu0 or 0), 2)}
            log(f"  seeded {b.ok} repositories into {s.key} in {secs:.1f} s ({b.ok / secs:.0f}/s)")
            if b.failed:
                self.record_failure(s, "catalog_seed", {"message": f"{b.failed} of {n} repositories failed",
                                                        **(b.errors[0] if b.errors else {})})

    def run_catalog(self) -> None:
        page = self.args.catalog_page
        for s in self.servers:
            if self.seeded.get(s.key, {}).get("failed", 1):
                continue
            c = self.clients[s.key]
            if self.wants("catalog_page"):
                self.measure(s, "catalog_page", lambda c=c, s=s: self._catalog_page(s, c, page), "{:.2f} ms")
            if self.wants("catalog_walk"):
                self.measure(s, "catalog_walk", lambda c=c, s=s: self._catalog_walk(s, c, page), "{:.1f} ms")

    def _catalog_page(self, s: Server, c: BlobClient, page: int) -> float:
        import figures

        median, lat = figures.catalog_page_ms(c, page)
        self.extra[s.key].setdefault("catalog_page", []).append({"latencies_ms": lat})
        return median

    def _catalog_walk(self, s: Server, c: BlobClient, page: int) -> float:
        import figures

        ms, pages, names = figures.catalog_walk_ms(c, page, self.args.catalog_repos)
        self.extra[s.key].setdefault("catalog_walk", []).append({"pages": pages, "names": names})
        return ms

    def _pinned_pull(self, s: Server, c: BlobClient, digest: str) -> float:
        """One pull, the server and the client on separate cores (figures.separate_cores)."""
        import figures

        with figures.separate_cores(s.proc.pid if s.proc else None):
            return self._timed_mb(lambda: pull_blob(c, BLOB_REPO, digest, self.size))

    def _timed_mb(self, fn: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        fn()
        return self.size / (time.perf_counter() - t0) / MB

    def _burst(self, s: Server, figure: str, b: Burst) -> float:
        self.extra[s.key].setdefault(figure, []).append({
            "seconds": b.seconds, "ok": b.ok, "failed": b.failed,
            "latency_ms_p50": percentile(b.latencies, 50) * 1000 if b.latencies else None,
            "latency_ms_p99": percentile(b.latencies, 99) * 1000 if b.latencies else None,
        })
        if b.failed:
            raise StepError(f"{b.failed} of {b.ok + b.failed} requests failed; first: "
                            f"{b.errors[0].get('message') if b.errors else '?'}",
                            {"first_errors": b.errors, **(b.errors[0] if b.errors else {})})
        return b.ok / b.seconds

    def _tags(self, s: Server, c: BlobClient, repo: str) -> float:
        lat = tags_list_latencies(c, repo, self.sset.manifests, TAGS_LIST_REQUESTS, self.anomalies[s.key])
        self.extra[s.key].setdefault("tags_list", []).append({"latencies_ms": [x * 1000 for x in lat]})
        return statistics.median(lat) * 1000


def run_set(sset: StorageSet, args: argparse.Namespace, root: Path) -> None:
    """Start what the set needs, run the workload, collect stats, stop everything (even on Ctrl-C)."""
    if sset.name == MIRROR_SET:
        import mirror  # bench/mirror.py, which imports this module as `run`

        mirror.run_mirror_set(sset, args, root)
        return
    t0 = time.monotonic()
    log(f"== {sset.name} set: {sset.title}")
    try:
        if sset.name == "s3":
            sset.backing = S3Backing(root, Path(args.work_dir))
            try:
                sset.backing.start()
            except Exception as exc:  # noqa: BLE001 - SwiftUnavailable, PostgresUnavailable, start-up errors
                sset.error = f"could not start the S3 server or PostgreSQL: {type(exc).__name__}: {exc}"
                log(f"error: {sset.error}")
                return
            sset.helpers = sset.backing.helpers()
            log(f"started Swift (S3) at {sset.backing.swift.endpoint_url} and PostgreSQL on port {sset.backing.pg.port}")
        classes = {"ours": OurServer, "reference": ReferenceServer}
        sset.candidates = [cls(root, sset.name, sset.backing) for key, cls in classes.items()
                           if args.only in (None, key)]
        for s in sset.candidates:
            try:
                s.start()
                sset.servers.append(s)
                log(f"started {s.title} at {s.url} (pid {s.proc.pid if s.proc else '?'})")
            except RuntimeError as exc:
                sset.start_failed = True
                sset.unavailable[s.key] = f"did not start: {exc}"
                log(f"error: {exc}")
        if not sset.servers:
            sset.error = "no registry started"
            return
        sset.bench = Bench(args, sset, root / "blob.bin")
        try:
            sset.bench.run()
        finally:  # also on Ctrl-C: the stats of what ran so far
            for s in sset.servers:
                if s.alive():
                    s.collect_stats()
            for h in sset.helpers:
                h.collect_stats()
    finally:
        if sset.bench:
            sset.bench.close()
        for s in sset.candidates:
            s.stop()
            if s.proc is not None and s.proc.returncode not in (0, -signal.SIGTERM, 2):
                log(f"note: {s.title} exited with {s.proc.returncode}")
        if sset.backing:
            sset.backing.stop()
        if not args.keep:  # free the disk before the next set (logs stay until the end)
            for s in sset.candidates:
                shutil.rmtree(s.data_dir, ignore_errors=True)
            if sset.backing:
                shutil.rmtree(sset.backing.swift_data_dir, ignore_errors=True)
        sset.seconds = round(time.monotonic() - t0, 1)
        log(f"== {sset.name} set done in {sset.seconds:.0f} s")


# --------------------------------------------------------------------------------------------
# Report

def fmt_num(v: float | None, unit: str) -> str:
    if v is None:
        return "FAILED"
    if unit == "ms":
        return f"{v:.2f}"
    if unit == "MiB":
        return f"{v:.1f}"
    if unit == "s":
        return f"{v:.2f}" if v < 1 else f"{v:.1f}"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def with_ratio(row: dict[str, Any], keys: list[str], higher: bool) -> dict[str, Any]:
    if "ours" in keys and "reference" in keys and row["ours"].get("median") and row["reference"].get("median"):
        o, r = row["ours"]["median"], row["reference"]["median"]
        row["ratio"] = o / r if higher else r / o
    else:
        row["ratio"] = None
    return row


def set_report(sset: StorageSet, args: argparse.Namespace) -> dict[str, Any]:
    if sset.name == MIRROR_SET:
        import mirror

        return mirror.mirror_report(sset, args)
    out: dict[str, Any] = {
        "title": sset.title, "blob_mib": sset.blob_mib, "manifests": sset.manifests, "seconds": sset.seconds, "error": sset.error,
        "unavailable": sset.unavailable, "notes": sset.notes,
        "servers": {s.key: {**s.describe(), **s.final_stats} for s in sset.candidates},
    }
    if sset.backing:
        out["s3_backing"] = sset.backing.describe()
        out["helpers"] = {h.key: {"title": h.title, **h.final_stats} for h in sset.helpers}
    bench = sset.bench
    if bench is None:
        out.update(rows=[], steps=[], failures={}, anomalies={})
        return out
    keys = [s.key for s in sset.candidates]
    blob = f"{sset.blob_mib} MiB"
    rows = []
    for key, label, unit, higher in FIGURES:
        if not figure_runs(args, sset.name, key):
            continue
        label = label.format(blob=blob, chunk=f"{args.chunk_mib} MiB", n=sset.manifests, c=args.concurrency,
                             t=TAGS_LIST_REQUESTS, p=args.pullers, u=args.small_uploads, h=args.head_requests,
                             pg=args.catalog_page, r=args.catalog_repos)
        row: dict[str, Any] = {"figure": key, "label": label, "unit": unit,
                               "ratio_kind": "ours/reference" if higher else "reference/ours"}
        for k in keys:
            vals = bench.samples[k].get(key, [])
            row[k] = {"median": statistics.median(vals) if vals else None, "runs": vals,
                      "failures": len(bench.failures[k].get(key, []))}
            if key in bench.extra[k]:
                row[k]["details"] = bench.extra[k][key]
        rows.append(with_ratio(row, keys, higher))
    rows += cpu_per_gb_rows(bench, keys, sset)
    stats = {s.key: s.final_stats for s in sset.candidates}
    for key, label, unit, conv in (("peak_rss", "peak RSS (VmHWM, whole run)", "MiB", lambda st: st.get("peak_rss_kib_sum", 0) / 1024),
                                   ("cpu_time", "server CPU time (user+sys, whole run)", "s", lambda st: st.get("cpu_seconds"))):
        row = {"figure": key, "label": label, "unit": unit, "ratio_kind": "reference/ours"}
        for k in keys:
            st = stats.get(k) or {}
            row[k] = {"median": conv(st) if "error" not in st and st and k not in sset.unavailable else None}
        rows.append(with_ratio(row, keys, False))
    for h in sset.helpers:  # what each registry made Swift / PostgreSQL do, summed over its timed steps
        only_ours = h.key == "postgres"
        row = {"figure": f"{h.key}_cpu", "unit": "s",
               "label": ("PostgreSQL CPU during ours' timed steps" if only_ours
                         else "S3 server (Swift) CPU during the registry's timed steps"),
               "ratio_kind": None if only_ours else "reference/ours"}
        for k in keys:
            if only_ours and k != "ours":
                row[k] = {"median": None, "not_applicable": "the reference has no database"}
                continue
            vals = [st.get("helper_cpu_seconds", {}).get(h.key) for st in bench.steps if st["server"] == k]
            vals = [v for v in vals if v is not None]
            row[k] = {"median": sum(vals) if vals and k not in sset.unavailable else None}
        rows.append(row if only_ours else with_ratio(row, keys, False))
        if only_ours:
            row["ratio"] = None
    out.update(rows=rows, steps=bench.steps, failures=bench.failures, anomalies=bench.anomalies)
    if bench.seeded:
        out["catalog_seed"] = bench.seeded
    if any(bench.ceilings.values()):
        out["pull_ceiling"] = {k: {"median": statistics.median(v), "runs": v} for k, v in bench.ceilings.items() if v}
    return out


CPU_PER_GB = (("cpu_per_gb_push", "server CPU per GB pushed (mono+chunked steps)", ("push_monolithic", "push_chunked")),
              ("cpu_per_gb_pull", "server CPU per GB pulled (single+concurrent steps)", ("pull", "pull_concurrent")))


def cpu_per_gb_rows(bench: Bench, keys: list[str], sset: StorageSet) -> list[dict[str, Any]]:
    """Server CPU seconds per 10^9 blob bytes, one sample per timed step that moved blob bytes
    (the CPU each step recorded for the measured registry); median over the steps."""
    rows = []
    for key, label, figures in CPU_PER_GB:
        row: dict[str, Any] = {"figure": key, "label": label, "unit": "s/GB", "ratio_kind": "reference/ours"}
        for k in keys:
            vals = [st["cpu_seconds"][k] / st["bytes"] * 1e9 for st in bench.steps
                    if st["server"] == k and st["figure"] in figures and st.get("bytes")
                    and st["cpu_seconds"].get(k) is not None and not bench.failures[k].get(st["figure"])]
            row[k] = {"median": statistics.median(vals) if vals and k not in sset.unavailable else None,
                      "runs": vals}
        if any(row[k]["runs"] for k in keys):
            rows.append(with_ratio(row, keys, False))
    return rows


# The targets (bench/README.md): the ratio (as the table shows it, > 1 = ours better), and for pulls the share
# of the machine's sendfile ceiling as well. RSS is absolute: ours under 200 MiB.
TARGETS: dict[str, tuple[float, float | None]] = {
    "push_monolithic": (1.5, None), "push_chunked": (1.5, None),
    "pull": (1.5, 0.8), "pull_concurrent": (1.5, 0.8),
    "manifest_get": (1.5, None), "blob_head": (1.5, None),
    "manifest_put": (1.0, None), "small_upload": (1.0, None),
    "catalog_page": (10.0, None), "catalog_walk": (10.0, None),
}
RSS_LIMIT_MIB = 200
# Which machine limit a large-blob figure is read against (bench/limits.py's keys): a pull against
# nginx's sendfile (as many clients as the figure has), a push against min(write + fsync into new
# page-cache pages, sha256).
LIMIT_OF = {"push_monolithic": "push_mbps", "push_chunked": "push_mbps",
            "pull": "sendfile_1_mbps", "pull_concurrent": "sendfile_n_mbps"}


def annotate(row: dict[str, Any], keys: list[str], limits: dict[str, Any] | None) -> None:
    """Add `limit` (each registry's fraction of the relevant machine limit) and `target` (the
    issue's target for this figure and whether ours meets it) to a table row."""
    key = row["figure"]
    lim = (limits or {}).get(LIMIT_OF.get(key, ""))
    if lim:
        row["limit"] = {"name": LIMIT_OF[key], "mbps": lim,
                        **{k: (row[k]["median"] / lim if row[k].get("median") else None) for k in keys}}
    if key == "peak_rss" and "ours" in keys:
        rss = row["ours"].get("median")
        row["target"] = {"text": f"<{RSS_LIMIT_MIB} MiB", "pass": None if rss is None else rss < RSS_LIMIT_MIB}
        return
    if key not in TARGETS:
        return
    ratio_min, share_min = TARGETS[key]
    text = f">={ratio_min:.1f}x" + (f", >={share_min:.0%} of limit" if share_min else "")
    ok = None if row.get("ratio") is None else row["ratio"] >= ratio_min
    if share_min and ok is not None:
        share = (row.get("limit") or {}).get("ours")
        ok = None if share is None else ok and share >= share_min
    row["target"] = {"text": text, "ratio_min": ratio_min, "limit_share_min": share_min, "pass": ok}


def build_report(sets: list[StorageSet], args: argparse.Namespace, root: Path,
                 limits: dict[str, Any] | None) -> dict[str, Any]:
    out = {
        "timestamp": dt.datetime.now().isoformat(timespec="seconds"),
        "args": vars(args),
        "machine": {"hostname": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "aiohttp": aiohttp.__version__,
                    "loadavg_start": LOADAVG_START, "loadavg_end": list(os.getloadavg())},
        "work_dir": str(root), "work_dir_fs": fs_type(root),
        "notes": NOTES if any(s.name != MIRROR_SET for s in sets) else [n for n in NOTES if n != PUSH_NOTE],
        "limits": limits,
        "sets": {s.name: set_report(s, args) for s in sets},
    }
    keys = [k for k in ("ours", "reference") if args.only in (None, k)]
    for sr in out["sets"].values():
        # Pulls are read against the nginx ceiling measured next to them in this set, if there is one.
        set_limits = {**(limits or {}), **{k: v["median"] for k, v in sr.get("pull_ceiling", {}).items()}}
        for row in sr["rows"]:
            annotate(row, keys, set_limits or None)
    return out


def fmt_limit(limit: dict[str, Any] | None, keys: list[str]) -> str:
    """Each registry's share of the machine limit, e.g. `62%|35%` (ours|reference)."""
    if not limit:
        return ""
    return "|".join(f"{limit[k]:.0%}" if limit.get(k) is not None else "-" for k in keys)


def fmt_target(target: dict[str, Any] | None) -> str:
    if not target:
        return ""
    verdict = {True: "pass", False: "MISS", None: "?"}[target.get("pass")]
    return f"{target['text']} {verdict}"


def ceiling_lines(ceiling: dict[str, Any] | None, pullers: int | None) -> list[str]:
    if not ceiling:
        return []
    def cell(key: str) -> str:
        v = ceiling.get(key)
        if not v:
            return "n/a"
        spread = f" ({min(v['runs']):.0f}-{max(v['runs']):.0f})" if len(v["runs"]) > 1 else ""
        return f"{v['median']:.0f} MB/s{spread}"
    return [f"  pull ceiling in this set (nginx sendfile, same blob and client, after each repetition's pulls; "
            f"'of limit' uses it): 1 client {cell('sendfile_1_mbps')}, {pullers} clients {cell('sendfile_n_mbps')}"]


def limits_lines(limits: dict[str, Any] | None) -> list[str]:
    """The machine's limits, measured at the start of this run (bench/limits.py)."""
    if not limits:
        return ["Machine limits: not measured (--no-limits)."]
    def mbps(key: str) -> str:
        return f"{limits[key]:.0f} MB/s" if limits.get(key) else "n/a"
    out = [f"Machine limits, measured first ({limits['size_bytes'] >> 20} MiB, medians of 3): "
           f"sha256 {mbps('sha256_mbps')} (hashlib, 1 thread); disk write+fsync into new page-cache pages "
           f"{mbps('new_pages_write_mbps')} (rewriting one file {mbps('disk_write_mbps')}), "
           f"cold read {mbps('disk_read_mbps')}; nginx sendfile to this client: 1 client "
           f"{mbps('sendfile_1_mbps')}, {limits.get('sendfile_clients', '?')} clients {mbps('sendfile_n_mbps')}.",
           "'of limit' (ours|reference): a pull / nginx's sendfile with as many clients (measured again next "
           f"to the pulls in each set, see its section); a push / min(write+fsync into new pages, sha256) = "
           f"{mbps('push_mbps')}."]
    out += [f"! limits: {v}" for v in (limits.get("errors") or {}).values()]
    return out


def print_table(report: dict[str, Any], keys: list[str]) -> None:
    both = len(keys) == 2
    cols = ["figure", "unit", *keys] + (["ratio"] if both else []) + ["of limit", "target"]
    sections: list[tuple[str, dict[str, Any], list[list[str]]]] = []
    for name, sr in report["sets"].items():
        lines = []
        for row in sr["rows"]:
            cells = [row["label"], row["unit"]]
            for k in keys:
                if k in sr["unavailable"]:
                    cells.append("unavailable")
                    continue
                if row[k].get("not_applicable"):
                    cells.append("n/a")
                    continue
                m = row[k]["median"]
                runs = row[k].get("runs") or []
                cell = fmt_num(m, row["unit"])
                if len(runs) > 1:
                    cell += f" ({fmt_num(min(runs), row['unit'])}-{fmt_num(max(runs), row['unit'])})"
                if row[k].get("failures"):
                    cell += f" [{row[k]['failures']} failed]"
                cells.append(cell)
            if both:
                cells.append(f"{row['ratio']:.2f}x" if row["ratio"] else "-")
            cells += [fmt_limit(row.get("limit"), keys), fmt_target(row.get("target"))]
            lines.append(cells)
        sections.append((name, sr, lines))
    all_lines = [cells for _, _, lines in sections for cells in lines]
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *all_lines)]
    out = [
        f"Registry benchmark {report['timestamp']}: medians of {report['args']['repeat']} interleaved repetitions "
        f"(min-max in parentheses); {report['machine']['cpus']} CPUs, data on {report['work_dir_fs']}; "
        f"load average at start {report['machine']['loadavg_start'][0]:.2f}, at end "
        f"{report['machine']['loadavg_end'][0]:.2f}.",
    ]
    if both:
        out.append("ratio > 1.00x means OURS IS BETTER: ours/reference for MB/s and req/s, "
                   "reference/ours for ms, MiB and CPU seconds.")
    out += limits_lines(report.get("limits"))
    out.append("")
    out.append("  ".join(str(c).ljust(w) for c, w in zip(cols, widths)).rstrip())
    out.append("  ".join("-" * w for w in widths))
    for name, sr, lines in sections:
        took = f", {sr['seconds']:.0f} s" if sr.get("seconds") is not None else ""
        out.append(f"[{name}] {sr['title']}{took}")
        if sr.get("error"):
            out.append(f"  NOT RUN: {sr['error']}")
        for k, why in sr["unavailable"].items():  # the whole reason (and log tail) is in the JSON
            lines_ = why.splitlines()
            out.append(f"  {k} UNAVAILABLE: " + "\n    ".join(lines_[:5]) + ("\n    [...]" if len(lines_) > 5 else ""))
        for cells in lines:
            out.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip())
        out.extend(sr.get("extra_lines", []))  # the mirror set: upstream requests per pull
        out.extend(ceiling_lines(sr.get("pull_ceiling"), report["args"].get("pullers")))
        out.append("")
    for n in report["notes"]:
        out.append(f"* {n}")
    for name, sr in report["sets"].items():
        for n in sr["notes"]:
            out.append(f"* [{name}] {n}")
    for name, sr in report["sets"].items():
        for k in [*keys, *(x for x in sr["failures"] if x not in keys)]:  # + the mirror set's upstream
            for fig, fails in sr["failures"].get(k, {}).items():
                for f in fails[:2]:
                    out.append(f"! [{name}] {k} {fig}: {f.get('message')}")
                    if f.get("request"):
                        out.append(f"    request:  {f['request']}  headers={f.get('request_headers')}")
                    if f.get("status") is not None or f.get("response_body"):
                        out.append(f"    response: {f.get('status')} headers={f.get('response_headers')}")
                        out.append(f"    body:     {str(f.get('response_body'))[:600]}")
                    tail = [line for line in str(f.get("server_log_tail") or "").splitlines() if line.strip()]
                    if tail and tail != ["(no log)"]:
                        out.append("    log:      " + "\n              ".join(line[:300] for line in tail[-5:]))
            for a in sr["anomalies"].get(k, []):
                out.append(f"? [{name}] {k}: {a}")
    print("\n".join(out), flush=True)


def run_limits(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The machine's limits (bench/limits.py), with the same client code that pulls from the registries."""
    import figures
    import limits

    log("== machine limits")
    os.sync()
    return limits.measure_limits(root, args.blob_mib << 20, args.pullers, figures.get_once,
                                 figures.get_concurrent, log)


def make_sets(args: argparse.Namespace) -> list[StorageSet]:
    names = {"both": STORAGE_SETS, "all": (*STORAGE_SETS, MIRROR_SET)}.get(args.storage, (args.storage,))
    sets = []
    for name in names:
        if name == MIRROR_SET:
            import mirror

            sets.append(StorageSet(MIRROR_SET, mirror.mirror_title(args), sum(args.mirror_layer_mib), 0,
                                   list(mirror.MIRROR_NOTES)))
        elif name == "filesystem":
            sets.append(StorageSet(
                "filesystem", "ours on SQLite + filesystem (fsync on commit); reference on its filesystem driver",
                args.blob_mib, args.manifests, list(FILESYSTEM_NOTES)))
        else:
            notes = list(S3_NOTES)
            smaller = []
            if args.s3_blob_mib != args.blob_mib:
                smaller.append(f"blob {args.s3_blob_mib} MiB (--s3-blob-mib; filesystem set: --blob-mib "
                               f"{args.blob_mib})")
            if args.s3_manifests != args.manifests:
                smaller.append(f"{args.s3_manifests} manifests (--s3-manifests; filesystem set: --manifests "
                               f"{args.manifests})")
            if smaller:
                notes.append("Sizes differ between the sets: S3 set " + ", ".join(smaller) + ". By default "
                             f"the S3 set runs at most {S3_MAX_DEFAULT_MANIFESTS} manifests, which keeps a "
                             "default run near 5 minutes (the reference does ~20-45 manifest PUTs/s on "
                             "Swift). Compare the registries within a set, not the sets.")
            sets.append(StorageSet(
                "s3", "ours on PostgreSQL + S3; reference on its s3 driver; the same Swift (s3api) on loopback",
                args.s3_blob_mib, args.s3_manifests, notes))
    return sets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", choices=("filesystem", "s3", "mirror", "both", "all"), default="all",
                   help="set(s) to run, one after the other: both = filesystem and s3; all = filesystem, s3 "
                        "and mirror; default all")
    p.add_argument("--mirror", dest="storage", action="store_const", const=MIRROR_SET,
                   help="run the mirror set only (= --storage mirror)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions (medians are reported); default 3")
    p.add_argument("--blob-mib", type=int, default=256, help="big blob size in MiB, filesystem set; default 256")
    p.add_argument("--s3-blob-mib", type=int,
                   help="big blob size in MiB, S3 set; default: the same as --blob-mib")
    p.add_argument("--chunk-mib", type=int, default=16, help="PATCH size for the chunked push in MiB; default 16")
    p.add_argument("--manifests", type=int, default=2000,
                   help="manifest PUTs/GETs (distinct tags), filesystem set; default 2000")
    p.add_argument("--s3-manifests", type=int,
                   help="manifest PUTs/GETs (distinct tags), S3 set; default: --manifests, at most "
                        f"{S3_MAX_DEFAULT_MANIFESTS}")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight for manifests; default 32")
    p.add_argument("--mirror-clients", type=int, default=8,
                   help="clients pulling at once in the mirror set's cold and warm pulls; default 8")
    p.add_argument("--mirror-layer-mib", default="8,12,16,20,24,32",
                   help="layer sizes in MiB of the mirror set's image, comma-separated; default 8,12,16,20,24,32")
    p.add_argument("--figures", default="all",
                   help="comma-separated figures and groups to run: all (default), first (the original six), "
                        "new (" + ", ".join(NEW_FIGURES) + "), catalog, or any figure key ("
                        + ", ".join(FIRST_FIGURES) + "). The new figures run in the filesystem set only")
    p.add_argument("--no-limits", action="store_true", help="skip measuring the machine's limits")
    p.add_argument("--limits-only", action="store_true", help="measure the machine's limits, run no set")
    p.add_argument("--pullers", type=int, default=8, help="clients of the concurrent pull (and of nginx's); default 8")
    p.add_argument("--small-uploads", type=int, default=1000, help="1 KiB uploads per repetition; default 1000")
    p.add_argument("--head-requests", type=int, default=3000, help="blob HEADs per repetition; default 3000")
    p.add_argument("--catalog-repos", type=int, default=10000,
                   help="repositories seeded (untimed, once per set) for the catalog figures; default 10000")
    p.add_argument("--catalog-page", type=int, default=100, help="catalog page size (?n=); default 100")
    p.add_argument("--only", choices=("ours", "reference"), help="run against one registry (debugging)")
    p.add_argument("--work-dir", default="/var/tmp",
                   help="parent of the temp dir holding data dirs, Swift's data and the blob file (not tmpfs); "
                        "default /var/tmp")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data dirs, server logs) afterwards")
    args = p.parse_args(argv)
    try:
        args.mirror_layer_mib = [int(x) for x in str(args.mirror_layer_mib).split(",") if x.strip()]
    except ValueError:
        p.error("--mirror-layer-mib takes sizes in MiB separated by commas, e.g. 8,12,16")
    if not args.mirror_layer_mib or min(args.mirror_layer_mib) < 1:
        p.error("--mirror-layer-mib needs at least one size, each >= 1")
    try:
        args.figures = parse_figures(args.figures)
    except ValueError as exc:
        p.error(f"--figures: unknown figure or group {exc}")
    if min(args.pullers, args.small_uploads, args.head_requests, args.catalog_page) < 1 or args.catalog_repos <= args.catalog_page:
        p.error("--pullers, --small-uploads, --head-requests and --catalog-page must be >= 1, and "
                "--catalog-repos larger than --catalog-page")
    if args.s3_blob_mib is None:
        args.s3_blob_mib = args.blob_mib
    if args.s3_manifests is None:
        args.s3_manifests = min(args.manifests, S3_MAX_DEFAULT_MANIFESTS)

    if min(args.repeat, args.blob_mib, args.s3_blob_mib, args.chunk_mib, args.manifests, args.s3_manifests,
           args.concurrency, args.mirror_clients) < 1:
        p.error("--repeat, --blob-mib, --s3-blob-mib, --chunk-mib, --manifests, --s3-manifests, --concurrency and "
                "--mirror-clients must be >= 1")
    if args.only != "ours" and not os.access(REFERENCE_BIN, os.X_OK):
        p.error(f"{REFERENCE_BIN} not found: apt-get install -y docker-registry (or use --only ours)")

    LOADAVG_START[:] = os.getloadavg()
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="registry-bench-", dir=args.work_dir))
    if fs_type(root) in ("tmpfs", "ramfs"):
        log(f"warning: {root} is on {fs_type(root)}; fsync costs nothing there")
    sets = [] if args.limits_only else make_sets(args)
    keys = [k for k in ("ours", "reference") if args.only in (None, k)]
    limits = None if args.no_limits else run_limits(args, root)

    exit_code = 0
    try:
        for sset in sets:
            run_set(sset, args, root)
    except KeyboardInterrupt:
        exit_code = 130
        log("interrupted")

    ran = [s for s in sets if s.bench is not None or s.error or s.unavailable]
    report = build_report(ran, args, root, limits)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / (dt.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    for sset in ran:  # server logs (warn level: normally empty) next to the JSON
        logs = [(s.key, s.log_path) for s in sset.candidates] + list(sset.extra_logs)
        if sset.backing:
            logs += [(f"swift-{p.stem}" if p.parent.name == "log" else "postgres", p)
                     for p in sset.backing.log_paths()]
        failed = any(sset.bench.failures[k] for k in sset.bench.failures) if sset.bench else True
        for key, path in logs:
            try:  # PostgreSQL always logs its start-up: keep its log only when something failed
                if path.stat().st_size and (key != "postgres" or failed):
                    shutil.copyfile(path, out.with_name(f"{out.stem}-{sset.name}-{key}.log"))
            except OSError:
                pass
    print_table(report, keys)
    print(f"\nJSON: {out}", flush=True)
    if any(s.error or s.start_failed for s in sets):
        exit_code = exit_code or 2
    if any(s.bench and any(s.bench.failures[k] for k in s.bench.failures) for s in sets):
        exit_code = exit_code or 1

    if args.keep:
        log(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    # bench/mirror.py imports this module as `run`: let it find this instance, not load a second copy.
    sys.modules.setdefault("run", sys.modules[__name__])
    raise SystemExit(main())

#!/usr/bin/env python3
"""Side-by-side benchmark: our registry (`python -m registry serve`) against the reference,
Debian's `docker-registry` (CNCF Distribution 2.8.2).

    cd /work/main && .venv/bin/python bench/run.py [--repeat 3] [--blob-mib 256]
        [--manifests 2000] [--concurrency 32] [--only ours|reference]

Both registries run at the same time on 127.0.0.1, each with a fresh data dir under one temp dir
on the same (non-tmpfs) disk. Every figure is measured on ours, then on the reference (A, B), and
the whole sequence repeats `--repeat` times; the table shows medians. See bench/README.md for what
each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import hashlib
import http.client
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
REFERENCE_BIN = "/usr/bin/docker-registry"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"

MB = 1_000_000  # throughput is reported in MB/s = 10^6 bytes per second
IO_BLOCK = 1 << 20  # client-side read/send buffer for blob bodies
BLOB_REPO = "bench/blob"
TAGS_LIST_REQUESTS = 20
MAX_ERRORS_KEPT = 5

NOTES = [
    "Our registry fsyncs every committed blob and manifest; the reference (Distribution 2.8.2, "
    "filesystem driver) does not fsync. The bench runs sync(2) before every timed step so neither "
    "pays for the other's dirty pages.",
    "Each blob push uses a fresh digest (the first 64 bytes of the blob file are rewritten for every "
    "repetition and push kind), so neither registry can short-cut an existing blob; nothing is deleted.",
    "The pull reads back the blob pushed monolithically in the same repetition (likely in the page "
    "cache for both registries).",
    "The HTTP client is Python on the same 2-core machine; it competes with the server for CPU and may "
    "cap the faster side.",
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
# Server processes

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str, timeout: float = 1.0) -> bool:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        conn.request("GET", parsed.path or "/")
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (a server may fork workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def vm_hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    key = "?"
    title = "?"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / f"{self.key}-data"
        self.log_path = root / f"{self.key}.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.command: list[str] = []
        self.final_stats: dict[str, Any] = {}

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def build_command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.command = self.build_command()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.title} exited with {self.proc.returncode} during start-up; "
                                   f"command: {' '.join(self.command)}\nlog:\n{self.log_tail()}")
            if http_ok(f"{self.url}/v2/"):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.title} did not answer GET /v2/ with 200 within {timeout}s; log:\n{self.log_tail()}")

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def cpu(self) -> float | None:
        """CPU seconds used so far by the server and its children."""
        if not self.alive():
            return None
        assert self.proc is not None
        vals = [cpu_seconds(pid) for pid in process_tree(self.proc.pid)]
        return sum(v for v in vals if v is not None)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def collect_stats(self) -> dict[str, Any]:
        """Peak RSS (VmHWM) and CPU time of the server and any children; call before stop()."""
        if not self.alive():
            return {"error": f"process not running (exit code {self.proc.returncode if self.proc else None})"}
        assert self.proc is not None
        pids = process_tree(self.proc.pid)
        hwm = {pid: vm_hwm_kib(pid) for pid in pids}
        cpu = {pid: cpu_seconds(pid) for pid in pids}
        self.final_stats = {
            "pid": self.proc.pid,
            "processes": len(pids),
            "peak_rss_kib_main": hwm.get(self.proc.pid),
            "peak_rss_kib_sum": sum(v for v in hwm.values() if v),
            "cpu_seconds": sum(v for v in cpu.values() if v),
        }
        return self.final_stats

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class OurServer(Server):
    key = "ours"
    title = "ours (python -m registry)"

    def build_command(self) -> list[str]:
        cmd = [sys.executable, "-m", "registry", "serve", "--listen", self.host, "--data-dir", str(self.data_dir)]
        # Match the reference's log level (warn) if our CLI has the flag; per-request info logs would
        # otherwise cost us CPU that the reference does not spend.
        if "--log-level" in serve_help():
            cmd += ["--log-level", "warning"]
        return cmd

    def env(self) -> dict[str, str]:
        # Only the command line configures the server under test.
        return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


class ReferenceServer(Server):
    key = "reference"
    title = "reference (docker-registry 2.8.2)"

    def build_command(self) -> list[str]:
        config = self.root / "reference-config.yml"
        # Same as Debian's shipped /etc/docker/registry/config.yml (in-memory blob descriptor cache,
        # delete enabled) minus auth and the storage health check, on loopback, access log off.
        config.write_text(
            "version: 0.1\n"
            "log:\n"
            "  level: warn\n"
            "  accesslog:\n"
            "    disabled: true\n"
            "storage:\n"
            "  filesystem:\n"
            f"    rootdirectory: {self.data_dir}\n"
            "  delete:\n"
            "    enabled: true\n"
            "  cache:\n"
            "    blobdescriptor: inmemory\n"
            "http:\n"
            f"  addr: {self.host}\n"
            "  secret: registry-bench-not-a-secret\n"
        )
        return [REFERENCE_BIN, "serve", str(config)]

    def env(self) -> dict[str, str]:
        # REGISTRY_* variables would override the config file.
        return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


_SERVE_HELP: str | None = None


def serve_help() -> str:
    global _SERVE_HELP
    if _SERVE_HELP is None:
        try:
            out = subprocess.run([sys.executable, "-m", "registry", "serve", "--help"], cwd=REPO_ROOT,
                                 capture_output=True, text=True, timeout=60)
            _SERVE_HELP = out.stdout + out.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            _SERVE_HELP = str(exc)
    return _SERVE_HELP


# --------------------------------------------------------------------------------------------
# Blocking HTTP client for blob transfers (one keep-alive connection, 1 MiB send/receive blocks)

class LimitedReader:
    """A file window [offset, offset+length) that http.client streams in blocksize reads."""

    def __init__(self, f: io.BufferedReader, length: int) -> None:
        self.f = f
        self.left = length

    def read(self, amt: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if amt is None or amt < 0 else min(amt, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data


class BlobClient:
    def __init__(self, base_url: str) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.base_url = base_url
        self.host = parsed.hostname
        self.port = parsed.port
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=600, blocksize=IO_BLOCK)

    def close(self) -> None:
        self.conn.close()

    def _reset(self) -> None:
        self.conn.close()
        self.conn = self._connect()

    def send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
             ) -> http.client.HTTPResponse:
        """Send a request and return the response with its body unread."""
        headers = dict(headers or {})
        if body is None and method in ("POST", "PUT", "PATCH"):
            headers.setdefault("Content-Length", "0")
        try:
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
            raise StepError(f"{method} {path}: {exc!r}", {"request": f"{method} {path}", "request_headers": headers})
        try:
            return self.conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._reset()
            raise StepError(f"{method} {path}: no response ({exc!r})",
                            {"request": f"{method} {path}", "request_headers": headers}) from exc

    def call(self, method: str, path: str, expect: int | tuple[int, ...], body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        resp = self.send(method, path, body, headers)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._reset()
            raise StepError(f"{method} {path}: reading the response failed ({exc!r})",
                            describe_response(method, path, resp.status, resp.headers, None, headers)) from exc
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
        _, headers, _ = c.call("PUT", put, 201, body=f,
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
            f.seek(offset)
            _, headers, _ = c.call("PATCH", loc, 202, body=LimitedReader(f, n), headers={
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
        buf = bytearray(IO_BLOCK)
        view = memoryview(buf)
        hasher = hashlib.sha256() if verify else None
        total = 0
        while True:
            n = resp.readinto(view)
            if not n:
                break
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
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
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
]


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


class Bench:
    def __init__(self, args: argparse.Namespace, servers: list[Server], root: Path) -> None:
        self.args = args
        self.servers = servers
        self.root = root
        self.blob = root / "blob.bin"
        self.size = args.blob_mib << 20
        self.chunk = args.chunk_mib << 20
        self.samples: dict[str, dict[str, list[float]]] = {s.key: {} for s in servers}
        self.extra: dict[str, dict[str, list[Any]]] = {s.key: {} for s in servers}
        self.failures: dict[str, dict[str, list[dict[str, Any]]]] = {s.key: {} for s in servers}
        self.anomalies: dict[str, list[str]] = {s.key: [] for s in servers}
        self.clients = {s.key: BlobClient(s.url) for s in servers}
        self.steps: list[dict[str, Any]] = []
        self.run_id = dt.datetime.now().strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def record_failure(self, server: Server, figure: str, detail: dict[str, Any]) -> None:
        detail = {**detail}
        if not server.alive():
            detail["server_exit_code"] = server.proc.returncode if server.proc else None
            detail["server_log_tail"] = server.log_tail()
        self.failures[server.key].setdefault(figure, []).append(detail)
        self.log(f"  !! {server.key} {figure} FAILED: {detail.get('message')}")
        for k in ("request", "status", "response_body"):
            if detail.get(k) is not None:
                self.log(f"     {k}: {str(detail[k])[:400]}")

    def measure(self, server: Server, figure: str, fn: Callable[[], float], fmt: str) -> None:
        """Run one timed step (fn returns the figure's value) after a sync(2); record value or failure."""
        if not server.alive():
            self.record_failure(server, figure, {"message": f"{server.title} is not running"})
            return
        os.sync()
        cpu0 = {s.key: s.cpu() for s in self.servers}
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
            self._account(server, figure, time.perf_counter() - t0, cpu0)
        self.samples[server.key].setdefault(figure, []).append(value)
        self.log(f"  {server.key:9s} {figure:15s} {fmt.format(value)}")

    def _account(self, server: Server, figure: str, wall: float, cpu0: dict[str, float | None]) -> None:
        """CPU seconds each server used during this step: the measured one's cost, and whether the
        idle one was busy in the background (which would steal CPU from the measured one)."""
        cpu = {}
        for s in self.servers:
            now = s.cpu()
            cpu[s.key] = round(now - cpu0[s.key], 3) if now is not None and cpu0[s.key] is not None else None
        self.steps.append({"server": server.key, "figure": figure, "wall_seconds": round(wall, 3),
                           "cpu_seconds": cpu})
        for s in self.servers:
            busy = cpu[s.key]
            if s is not server and busy is not None and busy > max(0.25, 0.1 * wall):
                self.anomalies[s.key].append(
                    f"used {busy:.2f} s of CPU while idle, during {server.key}'s {figure} step "
                    f"({wall:.2f} s wall): background work competing with the measured server")

    def run(self) -> None:
        a = self.args
        self.log(f"generating a {a.blob_mib} MiB random blob in {self.blob}")
        make_blob(self.blob, self.size)
        config, layer = tiny_image()
        for rep in range(1, a.repeat + 1):
            self.log(f"repetition {rep}/{a.repeat}")
            # 1. monolithic push, fresh digest
            mono_digest = set_variant(self.blob, f"{self.run_id} rep{rep} monolithic")
            for s in self.servers:
                c = self.clients[s.key]
                self.measure(s, "push_monolithic", lambda c=c: self._timed_mb(
                    lambda: push_monolithic(c, BLOB_REPO, self.blob, self.size, mono_digest)), "{:.1f} MB/s")
            # 2. chunked push, another fresh digest
            chunk_digest = set_variant(self.blob, f"{self.run_id} rep{rep} chunked")
            for s in self.servers:
                c = self.clients[s.key]
                anomalies = self.anomalies[s.key]
                self.measure(s, "push_chunked", lambda c=c, an=anomalies: self._timed_mb(
                    lambda: push_chunked(c, BLOB_REPO, self.blob, self.size, chunk_digest, self.chunk, an)),
                    "{:.1f} MB/s")
            # 3. pull the monolithic blob of this repetition
            for s in self.servers:
                c = self.clients[s.key]
                self.measure(s, "pull", lambda c=c: self._timed_mb(
                    lambda: pull_blob(c, BLOB_REPO, mono_digest, self.size)), "{:.1f} MB/s")
            if rep == 1:  # untimed: the bytes served are the bytes pushed
                for s in self.servers:
                    if "pull" in self.samples[s.key] or "push_monolithic" in self.samples[s.key]:
                        try:
                            pull_blob(self.clients[s.key], BLOB_REPO, mono_digest, self.size, verify=True)
                        except StepError as exc:
                            self.record_failure(s, "pull_verify", exc.detail)
            # 4-6. manifests in a fresh repository per repetition
            repo = f"bench/manifests-r{rep}"
            manifests = build_manifests(a.manifests, config, layer)
            ready = []
            for s in self.servers:
                try:
                    push_small_blob(self.clients[s.key], repo, config)
                    push_small_blob(self.clients[s.key], repo, layer)
                    ready.append(s)
                except StepError as exc:
                    self.record_failure(s, "manifest_setup", exc.detail)
            for s in ready:
                self.measure(s, "manifest_put", lambda s=s: self._burst(s, "manifest_put",
                             put_manifests(s.url, repo, manifests, a.concurrency)), "{:.0f} req/s")
            for s in ready:
                self.measure(s, "manifest_get", lambda s=s: self._burst(s, "manifest_get",
                             get_manifests(s.url, repo, manifests, a.concurrency)), "{:.0f} req/s")
            for s in ready:
                c = self.clients[s.key]
                self.measure(s, "tags_list", lambda c=c, s=s: self._tags(s, c, repo), "{:.2f} ms")

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
        lat = tags_list_latencies(c, repo, self.args.manifests, TAGS_LIST_REQUESTS, self.anomalies[s.key])
        self.extra[s.key].setdefault("tags_list", []).append({"latencies_ms": [x * 1000 for x in lat]})
        return statistics.median(lat) * 1000


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
        return f"{v:.1f}"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def build_report(bench: Bench, args: argparse.Namespace, servers: list[Server], root: Path) -> dict[str, Any]:
    keys = [s.key for s in servers]
    blob = f"{args.blob_mib} MiB"
    rows = []
    for key, label, unit, higher in FIGURES:
        label = label.format(blob=blob, chunk=f"{args.chunk_mib} MiB", n=args.manifests, c=args.concurrency,
                             t=TAGS_LIST_REQUESTS)
        row: dict[str, Any] = {"figure": key, "label": label, "unit": unit,
                               "ratio_kind": "ours/reference" if higher else "reference/ours"}
        for k in keys:
            vals = bench.samples[k].get(key, [])
            row[k] = {"median": statistics.median(vals) if vals else None, "runs": vals,
                      "failures": len(bench.failures[k].get(key, []))}
            if key in bench.extra[k]:
                row[k]["details"] = bench.extra[k][key]
        if "ours" in keys and "reference" in keys and row["ours"]["median"] and row["reference"]["median"]:
            o, r = row["ours"]["median"], row["reference"]["median"]
            row["ratio"] = o / r if higher else r / o
        else:
            row["ratio"] = None
        rows.append(row)
    stats = {s.key: s.final_stats for s in servers}
    for key, label, unit, conv in (("peak_rss", "peak RSS (VmHWM, whole run)", "MiB", lambda st: st.get("peak_rss_kib_sum", 0) / 1024),
                                   ("cpu_time", "server CPU time (user+sys, whole run)", "s", lambda st: st.get("cpu_seconds"))):
        row = {"figure": key, "label": label, "unit": unit, "ratio_kind": "reference/ours"}
        for k in keys:
            st = stats.get(k) or {}
            row[k] = {"median": conv(st) if "error" not in st and st else None}
        if "ours" in keys and "reference" in keys and row["ours"]["median"] and row["reference"]["median"]:
            row["ratio"] = row["reference"]["median"] / row["ours"]["median"]
        else:
            row["ratio"] = None
        rows.append(row)
    return {
        "timestamp": dt.datetime.now().isoformat(timespec="seconds"),
        "args": vars(args),
        "machine": {"hostname": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "aiohttp": aiohttp.__version__},
        "work_dir": str(root), "work_dir_fs": fs_type(root),
        "servers": {s.key: {"title": s.title, "command": s.command, "url": s.url, **s.final_stats} for s in servers},
        "rows": rows,
        "steps": bench.steps,
        "failures": bench.failures,
        "anomalies": bench.anomalies,
        "notes": NOTES,
    }


def print_table(report: dict[str, Any], keys: list[str]) -> None:
    both = len(keys) == 2
    cols = ["figure", "unit", *keys] + (["ratio"] if both else [])
    lines = []
    for row in report["rows"]:
        cells = [row["label"], row["unit"]]
        for k in keys:
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
        lines.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *lines)]
    out = [
        f"Registry benchmark {report['timestamp']}: medians of {report['args']['repeat']} interleaved repetitions "
        f"(min-max in parentheses); {report['machine']['cpus']} CPUs, data on {report['work_dir_fs']}.",
    ]
    if both:
        out.append("ratio > 1.00x means OURS IS BETTER: ours/reference for MB/s and req/s, "
                   "reference/ours for ms, MiB and CPU seconds.")
    out.append("")
    out.append("  ".join(str(c).ljust(w) for c, w in zip(cols, widths)))
    out.append("  ".join("-" * w for w in widths))
    for cells in lines:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)))
    out.append("")
    for n in report["notes"]:
        out.append(f"* {n}")
    for k in keys:
        for fig, fails in report["failures"][k].items():
            for f in fails[:2]:
                out.append(f"! {k} {fig}: {f.get('message')}")
                if f.get("request"):
                    out.append(f"    request:  {f['request']}  headers={f.get('request_headers')}")
                if f.get("status") is not None or f.get("response_body"):
                    out.append(f"    response: {f.get('status')} headers={f.get('response_headers')}")
                    out.append(f"    body:     {str(f.get('response_body'))[:600]}")
        for a in report["anomalies"][k]:
            out.append(f"? {k}: {a}")
    print("\n".join(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="repetitions (medians are reported); default 3")
    p.add_argument("--blob-mib", type=int, default=256, help="size of the big blob in MiB; default 256")
    p.add_argument("--chunk-mib", type=int, default=16, help="PATCH size for the chunked push in MiB; default 16")
    p.add_argument("--manifests", type=int, default=2000, help="manifest PUTs/GETs (distinct tags); default 2000")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight for manifests; default 32")
    p.add_argument("--only", choices=("ours", "reference"), help="run against one registry (debugging)")
    p.add_argument("--work-dir", default="/var/tmp",
                   help="parent of the temp dir holding both data dirs and the blob file (not tmpfs); default /var/tmp")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data dirs, server logs) afterwards")
    args = p.parse_args(argv)

    if args.repeat < 1 or args.blob_mib < 1 or args.chunk_mib < 1 or args.manifests < 1 or args.concurrency < 1:
        p.error("--repeat, --blob-mib, --chunk-mib, --manifests and --concurrency must be >= 1")
    if args.only != "ours" and not os.access(REFERENCE_BIN, os.X_OK):
        p.error(f"{REFERENCE_BIN} not found: apt-get install -y docker-registry (or use --only ours)")

    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="registry-bench-", dir=args.work_dir))
    if fs_type(root) in ("tmpfs", "ramfs"):
        print(f"warning: {root} is on {fs_type(root)}; fsync costs nothing there", file=sys.stderr)
    servers: list[Server] = []
    if args.only in (None, "ours"):
        servers.append(OurServer(root))
    if args.only in (None, "reference"):
        servers.append(ReferenceServer(root))

    bench = None
    exit_code = 0
    try:
        for s in servers:
            s.start()
            print(f"started {s.title} at {s.url} (pid {s.proc.pid if s.proc else '?'})", file=sys.stderr)
        bench = Bench(args, servers, root)
        bench.run()
        for s in servers:
            s.collect_stats()
    except KeyboardInterrupt:
        exit_code = 130
        print("interrupted", file=sys.stderr)
        for s in servers:
            if s.alive():
                s.collect_stats()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        exit_code = 2
    finally:
        if bench:
            for c in bench.clients.values():
                c.close()
        for s in servers:
            s.stop()
            if s.proc is not None and s.proc.returncode not in (0, -signal.SIGTERM, 2):
                print(f"note: {s.title} exited with {s.proc.returncode}", file=sys.stderr)

    if bench is not None:
        report = build_report(bench, args, servers, root)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / (dt.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
        out.write_text(json.dumps(report, indent=2) + "\n")
        for s in servers:  # server logs (warn level: normally empty) next to the JSON
            try:
                if s.log_path.stat().st_size:
                    shutil.copyfile(s.log_path, out.with_name(f"{out.stem}-{s.key}.log"))
            except OSError:
                pass
        print_table(report, [s.key for s in servers])
        print(f"\nJSON: {out}", flush=True)
        if any(bench.failures[k] for k in bench.failures):
            exit_code = exit_code or 1

    if args.keep:
        print(f"kept {root} (logs: {', '.join(str(s.log_path) for s in servers)})", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())

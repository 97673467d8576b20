"""The machine's own limits, measured in the same run as the registries (bench/run.py prints them
first and stores them in the JSON under `limits`), so each large-blob figure can be read as a
fraction of what this machine can do at all:

- sha256: hashlib over large buffers, one thread (what a registry must spend to verify a push);
- disk: sequential write of a file (1 MiB blocks, then fsync, timed together), into new files (new
  page-cache pages, as a push needs; the push limit) and rewriting one file (recycled pages), and
  sequential read after dropping its pages from the page cache (posix_fadvise DONTNEED, only that
  file's pages), on the filesystem of the run's temp dir;
- sendfile: the same file served by nginx (Debian's nginx-light, sendfile on, one worker like
  our registry's default, on 127.0.0.1) and pulled by the bench's own blob client, by one client
  and by N clients at once: the ceiling for a pull by this client here (nginx does no work per
  byte). bench/run.py measures it again after the pulls of every repetition, to share their noise.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

from servers import REPO_ROOT, free_port, http_ok

sys.path.insert(0, str(REPO_ROOT))
from registry.storage.filesystem import WRITEBACK_EVERY, start_writeback  # noqa: E402  (the registry's own writer)

NGINX_BIN = "/usr/sbin/nginx"
MB = 1_000_000
HASH_BLOCK = 8 << 20  # hashlib releases the GIL and runs at full speed on buffers this large
HASH_SECONDS = 0.7  # per trial
TRIALS = 3
WRITE_BLOCK = 1 << 20


def sha256_mbps() -> float:
    """Median over TRIALS of one thread hashing an 8 MiB buffer repeatedly for HASH_SECONDS."""
    buf = os.urandom(HASH_BLOCK)
    rates = []
    for _ in range(TRIALS):
        h = hashlib.sha256()
        done = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < HASH_SECONDS:
            h.update(buf)
            done += len(buf)
        rates.append(done / (time.perf_counter() - t0) / MB)
    return statistics.median(rates)


def new_pages_write_mbps(directory: Path, size: int) -> float:
    """Median over TRIALS of disk_write_mbps into a new file each time, the earlier ones kept until
    the end, so the page cache must take pages it did not just free: what every blob a registry
    receives costs. On a VM whose memory the host backs lazily (this one), touching such a page the
    first time costs several times the copy, and rewriting one path would hide that (it recycles
    the pages its truncation just freed)."""
    paths = [directory / f"limits-new-pages-{i}.bin" for i in range(TRIALS)]
    try:
        return statistics.median(disk_write_mbps(path, size) for path in paths)
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def disk_write_mbps(path: Path, size: int) -> float:
    """Write `size` bytes in 1 MiB blocks and fsync; the fsync is inside the timing, as a registry's is.
    Writeback of each 8 MiB written is started as it goes (sync_file_range), so the final fsync
    waits for the tail only: the best a writer can do here, and what a registry can do too."""
    block = memoryview(os.urandom(WRITE_BLOCK))
    os.sync()  # start with no one else's dirty pages queued in front of ours
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = flushed = 0
        while written < size:
            written += os.write(fd, block[:min(size - written, WRITE_BLOCK)])
            if written - flushed >= WRITEBACK_EVERY:
                start_writeback(fd, flushed, written - flushed)
                flushed = written
        os.fsync(fd)
    finally:
        os.close(fd)
    return size / (time.perf_counter() - t0) / MB


def disk_read_mbps(path: Path) -> float:
    """Read the file sequentially after evicting its (clean, fsynced) pages from the page cache."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        buf = bytearray(WRITE_BLOCK)
        t0 = time.perf_counter()
        while os.readv(fd, [buf]):
            pass
        return size / (time.perf_counter() - t0) / MB
    finally:
        os.close(fd)


class StaticNginx:
    """nginx serving one directory on 127.0.0.1 with sendfile on, from a temp config (no system files)."""

    def __init__(self, root: Path, docroot: Path) -> None:
        self.dir = root / "nginx"
        self.docroot = docroot
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        # Workers of a root master would run as `nobody`, who cannot enter the 0700 temp dir.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        d = self.dir
        return (
            f"{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            # tcp_nopush (TCP_CORK) off, as aiohttp runs (TCP_NODELAY): with it on, nginx measured
            # slower here, and a ceiling should not be set low by a setting.
            "  access_log off;\n  sendfile on;\n  tcp_nopush off;\n  keepalive_requests 100000;\n"
            "  default_type application/octet-stream;\n"
            f"  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n"
            f"  server {{ listen 127.0.0.1:{self.port}; root {self.docroot}; }}\n"
            "}\n")

    def start(self, timeout: float = 10) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(self.config())
        # -e: start-up errors go to our dir, not /var/log/nginx; -p: no default prefix paths.
        self.proc = subprocess.Popen([NGINX_BIN, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                                      "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {err.strip()[:500]}")
            if http_ok(f"{self.url}/ping"):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not answer on {self.url} within {timeout}s")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown of master and worker
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def sendfile_mbps(root: Path, blob: Path, size: int, clients: int,
                  pull_one: Callable[[str, str, int, int | None], float],
                  pull_many: Callable[[str, str, int, int], float]) -> dict[str, float]:
    """MB/s of the bench's own client pulling `blob` from nginx: one client (median of TRIALS) and
    `clients` at once (median of TRIALS). pull_one/pull_many are run.py's, so the client is the same
    code that pulls from the registries."""
    docroot = root / "nginx-root"
    docroot.mkdir(parents=True, exist_ok=True)
    (docroot / "ping").write_text("ok\n")
    target = docroot / "blob"
    if blob.stat().st_dev == docroot.stat().st_dev:
        os.link(blob, target)
    else:
        shutil.copyfile(blob, target)
    nginx = StaticNginx(root, docroot)
    nginx.start()
    try:
        pull_one(nginx.url, "/blob", size, None)  # untimed: the file into the page cache, as a registry's blob is
        single = [size / pull_one(nginx.url, "/blob", size, nginx.pid) / MB for _ in range(TRIALS)]
        many = [pull_many(nginx.url, "/blob", size, clients) for _ in range(TRIALS)]
        return {"sendfile_1_mbps": statistics.median(single), "sendfile_n_mbps": statistics.median(many),
                "sendfile_clients": clients}
    finally:
        nginx.stop()
        shutil.rmtree(docroot, ignore_errors=True)


def measure_limits(root: Path, size: int, clients: int, pull_one: Callable[[str, str, int, int | None], float],
                   pull_many: Callable[[str, str, int, int], float],
                   log: Callable[[str], None]) -> dict[str, Any]:
    """All limits; a part that cannot run (no nginx) is reported under `errors` and the rest still runs."""
    out: dict[str, Any] = {"size_bytes": size, "errors": {}}
    out["sha256_mbps"] = sha256_mbps()
    log(f"  limit sha256 (hashlib, 8 MiB buffers, 1 thread)  {out['sha256_mbps']:.0f} MB/s")
    path = root / "limits-disk.bin"
    try:
        out["new_pages_write_mbps"] = new_pages_write_mbps(root, size)
        log(f"  limit disk write + fsync into new page-cache pages ({size >> 20} MiB)  "
            f"{out['new_pages_write_mbps']:.0f} MB/s")
        out["disk_write_mbps"] = statistics.median(disk_write_mbps(path, size) for _ in range(TRIALS))
        log(f"  limit disk write + fsync, rewriting one file ({size >> 20} MiB)  {out['disk_write_mbps']:.0f} MB/s")
        out["disk_read_mbps"] = statistics.median(disk_read_mbps(path) for _ in range(TRIALS))
        log(f"  limit disk read, cold ({size >> 20} MiB)  {out['disk_read_mbps']:.0f} MB/s")
        if not os.access(NGINX_BIN, os.X_OK):
            raise RuntimeError(f"{NGINX_BIN} not found: apt-get install -y nginx-light")
        out.update(sendfile_mbps(root, path, size, clients, pull_one, pull_many))
        log(f"  limit nginx sendfile pull, 1 client  {out['sendfile_1_mbps']:.0f} MB/s; "
            f"{clients} clients  {out['sendfile_n_mbps']:.0f} MB/s")
    except (OSError, RuntimeError) as exc:
        out["errors"]["limits"] = f"{type(exc).__name__}: {exc}"
        log(f"  limit: {out['errors']['limits']}")
    finally:
        path.unlink(missing_ok=True)
    out["push_mbps"] = min(v for v in (out.get("new_pages_write_mbps"), out["sha256_mbps"]) if v)
    return out

"""The processes bench/run.py starts: the two registries under test and, for the S3 set, the S3
server and database they use (OpenStack Swift with s3api, and PostgreSQL, both on loopback).

A storage set is one pair of registries that run the same workload:

- `filesystem`: ours on its embedded default (SQLite + filesystem, `--data-dir`), the reference on
  its `filesystem` driver.
- `s3`: ours on PostgreSQL + S3, the reference on its `s3` driver; both use the same Swift server,
  each in its own bucket (see S3Backing).

The `mirror` set (bench/mirror.py) is a pair of pull-through mirrors instead: ours (MirrorOurs, our
registry with the upstream configured as its Docker Hub mirror) and the reference in proxy mode
(MirrorReference), both in front of the same upstream (MirrorUpstream, our registry on plain
filesystem, logging every request at the default level `info`).

Everything lives in the run's temp dir; the launchers for Swift and PostgreSQL come from
tests/support (they need `.venv-swift`, from `scripts/swift-venv`, and the PostgreSQL server binaries).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any
from collections.abc import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_BIN = "/usr/bin/docker-registry"

#: Multipart part size for both registries on S3: ours' `storage.s3.part_size` default, and the
#: reference's `chunksize` (its default is 10 MiB); the same value keeps their S3 traffic alike.
S3_PART_BYTES = 8 << 20
OURS_BUCKET = "bench-ours"
OURS_PREFIX = "ours"
REFERENCE_BUCKET = "bench-reference"
REFERENCE_ROOTDIR = "/ref"

STORAGE_SETS = ("filesystem", "s3")
MIRROR_SET = "mirror"  # bench/mirror.py: pull-through mirrors in front of one upstream


# --------------------------------------------------------------------------------------------
# /proc helpers

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


def cpu_seconds(pid: int, reaped_children: bool = False) -> float | None:
    """utime + stime of pid; with reaped_children, plus what its exited (waited-for) children used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without REGISTRY_* (they would override the server's config)
    and AWS_* (only the explicit settings count; and with AWS_CA_BUNDLE set, Distribution 2.8.2
    panics at start: "LoadCustomCABundleError ... unsupported transport")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "AWS_"))}
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------
# Registries

class Server:
    key = "?"
    title = "?"

    def __init__(self, root: Path, storage: str = "filesystem", backing: S3Backing | None = None) -> None:
        if storage == "s3" and backing is None:
            raise ValueError("the s3 set needs an S3Backing")
        self.root = root
        self.storage = storage
        self.backing = backing
        self.name = f"{storage}-{self.key}"
        self.data_dir = root / f"{self.name}-data"
        self.log_path = root / f"{self.name}.log"
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

    def env(self) -> dict[str, str]:
        return clean_env()

    def describe(self) -> dict[str, Any]:
        """For the JSON: how this server was run."""
        return {"title": self.title, "storage": self.storage, "command": self.command, "url": self.url}

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

    @property
    def title(self) -> str:  # type: ignore[override]
        return ("ours (python -m registry, PostgreSQL + S3)" if self.storage == "s3"
                else "ours (python -m registry, SQLite + filesystem)")

    def build_command(self) -> list[str]:
        # On S3 the data dir stays empty (no SQLite, no blob files); it is passed anyway so nothing
        # lands in ./data by accident.
        cmd = [sys.executable, "-m", "registry", "serve", "--listen", self.host, "--data-dir", str(self.data_dir)]
        # Match the reference's log level (warn) if our CLI has the flag; per-request info logs would
        # otherwise cost us CPU that the reference does not spend.
        if "--log-level" in serve_help():
            cmd += ["--log-level", "warning"]
        return cmd

    def env(self) -> dict[str, str]:
        # Filesystem: only the command line configures the server under test. S3: plus the
        # REGISTRY_* settings for PostgreSQL + S3 (tests/support/backends.py's s3_env).
        return clean_env(**(self.backing.our_env() if self.backing else {}))

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.backing:
            out["env"] = {k: (redact_url(v) if k == "REGISTRY_DATABASE_URL" else
                              "***" if k.endswith("SECRET_KEY") else v)
                          for k, v in sorted(self.backing.our_env().items())}
        return out


class ReferenceServer(Server):
    key = "reference"

    @property
    def title(self) -> str:  # type: ignore[override]
        return "reference (docker-registry 2.8.2, s3 driver)" if self.storage == "s3" \
            else "reference (docker-registry 2.8.2, filesystem driver)"

    @property
    def config_path(self) -> Path:
        return self.root / f"{self.name}-config.yml"

    def extra_yaml(self) -> str:
        """Top-level config sections beyond the common ones (the mirror set's `proxy`)."""
        return ""

    def build_command(self) -> list[str]:
        # Same as Debian's shipped /etc/docker/registry/config.yml (in-memory blob descriptor cache,
        # delete enabled) minus auth and the storage health check, on loopback, access log off.
        if self.backing:
            storage = self.backing.reference_storage_yaml()
        else:
            storage = ("  filesystem:\n"
                       f"    rootdirectory: {self.data_dir}\n")
        self.config_path.write_text(
            "version: 0.1\n"
            "log:\n"
            "  level: warn\n"
            "  accesslog:\n"
            "    disabled: true\n"
            "storage:\n"
            f"{storage}"
            "  delete:\n"
            "    enabled: true\n"
            "  cache:\n"
            "    blobdescriptor: inmemory\n"
            "http:\n"
            f"  addr: {self.host}\n"
            "  secret: registry-bench-not-a-secret\n"
            f"{self.extra_yaml()}"
        )
        return [REFERENCE_BIN, "serve", str(self.config_path)]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        try:
            out["config"] = re.sub(r"(secretkey:).*", r'\1 "***"', self.config_path.read_text())
        except OSError:
            pass
        return out


# --------------------------------------------------------------------------------------------
# The mirror set: one upstream, two pull-through mirrors in front of it

class MirrorUpstream(OurServer):
    """The upstream both mirrors pull from: our registry on plain filesystem (SQLite + files), auth
    mode none (anonymous push from loopback), and the default log level (info), so that its access
    log has one `<id> METHOD PATH STATUS <ms>ms` line per request; bench/mirror.py counts them."""

    key = "upstream"
    title = "upstream (python -m registry, SQLite + filesystem, log level info)"  # type: ignore[assignment]

    def build_command(self) -> list[str]:
        return [sys.executable, "-m", "registry", "serve", "--listen", self.host, "--data-dir", str(self.data_dir)]


class MirrorOurs(OurServer):
    """Ours as a pull-through mirror: SQLite + filesystem in its own data dir, with the upstream
    configured (REGISTRY_MIRROR_UPSTREAMS) as its Docker Hub mirror, alias `hub`, so a root path
    `/v2/library/NAME/...` pulls through it, as Docker's `registry-mirrors` would ask."""

    title = "ours (python -m registry, mirror, SQLite + filesystem)"  # type: ignore[assignment]
    TAG_TTL = 300

    def __init__(self, root: Path, upstream_url: str) -> None:
        super().__init__(root, "mirror")
        self.upstream_url = upstream_url

    def upstreams_json(self) -> str:
        return json.dumps([{"alias": "hub", "url": self.upstream_url, "docker_hub": True,
                            "tag_ttl": self.TAG_TTL}])

    def env(self) -> dict[str, str]:
        return clean_env(REGISTRY_MIRROR_UPSTREAMS=self.upstreams_json())

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "env": {"REGISTRY_MIRROR_UPSTREAMS": self.upstreams_json()}}


class MirrorReference(ReferenceServer):
    """The reference as a pull-through cache (`proxy.remoteurl`), filesystem driver in its own data dir."""

    title = "reference (docker-registry 2.8.2, proxy mode, filesystem driver)"  # type: ignore[assignment]

    def __init__(self, root: Path, upstream_url: str) -> None:
        super().__init__(root, "mirror")
        self.upstream_url = upstream_url

    def extra_yaml(self) -> str:
        return ("proxy:\n"
                f"  remoteurl: {self.upstream_url}\n")


def redact_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


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
# What the S3 set runs on

class Helper:
    """A process group the registries depend on (Swift, PostgreSQL): its CPU is recorded per step,
    its peak RSS at the end, but it is not what is being compared."""

    def __init__(self, key: str, title: str, pids: Callable[[], list[int]]) -> None:
        self.key = key
        self.title = title
        self._pids = pids
        self.final_stats: dict[str, Any] = {}

    def _tree(self) -> list[int]:
        out: list[int] = []
        for pid in self._pids():
            out.extend(process_tree(pid))
        return out

    def cpu(self) -> float | None:
        # Reaped children count too: PostgreSQL backends of closed connections exit during the run.
        vals = [cpu_seconds(pid, reaped_children=True) for pid in self._tree()]
        vals = [v for v in vals if v is not None]
        return sum(vals) if vals else None

    def collect_stats(self) -> dict[str, Any]:
        pids = self._tree()
        self.final_stats = {
            "processes": len(pids),
            "peak_rss_kib_sum": sum(v for v in (vm_hwm_kib(p) for p in pids) if v),
            "cpu_seconds": self.cpu(),
        }
        return self.final_stats


class S3Backing:
    """One Swift (S3 API) and one PostgreSQL on loopback for the S3 set.

    Ours: bucket `bench-ours`, key prefix `ours`, PostgreSQL database `registry_bench`.
    Reference: bucket `bench-reference`, rootdirectory `/ref`. Both use the same Swift proxy.
    """

    def __init__(self, root: Path, work_dir: Path) -> None:
        self.root = root
        self.work_dir = work_dir
        self.swift: Any = None
        self.pg: Any = None
        self.database_url = ""
        self._own_swift_dir: Path | None = None
        self.versions: dict[str, str] = {}

    def start(self) -> S3Backing:
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        from tests.support.postgres import PostgresServer
        from tests.support.swift import SwiftS3, supports_user_xattrs, xattr_tempdir

        swift_dir = self.root / "swift"
        swift_dir.mkdir(parents=True, exist_ok=True)
        if not supports_user_xattrs(swift_dir):  # Swift keeps object metadata in user xattrs
            swift_dir = self._own_swift_dir = xattr_tempdir("registry-bench-swift-")
        # WARNING: Swift would otherwise log every request (the same cost for both registries,
        # but noise on 2 cores).
        self.swift = SwiftS3(swift_dir, log_level="WARNING")
        self.swift.start()
        for bucket in (OURS_BUCKET, REFERENCE_BUCKET):
            self.swift.create_bucket(bucket)
        self.pg = PostgresServer(self.root / "postgres", work_dir=self.work_dir)
        self.pg.start()
        self.database_url = self.pg.create_database("registry_bench")
        self.versions = self._versions()
        return self

    def stop(self) -> None:
        if self.swift is not None:
            self.swift.stop()
        if self.pg is not None:
            self.pg.stop()
        if self._own_swift_dir is not None:
            shutil.rmtree(self._own_swift_dir, ignore_errors=True)

    def _versions(self) -> dict[str, str]:
        out = {}
        try:
            out["postgresql"] = self.pg.psql("SHOW server_version")
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            out["postgresql"] = f"? ({exc})"
        try:
            proc = subprocess.run([str(self.swift.venv / "bin" / "python"), "-c",
                                   "import swift; print(swift.__version__)"],
                                  capture_output=True, text=True, timeout=30)
            out["swift"] = proc.stdout.strip() or "?"
        except (OSError, subprocess.SubprocessError) as exc:
            out["swift"] = f"? ({exc})"
        return out

    def helpers(self) -> list[Helper]:
        return [
            Helper("swift", "OpenStack Swift (S3 API)", lambda: list(self.swift.pids().values())),
            Helper("postgres", "PostgreSQL (ours only)",
                   lambda: [p for p in [self.pg.postmaster_pid()] if p is not None]),
        ]

    def our_env(self) -> dict[str, str]:
        from tests.support.backends import s3_env

        return {
            **s3_env(self.swift, OURS_BUCKET, OURS_PREFIX),
            "REGISTRY_DATABASE_URL": self.database_url,
            "REGISTRY_STORAGE_S3_PART_SIZE": str(S3_PART_BYTES),
            "REGISTRY_STORAGE_S3_REDIRECT": "false",  # the default; stream blob GETs like the reference
        }

    def reference_storage_yaml(self) -> str:
        # Distribution 2.8.2 has no `forcepathstyle` (that came in 3.0): it uses path-style
        # addressing whenever `regionendpoint` is set, which is what loopback needs.
        return (
            "  s3:\n"
            f"    accesskey: \"{self.swift.access_key}\"\n"
            f"    secretkey: \"{self.swift.secret_key}\"\n"
            f"    region: {self.swift.region}\n"
            f"    regionendpoint: {self.swift.endpoint_url}\n"
            f"    bucket: {REFERENCE_BUCKET}\n"
            "    secure: false\n"
            "    v4auth: true\n"
            f"    chunksize: {S3_PART_BYTES}\n"
            f"    rootdirectory: {REFERENCE_ROOTDIR}\n"
            "  redirect:\n"
            "    disable: true\n"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "s3_endpoint": self.swift.endpoint_url if self.swift else None,
            "s3_server": "OpenStack Swift + s3api (tests/support/swift.py), proxy workers=0, log level WARNING",
            "versions": self.versions,
            "ours": {"bucket": OURS_BUCKET, "prefix": OURS_PREFIX, "database": "PostgreSQL registry_bench",
                     "part_size": S3_PART_BYTES},
            "reference": {"bucket": REFERENCE_BUCKET, "rootdirectory": REFERENCE_ROOTDIR,
                          "chunksize": S3_PART_BYTES},
        }

    @property
    def swift_data_dir(self) -> Path:
        """Swift's object store (the bulk of the set's disk use); its logs are elsewhere."""
        return self.swift.data_dir if self.swift is not None else self.root / "swift" / "data"

    def log_paths(self) -> list[Path]:
        out = []
        if self.swift is not None:
            out += [self.swift.log_path(n) for n in ("proxy", "object", "container", "account")]
        if self.pg is not None:
            out.append(self.pg.log_path)
        return out

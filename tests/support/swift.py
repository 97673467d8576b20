"""OpenStack Swift with its s3api middleware on loopback: a real S3 server for tests and benchmarks.

Swift runs from its own virtualenv (default `.venv-swift` at the repository root, created by
`scripts/swift-venv`; `SWIFT_VENV` overrides the path) because it pins eventlet, greenlet,
PasteDeploy and friends. This module needs only the standard library, so it imports fine from
the project's `.venv`, from tests and from `bench/` scripts (pytest fixtures: pytest_swift.py).

    from tests.support.swift import SwiftS3, xattr_tempdir

    with SwiftS3(xattr_tempdir()) as s3:        # ~0.7 s to a working S3 API
        s3.create_bucket("blobs")
        client = s3.client()                     # boto3, if installed
        ...

Four processes (account, container, object servers and the proxy), `workers = 0` by default
(no forking; ~170 MiB RSS in all), each in its own session on free 127.0.0.1 ports; they die
with the process that started them, even on kill -9. Everything lives under `base_dir`: `etc/`
(swift.conf, *-server.conf, rings), `log/NAME.log`, `data/` (the object store, which needs user
xattrs: ext4 yes, tmpfs only on recent kernels; `supports_user_xattrs()` checks). Pipeline:

    catch_errors gatekeeper healthcheck proxy-logging listing_formats
    s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

Limits, as S3's where Swift allows: parts of at least 5 MiB except the last (s3api
`min_segment_size`, checked at CompleteMultipartUpload: EntityTooSmall), part numbers 1..10000
(s3api's own default is 1000; SLO's `max_manifest_segments` is raised to match), 5 GiB + 2 bytes
for a single PUT (Swift's `max_file_size`; AWS: 5 GiB). Credentials: tempauth's `test:tester` /
`testing` (account AUTH_test); region `us-east-1` (another region: 400 AuthorizationHeaderMalformed).

Where Swift differs from AWS (see tests/storage/test_swift_fixture.py): a repeated CreateBucket
is 409 BucketAlreadyOwnedByYou; an unknown access key is 403 SignatureDoesNotMatch; UploadPartCopy
clips a range end past the source and accepts suffix ranges; a completed upload still answers
ListParts and UploadPart; conditional PUTs other than `If-None-Match: *` are 501 NotImplemented.

Run it by hand (Ctrl-C stops it):  .venv/bin/python -m tests.support.swift [--base-dir DIR]
"""

from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import hmac
import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO_ROOT / ".venv-swift"
SETUP_SCRIPT = REPO_ROOT / "scripts" / "swift-venv"

BACKENDS = ("account", "container", "object")
SERVERS = BACKENDS + ("proxy",)
MiB = 1024 * 1024
HOST = "127.0.0.1"

#: Swift's default `max_file_size` (swift.common.constraints): the largest single PUT.
MAX_OBJECT_SIZE = 5 * 1024 * MiB + 2
#: S3's limits, which this server is configured to enforce.
MIN_PART_SIZE = 5 * MiB
MAX_PART_COUNT = 10000

PART_POWER = 6  # 64 partitions, all on the one device; builds in milliseconds

# A tiny module the servers import (through log_custom_handlers) so that they log only to
# stderr, which goes to log/NAME.log: Swift otherwise always adds a syslog handler, and without
# /dev/log it sends every line to UDP localhost:514.
_LOGGING_HOOK = '''\
import logging.handlers


def drop_syslog(conf, name, log_to_console, log_route, fmt, logger, adapted_logger):
    for handler in list(logger.handlers):
        if isinstance(handler, logging.handlers.SysLogHandler):
            logger.removeHandler(handler)
            handler.close()
'''

# etc/swift_s3_server.py; every server runs as
#     python etc/swift_s3_server.py LIFELINE_FD SERVER CONF [IP PART_POWER PORTS]
# which does:
# 1. a thread blocks on the read end of a pipe whose write end only the launching process holds:
#    when that process is gone, however it died (kill -9 of pytest), the read returns EOF and the
#    server takes its whole process group down, so no Swift outlives its launcher;
# 2. the proxy builds the three one-device rings when they are missing (what `swift-ring-builder
#    NAME.builder create 6 1 1; add r1z1-IP:PORT/d0 100; rebalance` does, but in a process that
#    imports Swift anyway instead of nine new ones: ~0.5 s less; backends never read rings);
# 3. then the usual swift-NAME-server main().
_SERVER_MAIN = '''\
import importlib, os, sys, _thread


def lifeline(fd):
    while os.read(fd, 64):
        pass
    os.killpg(0, 9)


_thread.start_new_thread(lifeline, (int(sys.argv[1]),))
server, conf = sys.argv[2:4]
if server == "proxy-server":
    etc, ip, part_power, ports = os.path.dirname(conf), *sys.argv[4:7]
    names = ("account", "container", "object")
    if not all(os.path.exists("%s/%s.ring.gz" % (etc, n)) for n in names):
        from swift.common.ring import RingBuilder
        for name, port in zip(names, map(int, ports.split(","))):
            builder = RingBuilder(int(part_power), 1, 1)
            builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": ip, "port": port,
                             "replication_ip": ip, "replication_port": port,
                             "device": "d0", "weight": 100.0, "meta": ""})
            builder.rebalance()
            builder.save("%s/%s.builder" % (etc, name))
            builder.get_ring().save("%s/%s.ring.gz.tmp" % (etc, name))
            os.rename("%s/%s.ring.gz.tmp" % (etc, name), "%s/%s.ring.gz" % (etc, name))
module = {"account-server": "swift.account.server", "container-server": "swift.container.server",
          "object-server": "swift.obj.server", "proxy-server": "swift.proxy.server"}[server]
sys.argv = ["swift-" + server, conf, "--verbose"]
sys.exit(importlib.import_module(module).main())
'''

_lifeline: tuple[int, int, int] | None = None  # (read fd, write fd, pid that made them)


def _lifeline_fd() -> int:
    """The read end of this process's lifeline pipe (the write end is never inherited)."""
    global _lifeline
    if _lifeline is None or _lifeline[2] != os.getpid():
        read_fd, write_fd = os.pipe()
        _lifeline = (read_fd, write_fd, os.getpid())
    return _lifeline[0]


def _group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still running (zombies waiting for a reaper do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


class SwiftUnavailable(RuntimeError):
    """Swift cannot run here; the message says what is missing and how to get it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def swift_venv() -> Path:
    return Path(os.environ.get("SWIFT_VENV") or DEFAULT_VENV)


def supports_user_xattrs(path: Path) -> bool:
    """Whether files under `path` take `user.*` extended attributes (Swift stores metadata there)."""
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".xattr-probe-") as probe:
            os.setxattr(probe.name, "user.swift.probe", b"1")
            return os.getxattr(probe.name, "user.swift.probe") == b"1"
    except OSError:
        return False


def xattr_tempdir(prefix: str = "swift-s3-") -> Path:
    """A new temp dir on a file system with user xattrs: the usual temp dir, else /var/tmp.

    The caller removes it (shutil.rmtree) when done.
    """
    tried = []
    for parent in dict.fromkeys([tempfile.gettempdir(), "/var/tmp"]):
        try:
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        except OSError:
            continue
        if supports_user_xattrs(path):
            return path
        shutil.rmtree(path, ignore_errors=True)
        tried.append(parent)
    raise SwiftUnavailable(
        f"no temp dir with user xattr support (tried {', '.join(tried)}); Swift keeps object "
        "metadata in user.* xattrs: point TMPDIR at a dir on ext4/xfs/btrfs")


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class SwiftS3:
    """Swift + s3api on loopback; `endpoint_url` answers S3 once `start()` returns."""

    access_key = "test:tester"
    secret_key = "testing"
    region = "us-east-1"
    account = "AUTH_test"

    def __init__(self, base_dir: Path, *, data_dir: Path | None = None, venv: Path | None = None,
                 min_part_size: int = MIN_PART_SIZE, max_part_count: int = MAX_PART_COUNT,
                 workers: int = 0, log_level: str = "INFO") -> None:
        self.base_dir = Path(base_dir).resolve()
        self.etc_dir = self.base_dir / "etc"
        self.log_dir = self.base_dir / "log"
        self.data_dir = Path(data_dir).resolve() if data_dir else self.base_dir / "data"
        self.venv = Path(venv) if venv else swift_venv()
        self.min_part_size = min_part_size
        self.max_part_count = max_part_count
        self.workers = workers
        self.log_level = log_level
        self.ports = {name: free_port() for name in SERVERS}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._configured = False
        self._atexit_registered = False

    # -- addresses and credentials -------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.ports["proxy"]

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables pointing at this server (for subprocesses, boto3, aws CLI)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `boto3.client("s3", **kwargs)` (path-style addressing)."""
        from botocore.config import Config

        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                             retries={"max_attempts": 1, "mode": "standard"},
                             connect_timeout=5, read_timeout=60),
        }

    def client(self, **overrides: Any) -> Any:
        """A boto3 S3 client for this server; `overrides` replace entries of client_kwargs()."""
        import boto3

        return boto3.client("s3", **{**self.client_kwargs(), **overrides})

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> SwiftS3:
        """Start every server not running yet; return once the S3 API answers a signed request."""
        self._check_environment()
        if not self._configured:
            self._write_config()
            self._configured = True
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        for name in SERVERS:
            self._spawn(name)
        try:
            self._wait_ready(SERVERS, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, kill: bool = False) -> None:
        """Stop every server (SIGTERM, or SIGKILL with kill=True, as in a crash); no stray process."""
        for name in reversed(SERVERS):
            self._terminate(name, kill)

    def restart(self, timeout: float = 30) -> SwiftS3:
        """Stop and start everything on the same ports and data: what was stored is still there."""
        self.stop()
        return self.start(timeout)

    def stop_proxy(self, kill: bool = False) -> None:
        """The S3 endpoint goes away (connection refused); the storage servers keep running."""
        self._terminate("proxy", kill)

    def start_proxy(self, timeout: float = 30) -> None:
        """Bring the S3 endpoint back on the same port; returns once it answers."""
        self._spawn("proxy")
        self._wait_ready(("proxy",), timeout)

    def pause_proxy(self) -> None:
        """SIGSTOP the proxy: connections are accepted by the kernel but never answered (hangs)."""
        self._signal("proxy", signal.SIGSTOP)

    def resume_proxy(self) -> None:
        self._signal("proxy", signal.SIGCONT)

    def running(self, name: str = "proxy") -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items() if proc.poll() is None}

    def __enter__(self) -> SwiftS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- S3 helpers that need nothing but the standard library ---------------------------------

    def create_bucket(self, name: str, exist_ok: bool = True) -> None:
        status, body = self.request("PUT", f"/{name}")
        if status == 200 or (exist_ok and status == 409 and b"BucketAlreadyOwnedByYou" in body):
            return
        raise RuntimeError(f"create bucket {name!r}: HTTP {status}: {body[:500]!r}")

    def request(self, method: str, path: str = "/", body: bytes = b"", query: str = "",
                headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
        """One SigV4-signed S3 request; returns (status, body).

        `path` is plain (it is percent-encoded here), `query` already encoded and sorted. A given
        x-amz-content-sha256 header (e.g. UNSIGNED-PAYLOAD) is signed as is.
        """
        amz_date = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        signed = {k.lower(): v.strip() for k, v in (headers or {}).items()}
        payload_hash = signed.setdefault("x-amz-content-sha256", hashlib.sha256(body).hexdigest())
        signed.update({"host": f"{HOST}:{self.port}", "x-amz-date": amz_date})
        names = sorted(signed)
        canonical_path = quote(path, safe="/~")
        canonical = "\n".join([method, canonical_path, query,
                               "".join(f"{k}:{signed[k]}\n" for k in names),
                               ";".join(names), payload_hash])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = _sign(_sign(_sign(_sign(f"AWS4{self.secret_key}".encode(), day), self.region), "s3"),
                    "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        signed["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                   f"SignedHeaders={';'.join(names)}, Signature={signature}")
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, canonical_path + (f"?{query}" if query else ""), body=body,
                         headers=signed)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    # -- diagnostics ---------------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str = "proxy", lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def logs(self, lines: int = 20) -> str:
        return "\n".join(f"--- {self.log_path(n)} ---\n{self.log_tail(n, lines)}" for n in SERVERS)

    # -- internals -----------------------------------------------------------------------------

    def _bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def _check_environment(self) -> None:
        python = self._bin("python")
        missing = [p for p in (python, self._bin("swift-proxy-server")) if not p.exists()]
        if missing:
            raise SwiftUnavailable(
                f"OpenStack Swift is not installed: {', '.join(map(str, missing))} missing. "
                f"Create its own virtualenv with `{SETUP_SCRIPT}` (python3 -m venv {self.venv} && "
                f"{self.venv}/bin/pip install swift; needs PyPI only), "
                "or set SWIFT_VENV to an existing one. Do not install swift into .venv.")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not supports_user_xattrs(self.data_dir):
            raise SwiftUnavailable(
                f"{self.data_dir} does not support user xattrs (tmpfs on older kernels, some "
                "overlay setups); Swift stores object metadata there. Use a base_dir on ext4/xfs, "
                "e.g. tests.support.swift.xattr_tempdir() or a dir under /var/tmp.")

    def _write_config(self) -> None:
        for path in (self.etc_dir, self.log_dir, self.data_dir / "d0"):
            path.mkdir(parents=True, exist_ok=True)
        user = pwd.getpwuid(os.getuid()).pw_name
        for ring in self.etc_dir.glob("*.ring.gz"):
            ring.unlink()  # rings name the ports; the proxy rebuilds them for this instance's
        (self.etc_dir / "swift_s3_logging.py").write_text(_LOGGING_HOOK)
        (self.etc_dir / "swift_s3_server.py").write_text(_SERVER_MAIN)
        (self.etc_dir / "swift.conf").write_text(
            "[swift-hash]\n"
            "swift_hash_path_suffix = registry-tests\n"
            "swift_hash_path_prefix = registry-tests\n\n"
            "[storage-policy:0]\n"
            "name = Policy-0\n"
            "default = yes\n")
        common = (
            "[DEFAULT]\n"
            f"bind_ip = {HOST}\n"
            "bind_port = {port}\n"
            f"workers = {self.workers}\n"
            f"user = {user}\n"
            f"swift_dir = {self.etc_dir}\n"
            f"devices = {self.data_dir}\n"
            "mount_check = false\n"
            "disable_fallocate = true\n"
            "log_name = {name}\n"
            f"log_level = {self.log_level}\n"
            "log_custom_handlers = swift_s3_logging.drop_syslog\n"
            "eventlet_debug = false\n\n")
        for name in BACKENDS:
            (self.etc_dir / f"{name}-server.conf").write_text(
                common.format(port=self.ports[name], name=f"{name}-server")
                + f"[pipeline:main]\npipeline = healthcheck {name}-server\n\n"
                f"[app:{name}-server]\nuse = egg:swift#{name}\n\n"
                "[filter:healthcheck]\nuse = egg:swift#healthcheck\n")
        filters = ("catch_errors", "gatekeeper", "healthcheck", "proxy-logging", "listing_formats",
                   "copy", "dlo", "versioned_writes")
        (self.etc_dir / "proxy-server.conf").write_text(
            common.format(port=self.ports["proxy"], name="proxy-server")
            + "[pipeline:main]\n"
            "pipeline = catch_errors gatekeeper healthcheck proxy-logging listing_formats "
            "s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server\n\n"
            "[app:proxy-server]\n"
            "use = egg:swift#proxy\n"
            "account_autocreate = true\n"
            # One node per ring: never error-limit it for long (restarts would 503 for 60 s).
            "error_suppression_interval = 1\n"
            "error_suppression_limit = 1000\n\n"
            "[filter:s3api]\n"
            "use = egg:swift#s3api\n"
            f"location = {self.region}\n"
            "s3_acl = false\n"
            "dns_compliant_bucket_names = true\n"
            "allow_multipart_uploads = true\n"
            f"max_upload_part_num = {self.max_part_count}\n"
            f"min_segment_size = {self.min_part_size}\n"
            f"max_parts_listing = 1000\n\n"
            "[filter:tempauth]\n"
            "use = egg:swift#tempauth\n"
            f"user_test_tester = {self.secret_key} .admin\n\n"
            "[filter:slo]\n"
            "use = egg:swift#slo\n"
            f"max_manifest_segments = {max(1000, self.max_part_count)}\n"
            f"max_manifest_size = {max(8 * MiB, self.max_part_count * 2048)}\n\n"
            + "".join(f"[filter:{f}]\nuse = egg:swift#{f.replace('-', '_')}\n\n" for f in filters))

    def _spawn(self, name: str) -> None:
        if self.running(name):
            return
        server = "proxy-server" if name == "proxy" else f"{name}-server"
        lifeline = _lifeline_fd()
        args = [str(self._bin("python")), str(self.etc_dir / "swift_s3_server.py"), str(lifeline),
                server, str(self.etc_dir / f"{server}.conf")]
        if name == "proxy":
            args += [HOST, str(PART_POWER), ",".join(str(self.ports[n]) for n in BACKENDS)]
        env = {**os.environ, "PYTHONPATH": str(self.etc_dir),
               # Swift talks to IP addresses only; eventlet's green DNS costs ~0.1 s per start.
               "EVENTLET_NO_GREENDNS": "yes"}
        for var in ("PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(var, None)
        with open(self.log_path(name), "ab") as log:
            self.procs[name] = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.base_dir, env=env, start_new_session=True, pass_fds=(lifeline,))

    def _signal(self, name: str, sig: int) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)

    def _terminate(self, name: str, kill: bool = False, timeout: float = 10) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: each server leads its own process group
        for sig in (signal.SIGKILL if kill else signal.SIGTERM, signal.SIGCONT):  # CONT: if paused
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait()
        # Forked workers (workers > 0) share the group: none may outlive the leader.
        deadline = time.monotonic() + timeout
        while _group_alive(pgid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"swift {name}: process group {pgid} does not exit")
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.01)

    def _wait_ready(self, names: tuple[str, ...], timeout: float) -> None:
        """Backends answer /healthcheck, then the proxy answers a signed ListBuckets with 200."""
        deadline = time.monotonic() + timeout
        pending = list(names)
        last_error = ""
        while pending:
            for name in pending:
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"swift {name} server exited with {proc.returncode}; "
                                       f"{self.log_path(name)}:\n{self.log_tail(name)}")
            name = pending[0]
            try:
                if self._answers(name):
                    pending.pop(0)
                    continue
                last_error = f"{name} not ready"
            except OSError as exc:
                last_error = f"{name}: {exc}"
            except RuntimeError as exc:
                last_error = str(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"swift did not answer within {timeout}s ({last_error}); logs:\n"
                                   f"{self.logs()}")
            time.sleep(0.02)

    def _answers(self, name: str) -> bool:
        if name == "proxy":
            status, body = self.request("GET", "/", timeout=5)
            if status != 200:
                raise RuntimeError(f"ListBuckets: HTTP {status} {body[:300]!r}")
            return True
        conn = http.client.HTTPConnection(HOST, self.ports[name], timeout=5)
        try:
            conn.request("GET", "/healthcheck")
            resp = conn.getresponse()
            return resp.status == 200 and resp.read() == b"OK"
        finally:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run Swift + s3api on loopback until Ctrl-C.")
    parser.add_argument("--base-dir", type=Path, help="config, logs and data (default: a temp dir)")
    parser.add_argument("--bucket", action="append", default=[], help="bucket to create")
    args = parser.parse_args(argv)
    base = args.base_dir or xattr_tempdir()
    started = time.monotonic()
    try:
        with SwiftS3(base) as s3:
            for bucket in args.bucket:
                s3.create_bucket(bucket)
            print(f"S3 on {s3.endpoint_url} (up in {time.monotonic() - started:.2f}s), base dir {base}")
            for key, value in s3.env().items():
                print(f"export {key}={value!r}")
            sys.stdout.flush()
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
    finally:
        if args.base_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

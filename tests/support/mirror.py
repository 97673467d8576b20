"""Helpers for the pull-through mirror's tests: upstream registries, access-log counting, small
images pushed over HTTP, the example client configs in deploy/mirror/, and dockerd's mirror setting.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator, Sequence

import bcrypt
import httpx

from tests.support import host
from tests.support.images import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, file_layer, json_bytes, run, sha256
from tests.support.process import terminate, wait_until_answers
from tests.support.server import RegistryProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "mirror"
PLACEHOLDER = "MIRROR:5000"  # what the example configs in deploy/mirror/ call the mirror
ACCEPT_ALL = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
])


def htpasswd_line(user: str, password: str) -> str:
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"


def deploy_file(name: str, mirror_host: str) -> str:
    """An example from deploy/mirror/ with the mirror's address put in."""
    text = (DEPLOY / name).read_text()
    assert PLACEHOLDER in text, f"deploy/mirror/{name} no longer names the mirror {PLACEHOLDER}"
    return text.replace(PLACEHOLDER, mirror_host)


# -- access logs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Access:
    method: str
    path_qs: str
    status: int

    @property
    def path(self) -> str:
        return self.path_qs.partition("?")[0]

    @property
    def query(self) -> str:
        return self.path_qs.partition("?")[2]

    def __str__(self) -> str:
        return f"{self.method} {self.path_qs} {self.status}"


# registry/admin/access.py's text line: REMOTE USER "METHOD PATH" STATUS in=N out=N DURATIONms "UA" REQUEST_ID
ACCESS_LINE = re.compile(r'registry\.access \S+ \S+ "([A-Z]+) (\S+)" (\d{3}) ')
_OURS = ACCESS_LINE
_DISTRIBUTION = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) ')


class AccessLog:
    """One access line per request, read from a server's log file; `mark()` then `since(mark)`."""

    def __init__(self, path: Path, pattern: re.Pattern[str] = _OURS) -> None:
        self.path = Path(path)
        self.pattern = pattern

    def mark(self, settle: float = 0.3) -> int:
        time.sleep(settle)  # a streamed response is logged when it ends
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def since(self, offset: int = 0, settle: float = 0.3) -> list[Access]:
        time.sleep(settle)
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        return [Access(m.group(1), m.group(2), int(m.group(3)))
                for m in (self.pattern.search(line) for line in text.splitlines()) if m]

    @staticmethod
    def matching(lines: Sequence[Access], method: str | None = None, path: str | None = None,
                 status: int | None = None, prefix: str | None = None) -> list[Access]:
        return [a for a in lines if (method is None or a.method == method) and (path is None or a.path == path)
                and (prefix is None or a.path.startswith(prefix)) and (status is None or a.status == status)]

    @staticmethod
    def show(lines: Sequence[Access]) -> str:
        return "\n".join(f"  {a}" for a in lines) or "  (none)"


# -- images over HTTP -------------------------------------------------------------------------

@dataclass
class Image:
    """A small OCI image: its manifest and every blob it names."""
    manifest: bytes
    blobs: dict[str, bytes]
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def layers(self) -> list[str]:
        return [layer["digest"] for layer in json.loads(self.manifest)["layers"]]


def small_image(label: str) -> Image:
    """One layer holding /etc/label, and a config naming it; unique for a unique `label`. For this host's
    architecture, so containerd here pulls and unpacks it."""
    layer, diff_id = file_layer("/etc/label", f"{label}\n".encode())
    config = json_bytes({"architecture": host.oci_arch(), "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
    manifest = json_bytes({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(layer), "size": len(layer)}],
        "annotations": {"e2e.label": label},
    })
    return Image(manifest, {sha256(config): config, sha256(layer): layer})


def bulky_image(label: str, manifest_bytes: int = 320_000, config_bytes: int = 220_000,
                noise_bytes: int = 256 * 1024) -> Image:
    """An image whose manifest (big annotations) and config (many labels) are each far larger than
    one network read, plus an incompressible layer: what a peer sending in pieces breaks first.
    Unique for a unique `label`."""
    rng = random.Random(label)

    def filler(prefix: str, total: int) -> dict[str, str]:
        return {f"{prefix}.{i:04d}": f"{label} {i} {rng.randbytes(480).hex()}" for i in range(total // 1000 + 1)}

    label_layer, label_diff = file_layer("/etc/label", f"{label}\n".encode())
    noise_layer, noise_diff = file_layer("/var/noise", rng.randbytes(noise_bytes))
    config = json_bytes({"architecture": host.oci_arch(), "os": "linux",
                         "config": {"Cmd": ["/bin/sh"], "Labels": filler("e2e.config", config_bytes)},
                         "rootfs": {"type": "layers", "diff_ids": [label_diff, noise_diff]}})
    manifest = json_bytes({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(layer), "size": len(layer)}
                   for layer in (label_layer, noise_layer)],
        "annotations": {"e2e.label": label, **filler("e2e.manifest", manifest_bytes)},
    })
    assert len(manifest) > manifest_bytes and len(config) > config_bytes
    return Image(manifest, {sha256(config): config, sha256(label_layer): label_layer,
                            sha256(noise_layer): noise_layer})


def push_blob(base_url: str, repo: str, data: bytes, auth: tuple[str, str] | None = None,
              verify: ssl.SSLContext | bool = True) -> str:
    """Monolithic upload (POST then PUT); returns the digest. `verify`: httpx's, for a TLS server."""
    digest = sha256(data)
    with httpx.Client(base_url=base_url, auth=auth, timeout=120, verify=verify) as http:
        started = http.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, f"POST upload to {base_url}/{repo}: {started.status_code} {started.text}"
        # Distribution's Location carries its upload state in the query: add the digest to it, not instead.
        location = httpx.URL(started.headers["Location"]).copy_merge_params({"digest": digest})
        done = http.put(location, content=data,
                        headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, f"PUT blob {digest} to {base_url}/{repo}: {done.status_code} {done.text}"
    return digest


def push_manifest(base_url: str, repo: str, reference: str, image: Image,
                  auth: tuple[str, str] | None = None, verify: ssl.SSLContext | bool = True) -> str:
    response = httpx.put(f"{base_url}/v2/{repo}/manifests/{reference}", content=image.manifest, auth=auth,
                         headers={"Content-Type": image.media_type}, timeout=60, verify=verify)
    assert response.status_code == 201, f"PUT {repo}:{reference} -> {response.status_code} {response.text}"
    assert response.headers["Docker-Content-Digest"] == image.digest
    return image.digest


def push_image(base_url: str, repo: str, tag: str, image: Image, auth: tuple[str, str] | None = None,
               verify: ssl.SSLContext | bool = True) -> str:
    for data in image.blobs.values():
        push_blob(base_url, repo, data, auth, verify)
    return push_manifest(base_url, repo, tag, image, auth, verify)


def upstream_digest(base_url: str, repo: str, reference: str, auth: tuple[str, str] | None = None) -> str:
    """The Docker-Content-Digest the upstream itself answers for a manifest."""
    response = httpx.head(f"{base_url}/v2/{repo}/manifests/{reference}", auth=auth, timeout=30,
                          headers={"Accept": ACCEPT_ALL})
    assert response.status_code == 200, f"HEAD {base_url}/v2/{repo}/manifests/{reference} -> {response.status_code}"
    return response.headers["Docker-Content-Digest"]


def stream_sha256(url: str, timeout: float = 300) -> tuple[int, str, int, dict[str, str]]:
    """GET a URL streaming: (status, sha256:<hex> of the body, bytes received, headers)."""
    hasher = hashlib.sha256()
    received = 0
    with httpx.stream("GET", url, timeout=timeout) as response:
        for chunk in response.iter_bytes(1024 * 1024):
            hasher.update(chunk)
            received += len(chunk)
        return response.status_code, "sha256:" + hasher.hexdigest(), received, dict(response.headers)


# -- CNCF Distribution (Debian's docker-registry) as an upstream ------------------------------

class DistributionProcess:
    """/usr/bin/docker-registry on loopback with htpasswd auth and its own config and storage."""

    BINARY = "/usr/bin/docker-registry"

    def __init__(self, root: Path, users: dict[str, str]) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.users = users
        self.log_path = self.root / "docker-registry.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.access = AccessLog(self.log_path, _DISTRIBUTION)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, timeout: float = 30) -> DistributionProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        htpasswd = self.root / "htpasswd"
        htpasswd.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in self.users.items()))
        config = self.root / "config.yml"
        config.write_text(f"""\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {self.root / 'storage'}
  delete:
    enabled: true
http:
  addr: {self.host}
  secret: e2e-mirror-upstream
auth:
  htpasswd:
    realm: e2e-distribution
    path: {htpasswd}
""")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        wait_until_answers(self.proc, f"{self.url}/v2/", lambda status: status == 401, timeout, "docker-registry",
                           self.log_tail, self.stop)
        return self

    def stop(self) -> None:
        terminate(self.proc)

    def log_tail(self, lines: int = 40) -> str:
        """Access lines and errors only: its info lines are long and many."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        kept = [line for line in text.splitlines() if _DISTRIBUTION.search(line) or "level=error" in line
                or "level=fatal" in line or "level=panic" in line]
        return "\n".join(line[:400] for line in kept[-lines:])


# -- dockerd's registry-mirrors ---------------------------------------------------------------

def _dockerd_pid() -> int:
    pid = host.dockerd_pid()
    if pid is None:
        raise AssertionError("cannot tell which dockerd to signal (no live pid in "
                             f"{' or '.join(map(str, host.DOCKER_PID_FILES))}, and `pidof dockerd` found not one)")
    return pid


def docker_mirrors() -> list[str]:
    out = run(["docker", "info", "--format", "{{json .RegistryConfig.Mirrors}}"]).stdout.strip()
    return [m.rstrip("/") for m in (json.loads(out) or [])]


def _reload_and_wait(pid: int, expected: list[str], timeout: float = 20) -> None:
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while True:
        seen = docker_mirrors()
        if seen == [m.rstrip("/") for m in expected]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"dockerd (pid {pid}) did not reload registry-mirrors on SIGHUP: "
                                 f"wanted {expected}, `docker info` shows {seen}")
        time.sleep(0.1)


@contextmanager
def dockerd_settings(settings: dict) -> Iterator[Path]:
    """Merge `settings` into dockerd's daemon.json and SIGHUP it; afterwards set every key back
    (an absent list key as [], since removing a key does not clear it), SIGHUP, then restore the
    file exactly as it was (or remove it if there was none)."""
    pid = _dockerd_pid()
    path = host.daemon_json(pid)
    original = path.read_text() if path.exists() else None
    current = json.loads(original) if original and original.strip() else {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**current, **settings}, indent=2))
        _reload_and_wait(pid, settings.get("registry-mirrors", current.get("registry-mirrors", [])))
        yield path
    finally:
        cleared = {**current, **{key: current.get(key, []) for key in settings}}
        path.write_text(json.dumps(cleared, indent=2))
        try:
            _reload_and_wait(pid, current.get("registry-mirrors", []))
        finally:
            if original is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(original)


class UpstreamRegistry(RegistryProcess):
    """This registry as an upstream: ready once /v2/ answers at all (401 too, in basic mode)."""

    def start(self, timeout: float = 30) -> UpstreamRegistry:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "registry", "serve", "--listen", self.host, "--data-dir", str(self.data_dir),
                 *self.args], env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"registry did not answer within {timeout}s; log:\n{self.log_tail()}")

    @property
    def access(self) -> AccessLog:
        return AccessLog(self.log_path)

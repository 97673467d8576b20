"""A launcher for registries with credentials and/or TLS on, and the helpers the auth tests share.

`RegistryProcess` is ready once `GET http://HOST/v2/` answers 200, which never happens with
authentication (401) or TLS (https). `AuthRegistry` speaks https with the registry's own CA
when TLS is on and takes a 401 from `/v2/` as "up" too.

Accounts are made the way an operator makes them: `python -m registry user add ...` and
`python -m registry robot add ...` on the server's data directory (same SQLite database), or a
bcrypt htpasswd file. bcrypt at the CLI's cost is ~0.25 s per check, so the modules share one
server and one set of accounts each, and htpasswd entries use a low cost where speed matters.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

import bcrypt
import httpx
import jwt

from tests.support.server import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SERVICE = "registry"  # auth.service default: the challenges' service and the tokens' audience
ISSUER = "registry"   # auth.token.issuer default
OTHER_ADDRESS = "127.0.0.2"  # a second loopback source address: "another client" to the server


# -- the server ----------------------------------------------------------------------------------

class AuthRegistry(RegistryProcess):
    """`registry serve ARGS` whose readiness works with auth and TLS on.

    `url` is https when TLS is configured (`--tls-self-signed`, whose CA the server writes to
    DATA_DIR/tls/ca.crt, or `--tls-cert-file` with `ca_file` given here).
    """

    def __init__(self, data_dir: Path, args: Sequence[str] = (), env: dict[str, str] | None = None,
                 ca_file: Path | None = None) -> None:
        super().__init__(Path(data_dir), env=env, args=list(args))
        self.tls = "--tls-self-signed" in self.args or "--tls-cert-file" in self.args
        self._ca_file = Path(ca_file) if ca_file else None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def ca_file(self) -> Path:
        return self._ca_file or self.data_dir / "tls" / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def verify(self) -> ssl.SSLContext | bool:
        return self.ssl_context() if self.tls else True

    def client(self, local_address: str | None = None, timeout: float = 30) -> httpx.Client:
        transport = httpx.HTTPTransport(verify=self.verify(), local_address=local_address)
        return httpx.Client(base_url=self.url, transport=transport, timeout=timeout)

    @property
    def token_key_file(self) -> Path:
        """The signing key the registry generates for its own token server (ES256 by default)."""
        return self.data_dir / "auth" / "token-es256.pem"

    def start(self, timeout: float = 30) -> AuthRegistry:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "registry", "serve", "--listen", self.host, "--data-dir", str(self.data_dir),
                 *self.args],
                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"registry did not answer within {timeout}s; log:\n{self.log_tail()}")

    def _answers(self) -> bool:
        if self.tls and not self.ca_file.exists():
            return False
        try:
            status = httpx.get(f"{self.url}/v2/", verify=self.verify(), timeout=1).status_code
        except (httpx.HTTPError, OSError):  # not listening yet, or the CA file half written
            return False
        return status in (200, 401)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> AuthRegistry:
        return self.start()


def describe(response: httpx.Response, server: RegistryProcess | None = None) -> str:
    """Request, response and the server's log tail: what a failure report needs."""
    request = response.request
    lines = [f"{request.method} {request.url} -> {response.status_code}",
             "response headers: " + json.dumps(dict(response.headers)),
             "response body: " + response.text[:1500]]
    if server is not None:
        lines.append(f"--- server log {server.log_path} (tail)\n{server.log_tail(25)}")
    return "\n".join(lines)


# -- accounts ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class User:
    name: str
    password: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Robot:
    name: str
    repositories: tuple[str, ...]
    actions: str = "pull"
    expires: str = "1d"

    @property
    def username(self) -> str:
        return f"robot${self.name}"


@dataclass
class Accounts:
    secrets: dict[str, str] = field(default_factory=dict)  # robot username -> secret
    outputs: list[str] = field(default_factory=list)       # everything the CLI printed


def registry_cli(data_dir: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "registry", *args, "--data-dir", str(data_dir)],
                            input=input, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"registry {' '.join(args)}: exit {result.returncode}\n{result.stderr}"
    return result


def _user_command(user: User) -> list[str]:
    command = ["user", "add", user.name, "--password-stdin"]
    for group in user.groups:
        command += ["--group", group]
    return command


def _robot_command(robot: Robot) -> list[str]:
    command = ["robot", "add", robot.name, "--actions", robot.actions, "--expires", robot.expires]
    for pattern in robot.repositories:
        command += ["--repository", pattern]
    return command


def add_accounts(data_dir: Path, users: Iterable[User] = (), robots: Iterable[Robot] = ()) -> Accounts:
    """Create users and robots with the CLI, in parallel (bcrypt and start-up dominate).

    The database must exist and be migrated (start the server first, or one account goes first).
    """
    jobs: list[tuple[list[str], str | None, Robot | None]] = \
        [(_user_command(u), u.password + "\n", None) for u in users] + [(_robot_command(r), None, r) for r in robots]
    accounts = Accounts()
    if not jobs:
        return accounts
    if not (Path(data_dir) / "registry.db").exists():  # let one run migrate alone
        first, jobs = jobs[0], jobs[1:]
        _finish(accounts, first, registry_cli(data_dir, *first[0], input=first[1]))
    running = []
    for job in jobs:
        proc = subprocess.Popen([sys.executable, "-m", "registry", *job[0], "--data-dir", str(data_dir)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running.append((job, proc))
    for job, proc in running:
        stdout, stderr = proc.communicate(job[1], timeout=60)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert result.returncode == 0, f"registry {' '.join(job[0])}: exit {result.returncode}\n{stderr}"
        _finish(accounts, job, result)
    return accounts


def _finish(accounts: Accounts, job: tuple[list[str], str | None, Robot | None],
            result: subprocess.CompletedProcess) -> None:
    accounts.outputs += [result.stdout, result.stderr]
    robot = job[2]
    if robot is not None:
        secret = result.stdout.strip().splitlines()[-1]
        assert len(secret) >= 20, f"no robot secret on stdout: {result.stdout!r}"
        accounts.secrets[robot.username] = secret


def write_htpasswd(path: Path, users: Mapping[str, str], rounds: int = 4) -> Path:
    """bcrypt entries (what `htpasswd -B` writes); a low cost keeps failed-login tests fast."""
    path.write_text("".join(f"{name}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds)).decode()}\n"
                            for name, pw in users.items()))
    return path


def secret(prefix: str) -> str:
    """A password nobody else uses, so a grep for it finds only what leaked."""
    return f"{prefix}-{uuid.uuid4().hex}"


# -- credentials and tokens ----------------------------------------------------------------------

def basic_value(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + basic_value(user, password)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def scope(repository: str, actions: str = "pull") -> str:
    return f"repository:{repository}:{actions}"


def request_token(client: httpx.Client, user: str | None = None, password: str | None = None,
                  scopes: Sequence[str] = (), offline: bool = False) -> httpx.Response:
    params: list[tuple[str, str]] = [("service", SERVICE)] + [("scope", s) for s in scopes]
    if offline:
        params.append(("offline_token", "true"))
    headers = basic(user, password) if user is not None and password is not None else {}
    return client.get("/auth/token", params=params, headers=headers)


def token_for(client: httpx.Client, user: str | None, password: str | None, *scopes: str,
              offline: bool = False) -> dict[str, Any]:
    """The token server's JSON answer (token, expires_in, refresh_token if offline)."""
    response = request_token(client, user, password, scopes, offline)
    assert response.status_code == 200, describe(response)
    body = response.json()
    assert body["token"] and body["access_token"] == body["token"], body
    return body


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def granted(token: str) -> dict[str, list[str]]:
    return {entry["name"]: sorted(entry["actions"]) for entry in claims_of(token).get("access", [])}


def load_private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def sign_token(key: Any, algorithm: str, subject: str, access: list[dict[str, Any]], *,
               expires_in: int = 300, issuer: str = ISSUER, audience: str = SERVICE) -> str:
    """A token in the registry's own claim format, signed by whatever key the test chooses.

    A negative `expires_in` gives a token that expired that many seconds ago (issued 5 minutes
    before it expired, as the registry's own would have been).
    """
    now = int(time.time())
    issued = min(now, now + expires_in - 300)
    claims = {"iss": issuer, "sub": subject, "aud": audience, "iat": issued, "nbf": issued - 1,
              "exp": now + expires_in, "jti": uuid.uuid4().hex, "access": access}
    return jwt.encode(claims, key, algorithm=algorithm)


def access(repository: str, *actions: str) -> list[dict[str, Any]]:
    return [{"type": "repository", "name": repository, "actions": list(actions)}]


# -- answers -------------------------------------------------------------------------------------

def error_codes(response: httpx.Response) -> list[str]:
    assert response.headers.get("content-type", "").startswith("application/json"), describe(response)
    body = response.json()
    assert isinstance(body.get("errors"), list) and body["errors"], body
    for entry in body["errors"]:
        assert isinstance(entry.get("code"), str) and isinstance(entry.get("message"), str), body
    return [entry["code"] for entry in body["errors"]]


def assert_error(response: httpx.Response, status: int, code: str, server: RegistryProcess | None = None) -> None:
    """The status and the spec's JSON error body (HEAD: the status only, there is no body)."""
    assert response.status_code == status, describe(response, server)
    if response.request.method != "HEAD":
        assert code in error_codes(response), describe(response, server)


def challenge(response: httpx.Response) -> tuple[str, dict[str, str]]:
    """WWW-Authenticate as (scheme, {param: value})."""
    value = response.headers.get("www-authenticate")
    assert value, f"401 without WWW-Authenticate\n{describe(response)}"
    scheme_, _, rest = value.partition(" ")
    return scheme_, dict(re.findall(r'(\w+)="([^"]*)"', rest))


def assert_bearer_challenge(response: httpx.Response, server: AuthRegistry, scope_: str | None) -> dict[str, str]:
    assert_error(response, 401, "UNAUTHORIZED", server)
    scheme_, params = challenge(response)
    assert scheme_ == "Bearer", describe(response, server)
    assert params.get("realm") == f"{server.url}/auth/token", params
    assert params.get("service") == SERVICE, params
    assert params.get("scope") == scope_, params
    return params


def assert_insufficient_scope(response: httpx.Response, server: AuthRegistry, scope_: str) -> dict[str, str]:
    """A valid token without the scope the request needs: 401 with error="insufficient_scope" and
    the full scope to ask for, as Distribution answers (docker prints "denied: ...")."""
    params = assert_bearer_challenge(response, server, scope_)
    assert params.get("error") == "insufficient_scope", describe(response, server)
    return params


# -- content -------------------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> list[str]:
        return [sha256(self.config), sha256(self.layer)]


def make_image(label: str = "") -> Image:
    """A small valid OCI image whose bytes nobody else has (the label and a random salt)."""
    salt = uuid.uuid4().hex
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"t": label or salt}},
                         "rootfs": {"type": "layers", "diff_ids": [sha256(salt.encode())]}}).encode()
    layer = os.urandom(512) + salt.encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
    }).encode()
    return Image(config, layer, manifest)


def post_blob(client: httpx.Client, repository: str, data: bytes, headers: Mapping[str, str] | None = None
              ) -> httpx.Response:
    """A monolithic upload (POST ?digest=)."""
    return client.post(f"/v2/{repository}/blobs/uploads/", params={"digest": sha256(data)}, content=data,
                       headers={"Content-Type": "application/octet-stream", **(headers or {})})


def put_manifest(client: httpx.Client, repository: str, reference: str, manifest: bytes,
                 headers: Mapping[str, str] | None = None) -> httpx.Response:
    return client.put(f"/v2/{repository}/manifests/{reference}", content=manifest,
                      headers={"Content-Type": OCI_MANIFEST, **(headers or {})})


def push_image(client: httpx.Client, repository: str, tag: str, headers: Mapping[str, str],
               image: Image | None = None) -> Image:
    image = image or make_image(f"{repository}:{tag}")
    for blob in (image.config, image.layer):
        response = post_blob(client, repository, blob, headers)
        assert response.status_code == 201, describe(response)
    response = put_manifest(client, repository, tag, image.manifest, headers)
    assert response.status_code == 201, describe(response)
    return image


# -- what the registry stored, seen from its files ---------------------------------------------

class Store:
    """The SQLite database and blob files of a registry's data directory (read only)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    def query(self, sql: str, *args: object) -> list[tuple]:
        with sqlite3.connect(self.data_dir / "registry.db", timeout=30) as conn:
            return conn.execute(sql, args).fetchall()

    def repositories(self) -> set[str]:
        return {row[0] for row in self.query("select name from repositories")}

    def repository_exists(self, name: str) -> bool:
        return bool(self.query("select 1 from repositories where name = ?", name))

    def linked(self, repository: str, digest: str) -> bool:
        return bool(self.query("select 1 from repository_blobs rb join repositories r on r.id = rb.repository_id "
                               "where r.name = ? and rb.digest = ?", repository, digest))

    def blob_known(self, digest: str) -> bool:
        return bool(self.query("select 1 from blobs where digest = ?", digest))

    def blob_file(self, digest: str) -> Path:
        algorithm, _, hex_ = digest.partition(":")
        return self.data_dir / "blobs" / algorithm / hex_[:2] / hex_

    def tags(self, repository: str) -> set[str]:
        return {row[0] for row in self.query("select t.name from tags t join repositories r on r.id = t.repository_id "
                                             "where r.name = ?", repository)}

    def manifest_known(self, repository: str, digest: str) -> bool:
        return bool(self.query("select 1 from manifests m join repositories r on r.id = m.repository_id "
                               "where r.name = ? and m.digest = ?", repository, digest))

    def uploads(self, repository: str | None = None) -> int:
        if repository is None:
            return self.query("select count(*) from uploads")[0][0]
        return self.query("select count(*) from uploads u join repositories r on r.id = u.repository_id "
                          "where r.name = ?", repository)[0][0]

    def files(self) -> set[str]:
        """Every file of the data directory but the database's own."""
        return {str(p.relative_to(self.data_dir)) for p in self.data_dir.rglob("*")
                if p.is_file() and not p.name.startswith("registry.db")}

    def snapshot(self) -> dict[str, Any]:
        return {"repositories": sorted(self.repositories()), "uploads": self.uploads(),
                "manifests": self.query("select count(*) from manifests")[0][0],
                "tags": self.query("select count(*) from tags")[0][0],
                "blobs": self.query("select count(*) from blobs")[0][0], "files": sorted(self.files())}

    def assert_nothing_written(self, repository: str, digests: Iterable[str] = (), tag: str | None = None,
                               repository_existed: bool = False) -> None:
        if not repository_existed:
            assert not self.repository_exists(repository), f"{repository} was created"
        for digest in digests:
            assert not self.linked(repository, digest), f"{digest} linked into {repository}"
            assert not self.blob_known(digest), f"{digest} recorded in the blobs table"
            assert not self.blob_file(digest).exists(), f"{digest} stored at {self.blob_file(digest)}"
        if tag is not None:
            assert tag not in self.tags(repository), f"tag {tag} created in {repository}"
        if repository_existed:
            assert self.uploads(repository) == 0, f"an upload session was opened in {repository}"


# -- raw HTTP (no client-side normalisation of paths) -------------------------------------------

@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def codes(self) -> list[str]:
        assert self.headers.get("content-type", "").startswith("application/json"), (self.headers, self.body[:300])
        return [entry["code"] for entry in self.json()["errors"]]


def raw_request(server: AuthRegistry, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: bytes | None = None, timeout: float = 30) -> RawResponse:
    """http.client sends `path` byte for byte: `..`, `%2e%2e` and `%2f` reach the server as written."""
    if server.tls:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", server.port, timeout=timeout, context=server.ssl_context())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        all_headers = {"Content-Length": str(len(body or b"")), **(headers or {})}
        for name, value in all_headers.items():
            conn.putheader(name, value)
        conn.endheaders(body or None)
        response = conn.getresponse()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def connect(server: AuthRegistry, source: str | None = None, timeout: float = 30) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout,
                                    source_address=(source, 0) if source else None)
    if server.tls:
        return server.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


def read_response(sock: socket.socket, deadline: float) -> RawResponse | None:
    """One HTTP/1.1 response from `sock`, or None if the peer closed (or time ran out) before one came."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = _recv(sock, deadline)
        if not piece:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = _recv(sock, deadline)
        if not piece:
            break
        body += piece
    return RawResponse(status, headers, body[:length])


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return b""
    sock.settimeout(remaining)
    try:
        return sock.recv(65536)
    except (TimeoutError, ConnectionError, ssl.SSLError):
        return b""


# -- process memory ------------------------------------------------------------------------------

def reset_peak_rss(pid: int) -> None:
    """Start VmHWM over from the current RSS (Linux: writing 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass  # then VmHWM is the peak since start, which only makes the check stricter


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")

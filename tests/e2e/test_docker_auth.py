"""The real Docker engine and skopeo against a registry with token authentication over TLS.

The registry serves HTTPS with its self-signed development CA, which is given to Docker the
documented way (/etc/docker/certs.d/HOST:PORT/ca.crt; no insecure-registries entry) and to skopeo
with --cert-dir. Anonymous pulls are allowed (--auth-anonymous-pull), anonymous pushes are not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import pytest

from tests.auth.conftest import (
    AuthRegistry,
    Store,
    User,
    add_accounts,
    bearer,
    describe,
    scope,
    secret,
    token_for,
)
from tests.support.images import OCI_MANIFEST, CommandFailed, OciLayout

pytestmark = pytest.mark.e2e

USER = User("docker-user", secret("docker-pw"))
CERTS_D = Path("/etc/docker/certs.d")


@pytest.fixture(scope="module")
def secure_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    root = tmp_path_factory.mktemp("docker-auth")
    args = ["--auth-mode", "token", "--tls-self-signed", "--auth-anonymous-pull"]
    with AuthRegistry(root / "data", args=args) as server:
        add_accounts(server.data_dir, users=[USER])
        cert_dir = CERTS_D / server.host
        assert not cert_dir.exists(), f"{cert_dir} already exists: another registry on this port?"
        cert_dir.mkdir(parents=True)
        try:
            shutil.copy(server.ca_file, cert_dir / "ca.crt")
            yield server
        finally:
            shutil.rmtree(cert_dir, ignore_errors=True)


@dataclass
class Docker:
    """The docker CLI with a config directory of the test's own (DOCKER_CONFIG): `docker login` writes there,
    not to the host's ~/.docker/config.json, and no credsStore or credHelpers of the host's take part."""
    server: AuthRegistry
    config_dir: Path

    def __call__(self, *args: object, check: bool = True, input: str | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        """A failure carries the client output and the registry's log tail."""
        env = {**os.environ, "DOCKER_CONFIG": str(self.config_dir)}
        result = subprocess.run(["docker", *map(str, args)], input=input, capture_output=True, text=True,
                                timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"{CommandFailed(result)}\n--- registry log {self.server.log_path} (tail)\n"
                                 f"{self.server.log_tail()}")
        return result

    def login(self, password: str, check: bool = True) -> subprocess.CompletedProcess:
        return self("login", "--username", USER.name, "--password-stdin", self.server.host, input=password + "\n",
                    check=check)

    def stored_hosts(self) -> set[str]:
        """The registries this config holds credentials for."""
        config = self.config_dir / "config.json"
        return set(json.loads(config.read_text()).get("auths", {})) if config.exists() else set()


@pytest.fixture
def docker(secure_registry: AuthRegistry, tmp_path: Path) -> Docker:
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    # No credsStore, and an entry in "auths": the CLI then keeps credentials in this file rather than in a
    # docker-credential-pass/-secretservice it finds on PATH (it looks for one only while a config holds no auth).
    (config_dir / "config.json").write_text(json.dumps({"auths": {"placeholder.invalid": {}}}) + "\n")
    return Docker(secure_registry, config_dir)


def registry_manifest(server: AuthRegistry, repo: str, reference: str) -> tuple[int, bytes]:
    """Ask the registry directly, as the user, over verified TLS."""
    with server.client() as client:
        token = token_for(client, USER.name, USER.password, scope(repo))["token"]
        response = client.get(f"/v2/{repo}/manifests/{reference}",
                              headers={**bearer(token), "Accept": f"{OCI_MANIFEST}, "
                                       "application/vnd.docker.distribution.manifest.v2+json"})
        assert response.status_code in (200, 404), describe(response, server)
        return response.status_code, response.content


def output(result: subprocess.CompletedProcess) -> str:
    return f"{result.stdout}\n{result.stderr}"


def test_login_push_rmi_pull_logout(secure_registry: AuthRegistry, docker: Docker, docker_images) -> None:
    server = secure_registry
    image = docker_images.app1
    ref = f"{server.host}/auth/app1:v1"
    refused = docker.login(secret("wrong"), check=False)
    assert refused.returncode != 0, output(refused)
    assert "unauthorized" in output(refused).lower() or "401" in output(refused), output(refused)
    try:
        assert "Login Succeeded" in docker.login(USER.password).stdout
        assert server.host in docker.stored_hosts(), "docker login stored nothing in its DOCKER_CONFIG"
        docker("tag", image.id, ref)
        pushed = docker("push", ref)
        match = re.search(r"^v1: digest: (sha256:[0-9a-f]{64}) size: \d+$", pushed.stdout, re.M)
        assert match, output(pushed)
        status, manifest = registry_manifest(server, "auth/app1", "v1")
        assert status == 200 and json.loads(manifest)["config"]["digest"] == image.id

        docker("rmi", ref)
        docker("image", "rm", "--force", image.id)  # so the pull really downloads
        assert docker("image", "inspect", image.id, check=False).returncode != 0
        pulled = docker("pull", ref)
        assert f"Digest: {match.group(1)}" in pulled.stdout, output(pulled)
        assert "Pull complete" in pulled.stdout, output(pulled)
        assert json.loads(docker("image", "inspect", ref).stdout)[0]["Id"] == image.id
    finally:
        docker("logout", server.host, check=False)
    assert server.host not in docker.stored_hosts(), "credentials left after logout"


def test_anonymous_pull_allowed_and_anonymous_push_refused(secure_registry: AuthRegistry, docker: Docker,
                                                           docker_images) -> None:
    server = secure_registry
    image = docker_images.app1
    assert server.host not in docker.stored_hosts()  # a config of its own: nobody logged in
    # Something to pull: pushed as the user (logged in only for that).
    ref = f"{server.host}/auth/public:v1"
    docker.login(USER.password)
    try:
        docker("tag", image.id, ref)
        docker("push", ref)
    finally:
        docker("logout", server.host)

    docker("rmi", ref)
    docker("image", "rm", "--force", image.id)
    pulled = docker("pull", ref)  # no credentials
    assert "Pull complete" in pulled.stdout, output(pulled)
    assert json.loads(docker("image", "inspect", ref).stdout)[0]["Id"] == image.id

    denied_ref = f"{server.host}/auth/anonymous-push:v1"
    docker("tag", image.id, denied_ref)
    refused = docker("push", denied_ref, check=False)
    assert refused.returncode != 0, output(refused)
    # The anonymous token (pull only) gets the plain 401 challenge, which docker reports as a need to log in.
    assert "unauthorized: authentication required" in output(refused), output(refused)
    assert registry_manifest(server, "auth/anonymous-push", "v1")[0] == 404
    store = Store(server.data_dir)
    assert "v1" not in store.tags("auth/anonymous-push")
    assert store.query("select count(*) from repository_blobs rb join repositories r on r.id = rb.repository_id "
                       "where r.name = ?", "auth/anonymous-push")[0][0] == 0


def test_skopeo_with_credentials_and_the_ca(secure_registry: AuthRegistry, skopeo, oci_image: OciLayout,
                                            tmp_path: Path) -> None:
    server = secure_registry
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    shutil.copy(server.ca_file, cert_dir / "ca.crt")
    creds = f"{USER.name}:{USER.password}"
    dest = f"docker://{server.host}/auth/skopeo:v1"

    def call(*args: str, check: bool = True, text: bool = True) -> subprocess.CompletedProcess:
        try:
            return skopeo(*args, check=check, text=text)
        except CommandFailed as exc:
            raise AssertionError(f"{exc}\n--- registry log (tail)\n{server.log_tail()}") from None

    # Without credentials the push is refused; without the CA, TLS is not trusted (an empty
    # --cert-dir, or skopeo would find the CA in /etc/docker/certs.d like Docker does).
    refused = call("copy", "--dest-cert-dir", str(cert_dir), oci_image.ref("v1"), dest, check=False)
    assert refused.returncode != 0, output(refused)
    assert "authentication required" in output(refused), output(refused)  # not a bare "403 (Forbidden)"
    no_ca = tmp_path / "no-ca"
    no_ca.mkdir()
    untrusted = call("inspect", "--creds", creds, "--cert-dir", str(no_ca), dest, check=False)
    assert untrusted.returncode != 0 and ("x509" in output(untrusted) or "certificate" in output(untrusted)), \
        output(untrusted)

    call("copy", "--preserve-digests", "--dest-creds", creds, "--dest-cert-dir", str(cert_dir),
         oci_image.ref("v1"), dest)
    info = json.loads(call("inspect", "--creds", creds, "--cert-dir", str(cert_dir), dest).stdout)
    assert info["Digest"] == oci_image.refs["v1"].digest
    assert call("inspect", "--raw", "--creds", creds, "--cert-dir", str(cert_dir), dest, text=False).stdout == \
        oci_image.manifest("v1")
    # Anonymous pull is allowed on this registry: inspect works without credentials, and with
    # --tls-verify=false too.
    assert json.loads(call("inspect", "--cert-dir", str(cert_dir), dest).stdout)["Digest"] == \
        oci_image.refs["v1"].digest
    assert json.loads(call("inspect", "--tls-verify=false", "--creds", creds, dest).stdout)["Digest"] == \
        oci_image.refs["v1"].digest
    wrong = call("inspect", "--creds", f"{USER.name}:{secret('wrong')}", "--cert-dir", str(cert_dir), dest,
                 check=False)
    assert wrong.returncode != 0, output(wrong)

"""Real docker, skopeo and podman against token authentication, by the Docker token protocol.

One registry in token mode on plain HTTP at 127.0.0.1 (an insecure-registry address to Docker by
default, `--tls-verify=false` for skopeo and podman), with a policy: `pusher` may pull and push
everything, `reader` may only pull, anonymous callers nothing. Every client runs with credentials
of its own only (DOCKER_CONFIG, REGISTRY_AUTH_FILE and --authfile in temp dirs), never the host's.

For each client:
- an anonymous push gets the 401 challenge, then (with an anonymous token that carries nothing)
  401 insufficient_scope; the push fails and nothing is stored;
- a push with credentials of a second image that shares layers with one already pushed to another
  repository mounts those layers (docker says `Mounted from`; the registry's access log shows the
  POST ?mount=&from= answered 201);
- a user who may only pull gets a denial, and nothing is stored.
What each client printed is asserted on; seen from docker 20.10, skopeo 1.9 and podman 4.3 here:
- anonymous push: all three end with "unauthorized: authentication required" (an anonymous token
  gets the plain challenge, no `error`);
- push without push permission: all three end with "denied: requested access to the resource is
  denied" (401 with error="insufficient_scope", which docker and containers/image report so);
- mounts: docker prints "Mounted from REPO"; skopeo and podman print nothing of their own (their
  "Copying blob" line is the same), so the registry's access log is the witness.
(containers/image also logs "Failed to parse the authentication scope from the given challenge" when
a refused mount's challenge names two repositories: it parses one scope only; the push still ends
with the denial.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import pytest

from tests.auth.conftest import AuthRegistry, Store, User, add_accounts, secret
from tests.e2e.test_podman_ctr import Podman, podman  # noqa: F401  (the podman fixture)
from tests.support.images import CommandFailed, OciLayout, run

pytestmark = pytest.mark.e2e

PUSHER = User("pusher", secret("pusher"))
READER = User("reader", secret("reader"))
POLICY = """\
rules:
  - repositories: ["*"]
    users: [pusher]
    actions: [pull, push]
  - repositories: ["*"]
    users: [reader]
    actions: [pull]
"""

SEEN: dict[str, str] = {}  # what each client printed, for the report at the end of the module


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    root = tmp_path_factory.mktemp("token-clients")
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    args = ["--auth-mode", "token", "--auth-policy-file", str(policy), "--auth-failed-login-limit", "1000"]
    with AuthRegistry(root / "data", args=args) as server:
        add_accounts(server.data_dir, users=[PUSHER, READER])
        yield server
    if SEEN:
        print("\n--- what the clients printed ---")
        for what, text in SEEN.items():
            print(f"[{what}]\n{text.strip()}\n")


def output(result: subprocess.CompletedProcess) -> str:
    return f"{result.stdout}\n{result.stderr}"


def seen(what: str, result: subprocess.CompletedProcess) -> str:
    SEEN[what] = output(result)
    return output(result)


def mounts(server: AuthRegistry, target: str) -> list[tuple[str, str]]:
    """(from, status) of every POST ?mount=...&from=... into `target` in the access log."""
    found = []
    pattern = re.compile(rf"POST /v2/{re.escape(target)}/blobs/uploads/\?(\S*) (\d{{3}}) ")
    for match in pattern.finditer(server.log_text()):
        query = dict(part.partition("=")[::2] for part in match.group(1).split("&"))
        if "mount" in query:
            found.append((query.get("from", "").replace("%2F", "/"), match.group(2)))
    return found


def statuses(server: AuthRegistry, repository: str) -> set[str]:
    """The status of every request under /v2/REPOSITORY/ in the access log."""
    pattern = re.compile(rf"(?:GET|HEAD|POST|PUT|PATCH|DELETE) /v2/{re.escape(repository)}/\S* (\d{{3}}) ")
    return set(pattern.findall(server.log_text()))


def assert_refused(server: AuthRegistry, repository: str, allowed: set[str]) -> None:
    """Only refusals for `repository`: 401 challenges, and `allowed` (404 for a reader's HEADs)."""
    seen_statuses = statuses(server, repository)
    assert "401" in seen_statuses and seen_statuses <= {"401"} | allowed, seen_statuses


def assert_nothing_pushed(server: AuthRegistry, repository: str) -> None:
    store = Store(server.data_dir)
    assert not store.repository_exists(repository) or (
        not store.tags(repository) and store.query(
            "select count(*) from repository_blobs rb join repositories r on r.id = rb.repository_id "
            "where r.name = ?", repository)[0][0] == 0), f"something was stored in {repository}"


# -- docker ----------------------------------------------------------------------------------------

@dataclass
class Docker:
    server: AuthRegistry
    config_dir: Path

    def __call__(self, *args: object, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "DOCKER_CONFIG": str(self.config_dir)}
        result = subprocess.run(["docker", *map(str, args)], input=input, capture_output=True, text=True,
                                timeout=180, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"{CommandFailed(result)}\n--- registry log (tail)\n{self.server.log_tail()}")
        return result

    def login(self, user: User, password: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """`docker login` as `user` (with `password` instead of the user's own, to be refused)."""
        return self("login", "--username", user.name, "--password-stdin", self.server.host,
                    input=(password if password is not None else user.password) + "\n", check=check)


@contextlib.contextmanager
def docker_client(registry: AuthRegistry, config_dir: Path) -> Iterator[Docker]:
    """The docker CLI with a config directory of its own, logged out of the registry at the end."""
    config_dir.mkdir()
    # An entry in "auths" and no credsStore: credentials stay in this file (see test_docker_auth.py).
    (config_dir / "config.json").write_text(json.dumps({"auths": {"placeholder.invalid": {}}}) + "\n")
    client = Docker(registry, config_dir)
    try:
        yield client
    finally:
        client("logout", registry.host, check=False)


@pytest.fixture
def docker(registry: AuthRegistry, dockerd: None, tmp_path: Path) -> Iterator[Docker]:
    with docker_client(registry, tmp_path / "docker-config") as client:
        yield client


def test_docker_anonymous_push_is_challenged(registry: AuthRegistry, docker: Docker, docker_images) -> None:
    ref = f"{registry.host}/tc/docker-anonymous:v1"
    docker("tag", docker_images.app1.id, ref)
    try:
        refused = docker("push", ref, check=False)
    finally:
        docker("rmi", ref, check=False)
    text = seen("docker push, anonymous", refused)
    assert refused.returncode != 0, text
    assert "unauthorized: authentication required" in text, text
    assert_refused(registry, "tc/docker-anonymous", set())
    assert_nothing_pushed(registry, "tc/docker-anonymous")


def test_docker_push_mounts_shared_layers(registry: AuthRegistry, docker: Docker, docker_images) -> None:
    first, second = f"{registry.host}/tc/docker-first:v1", f"{registry.host}/tc/docker-second:v1"
    docker.login(PUSHER)
    docker("tag", docker_images.app1.id, first)
    docker("tag", docker_images.app2.id, second)
    try:
        seen("docker push, first image", docker("push", first))
        pushed = docker("push", second)
    finally:
        docker("rmi", first, second, check=False)
    text = seen("docker push, second image", pushed)
    # app1 and app2 share the base image's layers: mounted from the first repository, not uploaded.
    assert "Mounted from tc/docker-first" in text, text
    assert ("tc/docker-first", "201") in mounts(registry, "tc/docker-second"), mounts(registry, "tc/docker-second")


def test_docker_push_without_push_permission_is_denied(registry: AuthRegistry, docker: Docker,
                                                       docker_images) -> None:
    ref = f"{registry.host}/tc/docker-readonly:v1"
    docker.login(READER)
    docker("tag", docker_images.app1.id, ref)
    try:
        refused = docker("push", ref, check=False)
    finally:
        docker("rmi", ref, check=False)
    text = seen("docker push, user without push", refused)
    assert refused.returncode != 0, text
    assert "denied: requested access to the resource is denied" in text, text
    assert_refused(registry, "tc/docker-readonly", {"404"})
    assert_nothing_pushed(registry, "tc/docker-readonly")


# -- skopeo ----------------------------------------------------------------------------------------

@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    """An empty containers auth file: skopeo and podman find no credentials of the host's."""
    path = tmp_path / "auth.json"
    path.write_text('{"auths": {}}\n')
    return path


def skopeo_copy(skopeo, server: AuthRegistry, auth_file: Path, source: str, repo: str, *creds: str,
                check: bool = True) -> subprocess.CompletedProcess:
    args = ["copy", "--dest-tls-verify=false", "--dest-authfile", str(auth_file), *creds, source,
            f"docker://{server.host}/{repo}"]
    result = run(skopeo.base_args + args, check=False, timeout=180, env={"REGISTRY_AUTH_FILE": str(auth_file)})
    if check and result.returncode != 0:
        raise AssertionError(f"{CommandFailed(result)}\n--- registry log (tail)\n{server.log_tail()}")
    return result


def test_skopeo_anonymous_push_is_challenged(registry: AuthRegistry, skopeo, oci_image: OciLayout,
                                             auth_file: Path) -> None:
    refused = skopeo_copy(skopeo, registry, auth_file, oci_image.ref("v1"), "tc/skopeo-anonymous:v1", check=False)
    text = seen("skopeo copy, anonymous", refused)
    assert refused.returncode != 0, text
    assert "unauthorized: authentication required" in text, text
    assert_refused(registry, "tc/skopeo-anonymous", set())
    assert_nothing_pushed(registry, "tc/skopeo-anonymous")


def test_skopeo_push_mounts_shared_layers(registry: AuthRegistry, skopeo, oci_image: OciLayout,
                                          auth_file: Path) -> None:
    creds = ["--dest-creds", f"{PUSHER.name}:{PUSHER.password}"]
    seen("skopeo copy, first image", skopeo_copy(skopeo, registry, auth_file, oci_image.ref("v1"),
                                                 "tc/skopeo-first:v1", *creds))
    pushed = skopeo_copy(skopeo, registry, auth_file, oci_image.ref("other"), "tc/skopeo-second:v1", *creds)
    text = seen("skopeo copy, second image", pushed)
    assert ("tc/skopeo-first", "201") in mounts(registry, "tc/skopeo-second"), (mounts(registry, "tc/skopeo-second"),
                                                                                text)


def test_skopeo_push_without_push_permission_is_denied(registry: AuthRegistry, skopeo, oci_image: OciLayout,
                                                       auth_file: Path) -> None:
    refused = skopeo_copy(skopeo, registry, auth_file, oci_image.ref("v1"), "tc/skopeo-readonly:v1",
                          "--dest-creds", f"{READER.name}:{READER.password}", check=False)
    text = seen("skopeo copy, user without push", refused)
    assert refused.returncode != 0, text
    assert "denied: requested access to the resource is denied" in text, text
    assert_refused(registry, "tc/skopeo-readonly", {"404"})
    assert_nothing_pushed(registry, "tc/skopeo-readonly")


# -- podman ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def podman_images(podman: Podman, registry: AuthRegistry, docker_images,  # noqa: F811
                  tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """docker_images.app1 and app2 (sharing their base layers) loaded into podman's own store."""
    work = tmp_path_factory.mktemp("podman-images")
    ids = []
    for image in (docker_images.app1, docker_images.app2):
        archive = work / f"{image.id.split(':')[1][:12]}.tar"
        run(["docker", "save", "--output", archive, image.id])
        podman(registry, "load", "--input", archive)
        ids.append(image.id)
    return ids[0], ids[1]


def podman_push(podman: Podman, server: AuthRegistry, auth_file: Path, image: str, repo: str, *creds: str,  # noqa: F811
                check: bool = True) -> subprocess.CompletedProcess:
    args = [*podman.base_args, "push", "--tls-verify=false", "--authfile", str(auth_file), *creds, image,
            f"docker://{server.host}/{repo}"]
    result = run(args, check=False, timeout=180, env={**podman.env, "REGISTRY_AUTH_FILE": str(auth_file)})
    if check and result.returncode != 0:
        raise AssertionError(f"{CommandFailed(result)}\n--- registry log (tail)\n{server.log_tail()}")
    return result


def test_podman_anonymous_push_is_challenged(registry: AuthRegistry, podman: Podman,  # noqa: F811
                                             podman_images: tuple[str, str], auth_file: Path) -> None:
    refused = podman_push(podman, registry, auth_file, podman_images[0], "tc/podman-anonymous:v1", check=False)
    text = seen("podman push, anonymous", refused)
    assert refused.returncode != 0, text
    assert "unauthorized: authentication required" in text, text
    assert_refused(registry, "tc/podman-anonymous", set())
    assert_nothing_pushed(registry, "tc/podman-anonymous")


def test_podman_push_mounts_shared_layers(registry: AuthRegistry, podman: Podman,  # noqa: F811
                                          podman_images: tuple[str, str], auth_file: Path) -> None:
    creds = ["--creds", f"{PUSHER.name}:{PUSHER.password}"]
    seen("podman push, first image", podman_push(podman, registry, auth_file, podman_images[0],
                                                 "tc/podman-first:v1", *creds))
    pushed = podman_push(podman, registry, auth_file, podman_images[1], "tc/podman-second:v1", *creds)
    text = seen("podman push, second image", pushed)
    assert ("tc/podman-first", "201") in mounts(registry, "tc/podman-second"), (mounts(registry, "tc/podman-second"),
                                                                                text)


def test_podman_push_without_push_permission_is_denied(registry: AuthRegistry, podman: Podman,  # noqa: F811
                                                       podman_images: tuple[str, str], auth_file: Path) -> None:
    refused = podman_push(podman, registry, auth_file, podman_images[0], "tc/podman-readonly:v1",
                          "--creds", f"{READER.name}:{READER.password}", check=False)
    text = seen("podman push, user without push", refused)
    assert refused.returncode != 0, text
    assert "denied: requested access to the resource is denied" in text, text
    assert_refused(registry, "tc/podman-readonly", {"404"})
    assert_nothing_pushed(registry, "tc/podman-readonly")

"""The real Docker engine against a registry whose users are in an LDAP directory (the session's `slapd`):
`docker login` with a directory user, then the group-based policy decides the push.

In token mode and in basic mode, on plain HTTP at 127.0.0.1 (an insecure-registry address to Docker by
default). `de-dora` is in the directory group `de-builders`, which the policy lets push ldap-build/*;
`de-ned` is in the directory but not in the group: signed in, he may pull and not push. In token mode
docker keeps the refresh token that login brings (an "identity token") and trades it for access tokens at
each push, so the directory is asked again for the user's groups then (registry/auth/credentials.py
identity_for).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.conftest import AuthRegistry, Store, User, secret
from tests.auth.test_ldap import directory_registry, ldap_section
from tests.e2e.test_token_clients import Docker, docker_client, output
from tests.support.slapd import SlapdServer, group, person, user_dn

pytestmark = pytest.mark.e2e

DORA = User("de-dora", secret("dora"))
NED = User("de-ned", secret("ned"))
POLICY = """\
rules:
  - repositories: ["ldap-build/*"]
    groups: [de-builders]
    actions: [pull, push]
  - repositories: ["*"]
    authenticated: true
    actions: [pull]
"""


@pytest.fixture(scope="module")
def builders(slapd: SlapdServer) -> SlapdServer:
    slapd.add(person(DORA.name, DORA.password) + person(NED.name, NED.password) + group("de-builders", [DORA.name]))
    return slapd


@pytest.fixture(scope="module", params=["token", "basic"])
def registry(request: pytest.FixtureRequest, builders: SlapdServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    root = tmp_path_factory.mktemp(f"docker-ldap-{request.param}")
    with directory_registry(root, request.param, ldap_section(builders), policy=POLICY) as server:
        yield server


@pytest.fixture
def docker(registry: AuthRegistry, dockerd: None, tmp_path: Path) -> Iterator[Docker]:
    with docker_client(registry, tmp_path / "docker-config") as client:
        yield client


def test_docker_login_and_push_as_a_directory_user_in_the_group(registry: AuthRegistry, builders: SlapdServer,
                                                                docker: Docker, docker_images) -> None:
    refused = docker.login(DORA, secret("wrong"), check=False)
    assert refused.returncode != 0, output(refused)
    assert "unauthorized" in output(refused).lower(), output(refused)

    binds = builders.binds(user_dn(DORA.name))
    assert "Login Succeeded" in docker.login(DORA).stdout
    assert builders.binds(user_dn(DORA.name)) == binds + 1, "docker login did not bind as the user"
    ref = f"{registry.host}/ldap-build/app:v1"
    docker("tag", docker_images.app1.id, ref)
    try:
        pushed = docker("push", ref)
    finally:
        docker("rmi", ref, check=False)
    assert re.search(r"^v1: digest: sha256:[0-9a-f]{64} size: \d+$", pushed.stdout, re.M), output(pushed)
    assert "v1" in Store(registry.data_dir).tags("ldap-build/app")


def test_docker_push_by_a_directory_user_outside_the_group_is_denied(registry: AuthRegistry, docker: Docker,
                                                                    docker_images) -> None:
    assert "Login Succeeded" in docker.login(NED).stdout
    ref = f"{registry.host}/ldap-build/denied:v1"
    docker("tag", docker_images.app1.id, ref)
    try:
        refused = docker("push", ref, check=False)
    finally:
        docker("rmi", ref, check=False)
    assert refused.returncode != 0, output(refused)
    assert "denied: requested access to the resource is denied" in output(refused), output(refused)
    store = Store(registry.data_dir)
    assert not store.repository_exists("ldap-build/denied") or not store.tags("ldap-build/denied")

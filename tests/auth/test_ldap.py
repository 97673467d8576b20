"""Directory (LDAP) users beside local users and robots, against a real OpenLDAP (the session's `slapd`,
tests/support/slapd.py), with the registry as a real process.

The directory: people under ou=people (only the service account may search them), groups of names under
ou=groups, kept in memberOf by the memberof overlay. The policy grants push on ldap-dev/* to the group
`lt-devs`, push on local/* to the local user, pull on everything to anyone signed in, and the admin role to
`lt-ops`. What slapd logged (its binds, its search filters, STARTTLS) is the witness for what the registry
sent it.
"""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.auth.conftest import (
    OTHER_ADDRESS,
    AuthRegistry,
    User,
    add_accounts,
    assert_error,
    basic,
    bearer,
    claims_of,
    describe,
    granted,
    post_blob,
    push_image,
    request_token,
    scope,
    secret,
    token_for,
)
from tests.support.server import free_port
from tests.support.slapd import GROUPS, PEOPLE, SERVICE_DN, SlapdServer, group, group_dn, person, user_dn

LISA = User("lt-lisa", secret("lisa"))     # in lt-devs
DAVE = User("lt-dave", secret("dave"))     # in lt-qa only
OTTO = User("lt-otto", secret("otto"))     # in lt-ops (admins)
TWIN = User("lt-twin", secret("twin-directory"))  # in the directory and, with another password, local
LOCAL_TWIN = User("lt-twin", secret("twin-local"))
LOCAL = User("lt-local", secret("local"))  # local only

POLICY = """\
admins: ["group:lt-ops"]
rules:
  - repositories: ["ldap-dev/*"]
    groups: [lt-devs]
    actions: [pull, push]
  - repositories: ["local/*"]
    users: [lt-local, lt-twin]
    actions: [pull, push]
  - repositories: ["*"]
    authenticated: true
    actions: [pull]
"""


@pytest.fixture(scope="module")
def people(slapd: SlapdServer) -> SlapdServer:
    slapd.add("".join(person(user.name, user.password) for user in (LISA, DAVE, OTTO, TWIN))
              + group("lt-devs", [LISA.name]) + group("lt-qa", [DAVE.name]) + group("lt-ops", [OTTO.name]))
    return slapd


def ldap_section(directory: SlapdServer, **overrides: Any) -> dict[str, Any]:
    section = {"url": directory.url, "bind_dn": SERVICE_DN, "bind_password": directory.service_password,
               "base_dn": PEOPLE, "group_base_dn": GROUPS}
    section.update(overrides)
    return section


def directory_registry(root: Path, mode: str, ldap: dict[str, Any], env: dict[str, str] | None = None,
                       policy: str = POLICY) -> AuthRegistry:
    """A registry (not started) whose configuration file holds `ldap` as auth.ldap and the policy above."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "policy.yaml").write_text(policy)
    config = {"auth": {"mode": mode, "policy_file": str(root / "policy.yaml"), "failed_login_limit": 1000,
                       "ldap": ldap}}
    (root / "registry.yaml").write_text(yaml.safe_dump(config))
    return AuthRegistry(root / "data", args=["--config", str(root / "registry.yaml")], env=env)


@dataclass
class World:
    server: AuthRegistry
    client: httpx.Client
    directory: SlapdServer


@pytest.fixture(scope="module")
def world(people: SlapdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Token mode; the service account's password from a file; groups by a group search, names as they are."""
    root = tmp_path_factory.mktemp("ldap-token")
    password_file = root / "bind-password"
    password_file.write_text(people.service_password + "\n")
    ldap = ldap_section(people, bind_password_file=str(password_file))
    del ldap["bind_password"]
    with directory_registry(root, "token", ldap) as server:
        add_accounts(server.data_dir, users=[LOCAL, LOCAL_TWIN])
        with server.client() as client:
            yield World(server, client, people)


def token(world: World, user: User, *scopes: str, offline: bool = False) -> dict[str, Any]:
    return token_for(world.client, user.name, user.password, *scopes, offline=offline)


# -- signing in, and the policy's groups -----------------------------------------------------------

def test_a_directory_user_in_the_group_gets_push_and_pushes(world: World) -> None:
    answer = token(world, LISA, scope("ldap-dev/app", "pull,push"))
    assert granted(answer["token"]) == {"ldap-dev/app": ["pull", "push"]}
    assert claims_of(answer["token"])["sub"] == LISA.name
    assert claims_of(answer["token"]).get("groups") == ["lt-devs"]
    push_image(world.client, "ldap-dev/app", "v1", bearer(answer["token"]))


def test_a_directory_user_outside_the_group_gets_pull_only_and_cannot_push(world: World) -> None:
    answer = token(world, DAVE, scope("ldap-dev/app", "pull,push"))
    assert granted(answer["token"]) == {"ldap-dev/app": ["pull"]}
    response = post_blob(world.client, "ldap-dev/app", b"dave's layer", bearer(answer["token"]))
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    # Basic credentials (accepted in token mode too) meet the same policy: 403.
    assert_error(post_blob(world.client, "ldap-dev/app", b"dave's layer", basic(DAVE.name, DAVE.password)),
                 403, "DENIED", world.server)
    ok = post_blob(world.client, "ldap-dev/app", b"lisa's layer", basic(LISA.name, LISA.password))
    assert ok.status_code == 201, describe(ok, world.server)


def test_a_directory_group_can_hold_the_admin_role(world: World) -> None:
    response = world.client.get("/admin/api/whoami", headers=basic(OTTO.name, OTTO.password))
    assert response.status_code == 200, describe(response, world.server)
    assert response.json() | {"address": ""} == {"name": OTTO.name, "kind": "user", "groups": ["lt-ops"],
                                                  "admin": True, "address": ""}, response.json()
    assert_error(world.client.get("/admin/api/whoami", headers=basic(LISA.name, LISA.password)), 403, "DENIED",
                 world.server)


def test_wrong_password_and_unknown_user_are_401(world: World) -> None:
    for name, password in ((LISA.name, secret("wrong")), ("lt-nobody", secret("nobody")), (LISA.name, "")):
        response = request_token(world.client, name, password, [scope("ldap-dev/app", "pull")])
        assert_error(response, 401, "UNAUTHORIZED", world.server)
        assert_error(world.client.get("/v2/", headers=basic(name, password)), 401, "UNAUTHORIZED", world.server)
    form = world.client.post("/auth/token", data={"grant_type": "password", "username": LISA.name,
                                                  "password": secret("wrong"), "service": "registry"})
    assert_error(form, 401, "UNAUTHORIZED", world.server)


def test_a_refresh_token_brings_the_groups_the_directory_has_now(world: World) -> None:
    refresh = token(world, LISA, offline=True)["refresh_token"]
    form = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                                  "service": "registry", "scope": scope("ldap-dev/app", "pull,push")})
    assert form.status_code == 200, describe(form, world.server)
    assert granted(form.json()["token"]) == {"ldap-dev/app": ["pull", "push"]}


def test_a_local_name_never_falls_through_to_the_directory(world: World) -> None:
    """lt-twin exists locally and in the directory: only the local password is taken, and the directory is
    not even asked."""
    binds = world.directory.binds(user_dn(TWIN.name))
    assert_error(world.client.get("/v2/", headers=basic(TWIN.name, TWIN.password)), 401, "UNAUTHORIZED",
                 world.server)
    response = world.client.get("/v2/", headers=basic(LOCAL_TWIN.name, LOCAL_TWIN.password))
    assert response.status_code == 200, describe(response, world.server)
    assert world.directory.binds(user_dn(TWIN.name)) == binds
    assert not [f for f in world.directory.filters() if TWIN.name in f], "the directory was searched for a local name"
    response = post_blob(world.client, "local/app", b"a local user's layer", basic(LOCAL.name, LOCAL.password))
    assert response.status_code == 201, describe(response, world.server)


@pytest.mark.parametrize("name", ["*)(uid=*", "lt-lis*", "*", "lt-lisa)(objectClass=*", "lt-lisa\\", "lt-lisa\x00x"])
def test_filter_metacharacters_in_the_name_are_escaped_and_the_login_fails(world: World, name: str) -> None:
    """Unescaped, `lt-lis*` would find lt-lisa alone and her password would let it in."""
    binds = world.directory.binds(user_dn(LISA.name))
    response = request_token(world.client, name, LISA.password, [scope("ldap-dev/app", "pull,push")])
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    assert world.directory.binds(user_dn(LISA.name)) == binds
    searched = world.directory.filters()[-1]  # slapd logs the escapes as \2A, \28, \29, \5C, \00
    for character in set(name) & set("*()\\\x00"):
        assert f"\\{ord(character):02X}" in searched, searched


def test_a_successful_login_is_remembered_and_a_failed_one_is_not(world: World) -> None:
    user = User("lt-cache", secret("cache"))
    world.directory.add(person(user.name, user.password))
    dn = user_dn(user.name)
    token(world, user)
    assert world.directory.binds(dn) == 1
    for _ in range(3):  # within auth.ldap.cache_seconds (60 by default): no new bind
        token(world, user)
        assert world.client.get("/v2/", headers=basic(user.name, user.password)).status_code == 200
    assert world.directory.binds(dn) == 1
    for attempt in (1, 2):  # a wrong password asks the directory every time
        assert_error(world.client.get("/v2/", headers=basic(user.name, "wrong")), 401, "UNAUTHORIZED", world.server)
        assert world.directory.binds(dn) == 1 + attempt


def test_logins_reuse_pooled_connections(world: World) -> None:
    """Six logins in a row, none cached: the searches and the binds go over connections already open."""
    users = [User(f"lt-pool-{i}", secret("pool")) for i in range(6)]
    world.directory.add("".join(person(user.name, user.password) for user in users))
    token(world, users[0])  # connections of both kinds are open after one login
    accepted = world.directory.log_text().count(" ACCEPT from ")
    for user in users[1:]:
        token(world, user)
        assert world.client.get("/v2/", headers=basic(user.name, "wrong")).status_code == 401
    assert world.directory.log_text().count(" ACCEPT from ") == accepted
    assert all(world.directory.binds(user_dn(user.name)) == 2 for user in users[1:])


# -- StartTLS and LDAPS, basic mode, memberOf and a group map -------------------------------------

GROUP_MAP = [{"directory": group_dn("lt-qa"), "group": "lt-devs"}]  # by DN; lt-devs itself is not listed


def test_start_tls_basic_mode_member_of_and_a_group_map(people: SlapdServer, tmp_path: Path) -> None:
    """The password from the environment; groups from memberOf only, mapped: lt-qa (dave) is the policy's
    lt-devs, and lisa's own lt-devs, not in the map, counts for nothing."""
    ldap = ldap_section(people, start_tls=True, ca_file=str(people.tls.ca_file), member_of_attribute="memberOf",
                        group_filter="", group_map=GROUP_MAP)
    del ldap["bind_password"]
    env = {"REGISTRY_AUTH_LDAP_BIND_PASSWORD": people.service_password}
    log_start = len(people.log_text())
    with directory_registry(tmp_path, "basic", ldap, env=env) as server, server.client() as client:
        pushed = post_blob(client, "ldap-dev/mapped", b"dave's layer", basic(DAVE.name, DAVE.password))
        assert pushed.status_code == 201, describe(pushed, server)
        assert_error(post_blob(client, "ldap-dev/mapped", b"lisa's layer", basic(LISA.name, LISA.password)),
                     403, "DENIED", server)
        assert client.get("/v2/ldap-dev/mapped/tags/list", headers=basic(LISA.name, LISA.password)).status_code \
            in (200, 404)
        assert_error(client.get("/v2/", headers=basic(DAVE.name, "wrong")), 401, "UNAUTHORIZED", server)
    seen = people.log_text()[log_start:]
    assert "STARTTLS" in seen, seen[-2000:]
    searched = people.filters(since=log_start)
    assert searched and not [f for f in searched if "groupOfNames" in f], searched  # group_filter is empty
    binds = [line for line in seen.splitlines() if " BIND dn=" in line and "mech=SIMPLE" in line]
    assert binds, seen[-2000:]
    for line in binds:  # every bind (the service account's and the users') came after TLS: ssf is not 0
        assert int(re.search(r" ssf=(\d+)", line).group(1)) > 0, line


def test_ldaps_verifies_the_directory_certificate(people: SlapdServer, tmp_path: Path) -> None:
    ldap = ldap_section(people, url=people.tls_url, ca_file=str(people.tls.ca_file))
    with directory_registry(tmp_path / "ca", "basic", ldap) as server, server.client() as client:
        response = post_blob(client, "ldap-dev/ldaps", b"over ldaps", basic(LISA.name, LISA.password))
        assert response.status_code == 201, describe(response, server)
    assert f"(IP=127.0.0.1:{people.tls_port})" in people.log_text()
    # Without the CA (the system's CAs do not know the test's), nothing is sent: 503, and the log says why.
    ldap = ldap_section(people, url=people.tls_url)
    with directory_registry(tmp_path / "no-ca", "basic", ldap) as server, server.client() as client:
        response = client.get("/v2/", headers=basic(LISA.name, LISA.password))
        assert_error(response, 503, "UNAVAILABLE", server)
        assert "certificate verify failed" in server.log_text(), server.log_tail()
        # A local user is not held up by the directory.
        add_accounts(server.data_dir, users=[LOCAL])
        assert client.get("/v2/", headers=basic(LOCAL.name, LOCAL.password)).status_code == 200
    # The name is checked too: the certificate is for 127.0.0.1 and localhost; slapd answers on 127.0.0.2 too.
    ldap = ldap_section(people, url=f"ldaps://{OTHER_ADDRESS}:{people.tls_port}", ca_file=str(people.tls.ca_file))
    with directory_registry(tmp_path / "other-name", "basic", ldap) as server, server.client() as client:
        assert_error(client.get("/v2/", headers=basic(LISA.name, LISA.password)), 503, "UNAVAILABLE", server)
        assert "certificate verify failed" in server.log_text() and OTHER_ADDRESS in server.log_text(), \
            server.log_tail()


# -- the directory down ------------------------------------------------------------------------------

def test_directory_down_is_503_for_directory_users_and_local_users_keep_working(tmp_path: Path) -> None:
    """A directory of its own, stopped and started again. The URL list starts with a closed port, so every
    new connection fails over to the second. No cache: each login asks the directory."""
    with SlapdServer(tmp_path / "slapd") as directory:
        directory.add(person(LISA.name, LISA.password) + group("lt-devs", [LISA.name]))
        ldap = ldap_section(directory, url=f"ldap://127.0.0.1:{free_port()}, {directory.url}", cache_seconds=0)
        with directory_registry(tmp_path / "registry", "token", ldap) as server, server.client() as client:
            add_accounts(server.data_dir, users=[LOCAL])
            assert client.get("/v2/", headers=basic(LISA.name, LISA.password)).status_code == 200
            refresh = token_for(client, LISA.name, LISA.password, offline=True)["refresh_token"]

            directory.stop()
            for response in (client.get("/v2/", headers=basic(LISA.name, LISA.password)),
                             request_token(client, LISA.name, LISA.password, [scope("ldap-dev/app", "pull")]),
                             client.post("/auth/token", data={"grant_type": "refresh_token", "service": "registry",
                                                              "refresh_token": refresh})):
                assert_error(response, 503, "UNAVAILABLE", server)
                assert response.json()["errors"][0]["message"] == "the directory is unreachable"
                assert 1 <= int(response.headers["retry-after"]) <= 5, response.headers
            assert "the directory is unreachable" in server.log_text()
            # Local users and the token server are not held up.
            assert client.get("/v2/", headers=basic(LOCAL.name, LOCAL.password)).status_code == 200
            local = token_for(client, LOCAL.name, LOCAL.password, scope("local/app", "pull,push"))["token"]
            assert granted(local) == {"local/app": ["pull", "push"]}
            # 503 is no failed login: the throttle has nothing to count (limit 1000 here; see the metric).
            metrics = client.get("/metrics").text
            assert 'registry_auth_failures_total{reason="directory_unavailable"}' in metrics

            directory.start()
            time.sleep(int(response.headers["retry-after"]))  # as the last 503 said
            # Back at the first try: the pooled connections to the stopped slapd are replaced.
            response = client.get("/v2/", headers=basic(LISA.name, LISA.password))
            assert response.status_code == 200, describe(response, server)


def test_a_directory_that_never_answers_holds_up_only_its_own_users(tmp_path: Path) -> None:
    """A "directory" that accepts connections and never says a word: a directory login ends in 503 once the
    timeouts are up, and meanwhile a local user's requests are answered at once (the event loop never waits
    on the directory)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes the handshakes; nobody ever reads
        ldap = {"url": f"ldap://127.0.0.1:{silent.getsockname()[1]}", "bind_dn": SERVICE_DN, "bind_password": "x",
                "base_dn": PEOPLE, "connect_timeout": 1, "timeout": 2}
        with directory_registry(tmp_path, "basic", ldap) as server, server.client() as client, \
                server.client() as other:
            add_accounts(server.data_dir, users=[LOCAL])
            with ThreadPoolExecutor(max_workers=1) as pool:
                started = time.monotonic()
                waiting = pool.submit(client.get, "/v2/", headers=basic(LISA.name, LISA.password))
                time.sleep(0.3)
                while not waiting.done():
                    before = time.monotonic()
                    assert other.get("/v2/", headers=basic(LOCAL.name, LOCAL.password)).status_code == 200
                    assert time.monotonic() - before < 1.0, "a local login waited on the directory"
                    time.sleep(0.1)
                response = waiting.result()
                took = time.monotonic() - started
            assert_error(response, 503, "UNAVAILABLE", server)
            assert 1.5 <= took < 6, took  # the answer's timeout (2 s), or the login's deadline (1 + 2 s)
            assert "the directory is unreachable" in server.log_text()

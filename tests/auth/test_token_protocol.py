"""The Docker token protocol by the letter: challenges, scopes, the token server, and the one
registry client library (registry.client) following them.

One registry in token mode (plain HTTP on loopback) with a policy: `dev` may pull and push
`src/*` and `dst/*`, `viewer` may only pull `src/*`, `owner` alone may read `secret/*`. Blobs are in
`src/base` and `secret/vault` to mount from.

What Distribution does, and so this registry (registry/auth/token/accesscontroller.go,
registry/handlers/app.go):
- a request without a usable token: 401, `WWW-Authenticate: Bearer realm,service,scope`, the
  scope naming everything the request needs; for `POST ...?mount=D&from=SRC` that is
  `repository:NAME:pull,push repository:SRC:pull` (space separated, RFC 6750);
- a valid token without the scope: the same 401 plus `error="insufficient_scope"`.
The token server takes several scopes (repeated `scope` parameters, or one space-separated value
as a challenge's `scope` reads) and issues one token with all that the policy allows.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from collections.abc import Iterator

import httpx
import pytest

from registry.client import RegistryClient, UpstreamError
from tests.auth.conftest import (
    AuthRegistry,
    Store,
    User,
    add_accounts,
    assert_bearer_challenge,
    assert_insufficient_scope,
    basic,
    bearer,
    claims_of,
    describe,
    granted,
    post_blob,
    request_token,
    scope,
    secret,
    sha256,
    token_for,
)
from tests.support.mirror import ACCESS_LINE

POLICY = """\
rules:
  - repositories: ["src/*", "dst/*"]
    users: [dev]
    actions: [pull, push]
  - repositories: ["src/*"]
    users: [viewer]
    actions: [pull]
  - repositories: ["secret/*"]
    users: [owner]
    actions: [pull, push]
"""

DEV = User("dev", secret("dev"))
VIEWER = User("viewer", secret("viewer"))
OWNER = User("owner", secret("owner"))


@dataclass
class World:
    server: AuthRegistry
    client: httpx.Client
    store: Store
    base_blob: bytes    # in src/base
    secret_blob: bytes  # in secret/vault

    def token(self, user: User | None, *scopes: str) -> str:
        return token_for(self.client, user.name if user else None, user.password if user else None, *scopes)["token"]

    def mount(self, target: str, digest: str, source: str, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source},
                                headers=headers)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("token-protocol")
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    args = ["--auth-mode", "token", "--auth-policy-file", str(policy), "--auth-failed-login-limit", "1000"]
    with AuthRegistry(root / "data", args=args) as server, server.client() as client:
        add_accounts(server.data_dir, users=[DEV, VIEWER, OWNER])
        base_blob, secret_blob = b"base " + uuid.uuid4().bytes, b"secret " + uuid.uuid4().bytes
        headers = bearer(token_for(client, DEV.name, DEV.password, scope("src/base", "pull,push"))["token"])
        assert post_blob(client, "src/base", base_blob, headers).status_code == 201
        headers = bearer(token_for(client, OWNER.name, OWNER.password, scope("secret/vault", "pull,push"))["token"])
        assert post_blob(client, "secret/vault", secret_blob, headers).status_code == 201
        yield World(server, client, Store(server.data_dir), base_blob, secret_blob)


# -- the challenge names every scope the request needs -------------------------------------------

def test_mount_challenge_asks_for_pull_on_the_source_too(world: World) -> None:
    digest = sha256(world.base_blob)
    response = world.mount("dst/one", digest, "src/base", {})
    params = assert_bearer_challenge(response, world.server, "repository:dst/one:pull,push repository:src/base:pull")
    assert "error" not in params, params  # no token came: no error code (RFC 6750 3.1)
    assert response.json()["errors"][0]["detail"] == [
        {"Type": "repository", "Name": "dst/one", "Action": "pull"},
        {"Type": "repository", "Name": "dst/one", "Action": "push"},
        {"Type": "repository", "Name": "src/base", "Action": "pull"}]
    # A token that may only pull the target: the same scope, with insufficient_scope.
    response = world.mount("dst/one", digest, "src/base", bearer(world.token(DEV, scope("dst/one"))))
    assert_insufficient_scope(response, world.server, "repository:dst/one:pull,push repository:src/base:pull")
    assert not world.store.repository_exists("dst/one")


@pytest.mark.parametrize("query,expected", [
    ({"from": "src/base"}, "repository:dst/two:pull,push"),                     # from without mount: no mount
    ({"mount": "sha256:" + "a" * 64, "from": "dst/two"}, "repository:dst/two:pull,push"),  # from itself
    ({"mount": "sha256:" + "a" * 64, "from": "../src/base"}, "repository:dst/two:pull,push"),  # not a name
    ({"mount": "sha256:" + "a" * 64, "from": 'src/base" x="y'}, "repository:dst/two:pull,push"),
    ({"mount": "sha256:" + "a" * 64}, "repository:dst/two:pull,push"),
])
def test_challenge_names_a_mount_source_only_when_it_is_one(world: World, query: dict[str, str],
                                                            expected: str) -> None:
    response = world.client.post("/v2/dst/two/blobs/uploads/", params=query)
    assert_bearer_challenge(response, world.server, expected)


def test_invalid_repository_name_is_400_before_any_challenge(world: World) -> None:
    # The name would otherwise be quoted into WWW-Authenticate.
    for path in ('/v2/a%22b/tags/list', '/v2/Upper/tags/list', '/v2/a%5Cb/blobs/uploads/'):
        response = world.client.request("POST" if "uploads" in path else "GET", path)
        assert response.status_code == 400 and response.json()["errors"][0]["code"] == "NAME_INVALID", \
            describe(response, world.server)
        assert "www-authenticate" not in response.headers


# -- the token server: several scopes, one token -------------------------------------------------

def test_one_token_carries_the_target_and_the_source(world: World) -> None:
    challenge_scope = "repository:dst/three:pull,push repository:src/base:pull"
    repeated = world.token(DEV, "repository:dst/three:pull,push", "repository:src/base:pull")  # docker's way
    as_one = world.token(DEV, challenge_scope)  # the challenge's value passed on as one parameter
    form = world.client.post("/auth/token", data={"grant_type": "password", "username": DEV.name,
                                                  "password": DEV.password, "service": "registry",
                                                  "scope": challenge_scope})  # the OAuth2 form: space separated
    assert form.status_code == 200, describe(form, world.server)
    for token in (repeated, as_one, form.json()["token"]):
        assert granted(token) == {"dst/three": ["pull", "push"], "src/base": ["pull"]}

    digest = sha256(world.base_blob)
    response = world.mount("dst/three", digest, "src/base", bearer(repeated))
    assert response.status_code == 201, describe(response, world.server)
    assert response.headers["docker-content-digest"] == digest
    assert response.headers["location"] == f"/v2/dst/three/blobs/{digest}"
    blob = world.client.get(f"/v2/dst/three/blobs/{digest}", headers=bearer(repeated))
    assert blob.status_code == 200 and blob.content == world.base_blob


def test_mount_without_pull_on_the_source_is_a_plain_upload_session(world: World) -> None:
    # dev's token for the source grants nothing there (secret/* is owner's): the spec's answer for a
    # mount that cannot be done is an upload session (202), never an error that tells about the source.
    digest = sha256(world.secret_blob)
    token = world.token(DEV, "repository:dst/four:pull,push", "repository:secret/vault:pull")
    assert granted(token) == {"dst/four": ["pull", "push"], "secret/vault": []}
    response = world.mount("dst/four", digest, "secret/vault", bearer(token))
    assert response.status_code == 202, describe(response, world.server)
    assert response.headers["location"].startswith("/v2/dst/four/blobs/uploads/")
    assert not world.store.linked("dst/four", digest)
    # The owner, with pull on the source in the token, mounts it.
    token = world.token(OWNER, "repository:secret/copy:pull,push", "repository:secret/vault:pull")
    response = world.mount("secret/copy", digest, "secret/vault", bearer(token))
    assert response.status_code == 201, describe(response, world.server)


def test_repeated_scopes_merge_into_one_grant(world: World) -> None:
    token = world.token(DEV, "repository:dst/five:pull", "repository:dst/five:push", "repository:dst/five:pull",
                        "registry:catalog:*", "repository:dst/five:pull,push,fly")
    access = claims_of(token)["access"]
    assert access == [{"type": "repository", "name": "dst/five", "actions": ["pull", "push"]}], access


# -- the one client library follows the challenges -----------------------------------------------

def test_client_library_follows_insufficient_scope(world: World) -> None:
    """A token cached for pull, used for a push: the 401 insufficient_scope names pull,push, the
    client asks the token server for that and the push goes through."""
    async def scenario() -> int:
        async with RegistryClient(world.server.url, DEV.name, DEV.password) as client:
            pull = "repository:src/base:pull"
            async with client.request("GET", "/v2/src/base/tags/list", pull) as response:
                assert response.status == 200  # the token for pull is cached now
            async with client.request("POST", "/v2/src/base/blobs/uploads/", pull) as response:
                location = response.headers["Location"]
                status = response.status
            async with client.request("DELETE", location, "repository:src/base:pull,push") as response:
                assert response.status == 204
            return status

    mark = len(world.server.log_text())
    assert asyncio.run(scenario()) == 202
    log = world.server.log_text()[mark:]
    sequence = [list(m.groups()) for m in map(ACCESS_LINE.search, log.splitlines()) if m]
    posts = [entry for entry in sequence if entry[:2] == ["POST", "/v2/src/base/blobs/uploads/"]]
    assert [entry[2] for entry in posts] == ["401", "202"], sequence
    assert any(entry[0] == "GET" and entry[1].startswith("/auth/token") and "push" in entry[1]
               for entry in sequence), sequence


def test_client_library_mounts_with_the_scopes_from_the_challenge(world: World) -> None:
    """A client that takes its scopes from the challenge alone (no scope of its own) gets one
    token for the target and the source, and the blob is mounted, not uploaded."""
    digest = sha256(world.base_blob)

    async def scenario() -> tuple[int, str]:
        async with RegistryClient(world.server.url, DEV.name, DEV.password) as client:
            path = f"/v2/dst/client-mount/blobs/uploads/?mount={digest}&from=src/base"
            async with client.request("POST", path, "") as response:
                return response.status, response.headers.get("Docker-Content-Digest", "")

    assert asyncio.run(scenario()) == (201, digest)
    assert world.store.linked("dst/client-mount", digest)


def test_client_library_reports_a_denial(world: World) -> None:
    """viewer may only pull src/*: the token server grants no push, the retry is 401 again, and the
    client gives up with UNAUTHORIZED instead of looping."""
    async def scenario() -> UpstreamError:
        async with RegistryClient(world.server.url, VIEWER.name, VIEWER.password) as client:
            with pytest.raises(UpstreamError) as caught:
                async with client.request("POST", "/v2/src/base/blobs/uploads/", ""):
                    pass
            return caught.value

    error = asyncio.run(scenario())
    assert error.status == 401, error
    assert world.store.uploads("src/base") == 0


# -- 403 is for callers identified without a token -------------------------------------------------

def test_basic_credentials_refused_by_the_policy_are_403(world: World) -> None:
    response = post_blob(world.client, "src/base", b"viewer push " + uuid.uuid4().bytes,
                         basic(VIEWER.name, VIEWER.password))
    assert response.status_code == 403 and response.json()["errors"][0]["code"] == "DENIED", \
        describe(response, world.server)
    assert "www-authenticate" not in response.headers
    # The same user's token: 401 insufficient_scope, as Distribution.
    token = world.token(VIEWER, "repository:src/base:pull,push")
    assert granted(token) == {"src/base": ["pull"]}
    response = post_blob(world.client, "src/base", b"viewer push " + uuid.uuid4().bytes, bearer(token))
    assert_insufficient_scope(response, world.server, "repository:src/base:pull,push")


def test_token_endpoint_challenges_with_basic(world: World) -> None:
    """The token endpoint takes basic credentials: its 401 says so (RFC 9110: a 401 carries a challenge)."""
    response = request_token(world.client, DEV.name, secret("wrong"), [scope("src/base")])
    assert response.status_code == 401, describe(response, world.server)
    assert response.headers["www-authenticate"] == 'Basic realm="registry"'

"""Access that must be refused: the right status and JSON error, and nothing written.

Two registries, shared by the module:
- token mode over TLS (self-signed CA) with a policy file: alice owns team-a/*, carol may only
  pull there, bob owns team-b/*, any signed-in account may pull and push ci/*; robots are
  scoped to ci/*;
- basic mode (htpasswd users) with the same policy.

After every refused write the data directory is checked (SQLite rows, blob files) and, where a
repository already had content, an authorized client checks it is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.auth.conftest import (
    AuthRegistry,
    Image,
    Robot,
    Store,
    User,
    access,
    add_accounts,
    assert_bearer_challenge,
    assert_error,
    assert_insufficient_scope,
    basic,
    bearer,
    challenge,
    claims_of,
    describe,
    granted,
    load_private_key,
    make_image,
    post_blob,
    push_image,
    put_manifest,
    raw_request,
    request_token,
    scope,
    secret,
    sha256,
    sign_token,
    token_for,
    write_htpasswd,
)

POLICY = """\
rules:
  - repositories: ["team-a/*"]
    users: [alice]
    actions: [pull, push, delete]
  - repositories: ["team-a/*"]
    users: [carol]
    actions: [pull]
  - repositories: ["team-b/*"]
    users: [bob]
    actions: [pull, push, delete]
  - repositories: ["ci/*"]
    authenticated: true
    actions: [pull, push]
"""

ALICE = User("alice", secret("alice"))
BOB = User("bob", secret("bob"))
CAROL = User("carol", secret("carol"))
CI_READER = Robot("ci-reader", ("ci/*",), actions="pull")


@dataclass
class World:
    server: AuthRegistry
    client: httpx.Client       # no credentials of its own
    store: Store
    secrets: dict[str, str]    # robot username -> secret
    app: Image                 # team-a/app:v1
    ci_app: Image              # ci/app:v1
    bob_img: Image             # team-b/img:v1
    team_a_blob: bytes         # in team-a/src only
    team_b_blob: bytes         # in team-b/secret only

    def token(self, user: User | str, *scopes: str, password: str | None = None) -> str:
        name = user.name if isinstance(user, User) else user
        pw = user.password if isinstance(user, User) else password
        return token_for(self.client, name, pw, *scopes)["token"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("denied-token")
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    # A high failed-login limit: this module checks 401s, the throttle has its own tests.
    args = ["--auth-mode", "token", "--tls-self-signed", "--auth-policy-file", str(policy),
            "--auth-failed-login-limit", "1000"]
    with AuthRegistry(root / "data", args=args) as server:
        accounts = add_accounts(server.data_dir, users=[ALICE, BOB, CAROL], robots=[CI_READER])
        with server.client() as client:
            alice_all = bearer(token_for(client, ALICE.name, ALICE.password, scope("team-a/app", "pull,push,delete"),
                                         scope("team-a/src", "pull,push"), scope("ci/app", "pull,push"))["token"])
            bob_all = bearer(token_for(client, BOB.name, BOB.password, scope("team-b/secret", "pull,push"),
                                       scope("team-b/img", "pull,push"))["token"])
            app = push_image(client, "team-a/app", "v1", alice_all)
            ci_app = push_image(client, "ci/app", "v1", alice_all)
            bob_img = push_image(client, "team-b/img", "v1", bob_all)
            team_a_blob, team_b_blob = b"team-a " + uuid.uuid4().bytes, b"team-b " + uuid.uuid4().bytes
            assert post_blob(client, "team-a/src", team_a_blob, alice_all).status_code == 201
            assert post_blob(client, "team-b/secret", team_b_blob, bob_all).status_code == 201
            yield World(server, client, Store(server.data_dir), accounts.secrets, app, ci_app, bob_img,
                        team_a_blob, team_b_blob)


def alice_can_still_read_app(world: World) -> None:
    """team-a/app is as it was pushed: tag, manifest and both blobs."""
    headers = bearer(world.token(ALICE, scope("team-a/app")))
    got = world.client.get("/v2/team-a/app/manifests/v1", headers={**headers, "Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert got.status_code == 200 and got.content == world.app.manifest, describe(got, world.server)
    for digest in world.app.blobs:
        blob = world.client.head(f"/v2/team-a/app/blobs/{digest}", headers=headers)
        assert blob.status_code == 200, describe(blob, world.server)
    tags = world.client.get("/v2/team-a/app/tags/list", headers=headers)
    assert tags.status_code == 200 and tags.json()["tags"] == ["v1"], describe(tags, world.server)
    assert world.store.uploads("team-a/app") == 0


# -- no credentials ------------------------------------------------------------------------------

def test_base_endpoint_without_credentials_is_401_with_bearer_challenge(world: World) -> None:
    response = world.client.get("/v2/")
    params = assert_bearer_challenge(response, world.server, scope_=None)
    assert params["realm"].startswith("https://"), params  # TLS: the realm is https too


def test_pull_without_credentials_is_401_with_scoped_challenge(world: World) -> None:
    for method in ("GET", "HEAD"):
        response = world.client.request(method, "/v2/team-a/app/manifests/v1")
        assert_bearer_challenge(response, world.server, "repository:team-a/app:pull")
    response = world.client.get(f"/v2/team-a/app/blobs/{world.app.blobs[1]}")
    assert_bearer_challenge(response, world.server, "repository:team-a/app:pull")
    response = world.client.get("/v2/_catalog")
    assert_bearer_challenge(response, world.server, "registry:catalog:*")


def test_push_and_delete_without_credentials_are_401_and_write_nothing(world: World) -> None:
    image = make_image()
    repo = "team-a/anonymous-push"
    response = post_blob(world.client, repo, image.layer)
    assert_bearer_challenge(response, world.server, f"repository:{repo}:pull,push")
    response = world.client.post(f"/v2/{repo}/blobs/uploads/")
    assert_bearer_challenge(response, world.server, f"repository:{repo}:pull,push")
    response = put_manifest(world.client, repo, "v1", image.manifest)
    assert_bearer_challenge(response, world.server, f"repository:{repo}:pull,push")
    world.store.assert_nothing_written(repo, [sha256(image.layer), image.digest])

    response = world.client.delete(f"/v2/team-a/app/manifests/{world.app.digest}")
    assert_bearer_challenge(response, world.server, "repository:team-a/app:pull,delete")
    response = world.client.delete(f"/v2/team-a/app/blobs/{world.app.blobs[1]}")
    assert_bearer_challenge(response, world.server, "repository:team-a/app:pull,delete")
    alice_can_still_read_app(world)


def test_anonymous_token_grants_nothing_without_anonymous_rules(world: World) -> None:
    body = token_for(world.client, None, None, scope("team-a/app", "pull,push"))
    assert granted(body["token"]) == {"team-a/app": []}
    assert "refresh_token" not in body
    image = make_image()
    # An anonymous token authenticates nobody: the plain challenge (no error, RFC 6750 3.1), so
    # clients say "authentication required" and the user logs in; never a bare 403.
    for response, scope_ in ((world.client.get("/v2/team-a/app/tags/list", headers=bearer(body["token"])),
                              "repository:team-a/app:pull"),
                             (world.client.head(f"/v2/team-a/app/blobs/{world.app.blobs[1]}",
                                                headers=bearer(body["token"])), "repository:team-a/app:pull"),
                             (post_blob(world.client, "team-a/app", image.layer, bearer(body["token"])),
                              "repository:team-a/app:pull,push")):
        params = assert_bearer_challenge(response, world.server, scope_)
        assert "error" not in params, params
    world.store.assert_nothing_written("team-a/app", [sha256(image.layer)], repository_existed=True)


# -- wrong credentials ---------------------------------------------------------------------------

def test_wrong_password_is_401_everywhere_and_writes_nothing(world: World) -> None:
    wrong = secret("wrong")
    response = request_token(world.client, ALICE.name, wrong, [scope("team-a/app", "pull,push")])
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    assert "token" not in response.text
    response = world.client.post("/auth/token", data={"grant_type": "password", "username": ALICE.name,
                                                      "password": wrong, "service": "registry",
                                                      "scope": scope("team-a/app", "pull,push")})
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    assert "token" not in response.text
    # Basic credentials straight on the API (token mode accepts them too).
    image = make_image()
    response = post_blob(world.client, "team-a/app", image.layer, basic(ALICE.name, wrong))
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    assert challenge(response)[0] == "Bearer"
    response = put_manifest(world.client, "team-a/app", "wrong-password", image.manifest, basic(ALICE.name, wrong))
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    world.store.assert_nothing_written("team-a/app", [sha256(image.layer)], tag="wrong-password",
                                       repository_existed=True)
    # An unknown user looks the same as a wrong password.
    response = request_token(world.client, "nobody-" + uuid.uuid4().hex[:8], wrong, [scope("team-a/app")])
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    alice_can_still_read_app(world)


def test_overlong_password_is_401_not_500(world: World) -> None:
    """bcrypt looks at 72 bytes at most; a longer password is simply wrong, never a server error."""
    image = make_image()
    for password in ("x" * 73, ALICE.password + "y" * 100, "é" * 40):
        for response in (request_token(world.client, ALICE.name, password, [scope("team-a/app", "pull,push")]),
                         post_blob(world.client, "team-a/app", image.layer, basic(ALICE.name, password)),
                         world.client.post("/auth/token", data={"grant_type": "password", "username": ALICE.name,
                                                                "password": password, "service": "registry"})):
            assert_error(response, 401, "UNAUTHORIZED", world.server)
    world.store.assert_nothing_written("team-a/app", [sha256(image.layer)], repository_existed=True)


@pytest.mark.parametrize("header", ["Basic !!!not-base64!!!", "Basic " + "YWxpY2U=",  # "alice", no colon
                                    "Digest username=alice", "Bearer"])
def test_malformed_credentials_are_401_with_a_challenge(world: World, header: str) -> None:
    response = world.client.get("/v2/team-a/app/tags/list", headers={"Authorization": header})
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    scheme_, params = challenge(response)  # RFC 9110: a 401 carries WWW-Authenticate
    assert scheme_ == "Bearer" and params.get("realm") == f"{world.server.url}/auth/token", params


# -- tokens that must not be accepted ------------------------------------------------------------

def test_expired_token_is_401_and_writes_nothing(world: World) -> None:
    key = load_private_key(world.server.token_key_file)
    grants = access("team-a/app", "pull", "push")
    # Control: the same recipe with a future expiry is accepted, so only the expiry differs.
    fresh = sign_token(key, "ES256", ALICE.name, grants, expires_in=300)
    control = b"control " + uuid.uuid4().bytes
    response = post_blob(world.client, "team-a/app", control, bearer(fresh))
    assert response.status_code == 201, describe(response, world.server)

    expired = sign_token(key, "ES256", ALICE.name, grants, expires_in=-120)  # well past the 30 s leeway
    image = make_image()
    for response in (world.client.get("/v2/team-a/app/tags/list", headers=bearer(expired)),
                     post_blob(world.client, "team-a/app", image.layer, bearer(expired)),
                     put_manifest(world.client, "team-a/app", "expired", image.manifest, bearer(expired))):
        assert_error(response, 401, "UNAUTHORIZED", world.server)
        scheme_, params = challenge(response)
        assert scheme_ == "Bearer" and params.get("error") == "invalid_token", params
    world.store.assert_nothing_written("team-a/app", [sha256(image.layer)], tag="expired", repository_existed=True)


FOREIGN_TOKENS = ["es256-other-key", "es384-other-key", "rs256-other-key", "alg-none", "hs256-keyed-with-public-key",
                  "tampered-payload", "own-key-wrong-issuer", "own-key-wrong-audience"]


def _foreign_token(world: World, kind: str) -> str:
    grants = access("team-a/app", "pull", "push", "delete")
    own_key = load_private_key(world.server.token_key_file)
    if kind == "es256-other-key":
        return sign_token(ec.generate_private_key(ec.SECP256R1()), "ES256", ALICE.name, grants)
    if kind == "es384-other-key":
        return sign_token(ec.generate_private_key(ec.SECP384R1()), "ES384", ALICE.name, grants)
    if kind == "rs256-other-key":
        return sign_token(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", ALICE.name, grants)
    if kind == "alg-none":
        return jwt.encode({"iss": "registry", "sub": ALICE.name, "aud": "registry", "exp": int(time.time()) + 300,
                           "access": grants}, None, algorithm="none")
    if kind == "hs256-keyed-with-public-key":  # the algorithm-confusion attack
        public_pem = own_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
        payload = base64.urlsafe_b64encode(json.dumps(
            {"iss": "registry", "sub": ALICE.name, "aud": "registry", "exp": int(time.time()) + 300,
             "access": grants}).encode()).decode().rstrip("=")
        mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    if kind == "tampered-payload":  # a real pull-only token rewritten to grant more: the signature no longer fits
        real = world.token(ALICE, scope("team-a/app", "pull"))
        head, _, rest = real.partition(".")
        _, _, signature = rest.partition(".")
        forged = claims_of(real) | {"access": grants}
        payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        return f"{head}.{payload}.{signature}"
    if kind == "own-key-wrong-issuer":
        return sign_token(own_key, "ES256", ALICE.name, grants, issuer="someone-else")
    if kind == "own-key-wrong-audience":
        return sign_token(own_key, "ES256", ALICE.name, grants, audience="another-registry")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", FOREIGN_TOKENS)
def test_token_not_issued_by_this_registry_is_401_and_writes_nothing(world: World, kind: str) -> None:
    token = _foreign_token(world, kind)
    image = make_image()
    for response in (world.client.get("/v2/team-a/app/tags/list", headers=bearer(token)),
                     post_blob(world.client, "team-a/app", image.layer, bearer(token)),
                     world.client.delete(f"/v2/team-a/app/manifests/{world.app.digest}", headers=bearer(token))):
        assert_error(response, 401, "UNAUTHORIZED", world.server)
        scheme_, params = challenge(response)
        assert scheme_ == "Bearer" and params.get("error") == "invalid_token", params
    world.store.assert_nothing_written("team-a/app", [sha256(image.layer)], repository_existed=True)
    alice_can_still_read_app(world)


def test_refresh_and_access_tokens_are_not_interchangeable(world: World) -> None:
    body = token_for(world.client, ALICE.name, ALICE.password, scope("team-a/app", "pull,push"), offline=True)
    refresh = body["refresh_token"]
    response = world.client.get("/v2/team-a/app/tags/list", headers=bearer(refresh))
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    response = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["token"],
                                                      "service": "registry", "scope": scope("team-a/app")})
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    # Control: the refresh token does work where it belongs.
    response = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                                      "service": "registry", "scope": scope("team-a/app")})
    assert response.status_code == 200, describe(response, world.server)
    assert granted(response.json()["token"]) == {"team-a/app": ["pull"]}


# -- tokens used beyond what they carry: 401 insufficient_scope ----------------------------------
# Distribution answers a valid token without the scope with 401 and error="insufficient_scope",
# whether or not a token with the scope could be had (registry/auth/token/accesscontroller.go);
# docker and containers/image turn that into "denied: requested access to the resource is denied".

def test_token_for_one_repository_is_denied_on_another(world: World) -> None:
    token = world.token(ALICE, scope("team-a/app", "pull,push"))
    assert granted(token) == {"team-a/app": ["pull", "push"]}
    image = make_image()
    # The policy would let alice into team-a/other (a new token would do), not into team-b/secret
    # (no token would): the answer is the same, as Distribution's.
    for repo in ("team-a/other", "team-b/secret"):
        response = world.client.get(f"/v2/{repo}/tags/list", headers=bearer(token))
        assert_insufficient_scope(response, world.server, f"repository:{repo}:pull")
        response = world.client.head(f"/v2/{repo}/manifests/v1", headers=bearer(token))
        assert_insufficient_scope(response, world.server, f"repository:{repo}:pull")  # a HEAD: the header says it
        response = post_blob(world.client, repo, image.layer, bearer(token))
        assert_insufficient_scope(response, world.server, f"repository:{repo}:pull,push")
        response = world.client.post(f"/v2/{repo}/blobs/uploads/", headers=bearer(token))
        assert_insufficient_scope(response, world.server, f"repository:{repo}:pull,push")
        response = put_manifest(world.client, repo, "v1", image.manifest, bearer(token))
        assert_insufficient_scope(response, world.server, f"repository:{repo}:pull,push")
    world.store.assert_nothing_written("team-a/other", [sha256(image.layer), image.digest])
    world.store.assert_nothing_written("team-b/secret", [sha256(image.layer)], tag="v1", repository_existed=True)
    response = world.client.get(f"/v2/team-b/secret/blobs/{sha256(world.team_b_blob)}", headers=bearer(token))
    assert_insufficient_scope(response, world.server, "repository:team-b/secret:pull")
    assert response.json()["errors"][0]["detail"] == [{"Type": "repository", "Name": "team-b/secret",
                                                       "Action": "pull"}]


def test_pull_only_token_cannot_push_or_delete(world: World) -> None:
    token = world.token(ALICE, scope("team-a/app", "pull"))
    assert granted(token) == {"team-a/app": ["pull"]}
    headers = bearer(token)
    response = world.client.get("/v2/team-a/app/manifests/v1", headers=headers)
    assert response.status_code == 200, describe(response, world.server)  # control: pull works

    image = make_image()
    push, delete = "repository:team-a/app:pull,push", "repository:team-a/app:pull,delete"
    refused = [
        (post_blob(world.client, "team-a/app", image.layer, headers), push),
        (world.client.post("/v2/team-a/app/blobs/uploads/", headers=headers), push),
        (put_manifest(world.client, "team-a/app", "pushed-with-pull-token", image.manifest, headers), push),
        (put_manifest(world.client, "team-a/app", "v1", image.manifest, headers), push),  # overwrite a tag
        (world.client.delete(f"/v2/team-a/app/manifests/{world.app.digest}", headers=headers), delete),
        (world.client.delete("/v2/team-a/app/manifests/v1", headers=headers), delete),
        (world.client.delete(f"/v2/team-a/app/blobs/{world.app.blobs[1]}", headers=headers), delete),
    ]
    for response, needed in refused:
        assert_insufficient_scope(response, world.server, needed)
    world.store.assert_nothing_written("team-a/app", [sha256(image.layer)], tag="pushed-with-pull-token",
                                       repository_existed=True)
    alice_can_still_read_app(world)


def test_policy_caps_what_a_token_carries(world: World) -> None:
    # carol asks for everything; the policy lets her pull team-a/* and nothing in team-b/*.
    token = world.token(CAROL, scope("team-a/app", "pull,push,delete"), scope("team-b/img", "pull,push"))
    assert granted(token) == {"team-a/app": ["pull"], "team-b/img": []}
    image = make_image()
    response = post_blob(world.client, "team-a/app", image.layer, bearer(token))
    assert_insufficient_scope(response, world.server, "repository:team-a/app:pull,push")
    response = world.client.delete(f"/v2/team-a/app/manifests/{world.app.digest}", headers=bearer(token))
    assert_insufficient_scope(response, world.server, "repository:team-a/app:pull,delete")
    response = world.client.get("/v2/team-b/img/manifests/v1", headers=bearer(token))
    assert_insufficient_scope(response, world.server, "repository:team-b/img:pull")
    # Asking again gets the same token: the policy, not the token, is what says no.
    assert granted(world.token(CAROL, scope("team-a/app", "pull,push"))) == {"team-a/app": ["pull"]}
    # The same caller with basic credentials (no token involved): the policy's answer, 403 DENIED.
    response = post_blob(world.client, "team-a/app", image.layer, basic(CAROL.name, CAROL.password))
    assert_error(response, 403, "DENIED", world.server)
    assert "www-authenticate" not in response.headers
    world.store.assert_nothing_written("team-a/app", [sha256(image.layer)], repository_existed=True)
    alice_can_still_read_app(world)


def test_catalog_lists_only_what_the_caller_may_pull(world: World) -> None:
    everything = {"team-a/app", "ci/app", "team-b/img"}
    assert everything <= world.store.repositories()
    expected = {CAROL.name: {"team-a/app", "ci/app"}, BOB.name: {"team-b/img", "ci/app"}}
    for user in (CAROL, BOB):
        token = world.token(user, "registry:catalog:*")
        response = world.client.get("/v2/_catalog", headers=bearer(token))
        assert response.status_code == 200, describe(response, world.server)
        listed = set(response.json()["repositories"])
        assert listed & everything == expected[user.name], listed
    robot = CI_READER.username
    token = world.token(robot, "registry:catalog:*", password=world.secrets[robot])
    response = world.client.get("/v2/_catalog", headers=bearer(token))
    assert response.status_code == 200, describe(response, world.server)
    assert set(response.json()["repositories"]) & everything == {"ci/app"}


# -- cross-repository mount ----------------------------------------------------------------------

def _mount(world: World, target: str, digest: str, source: str, token: str) -> httpx.Response:
    return world.client.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source},
                             headers=bearer(token))


def test_mount_from_an_unreadable_repository_is_a_plain_upload_session(world: World) -> None:
    target = "team-a/mount-target"
    secret_digest = sha256(world.team_b_blob)
    token = world.token(ALICE, scope(target, "pull,push,delete"), scope("team-b/secret", "pull"))
    assert granted(token) == {target: ["delete", "pull", "push"], "team-b/secret": []}
    response = _mount(world, target, secret_digest, "team-b/secret", token)
    assert response.status_code == 202, describe(response, world.server)
    assert "docker-content-digest" not in response.headers
    location = response.headers["location"]
    assert location.startswith(f"/v2/{target}/blobs/uploads/"), location
    # Indistinguishable from asking for a digest nobody has: the source's content is not revealed.
    unknown = _mount(world, target, sha256(uuid.uuid4().bytes), "team-b/secret", token)
    assert unknown.status_code == 202 and sorted(unknown.headers) == sorted(response.headers), describe(unknown)

    read = world.client.get(f"/v2/{target}/blobs/{secret_digest}", headers=bearer(token))
    assert_error(read, 404, "BLOB_UNKNOWN", world.server)
    assert not world.store.linked(target, secret_digest)
    assert world.store.linked("team-b/secret", secret_digest)  # the source is untouched
    for session in (location, unknown.headers["location"]):
        assert world.client.delete(session, headers=bearer(token)).status_code == 204


def test_mount_needs_pull_on_the_source_in_the_token_itself(world: World) -> None:
    # alice may read team-a/src by policy, but this token does not carry it.
    target = "team-a/mount-target-2"
    digest = sha256(world.team_a_blob)
    token = world.token(ALICE, scope(target, "pull,push,delete"))  # delete: to cancel the session after
    response = _mount(world, target, digest, "team-a/src", token)
    assert response.status_code == 202, describe(response, world.server)
    assert not world.store.linked(target, digest)
    assert world.client.delete(response.headers["location"], headers=bearer(token)).status_code == 204


def test_mount_from_a_readable_repository_links_the_blob(world: World) -> None:
    target = "team-a/mount-target-3"
    digest = sha256(world.team_a_blob)
    token = world.token(ALICE, scope(target, "pull,push"), scope("team-a/src", "pull"))
    response = _mount(world, target, digest, "team-a/src", token)
    assert response.status_code == 201, describe(response, world.server)
    assert response.headers["docker-content-digest"] == digest
    assert response.headers["location"] == f"/v2/{target}/blobs/{digest}"
    read = world.client.get(f"/v2/{target}/blobs/{digest}", headers=bearer(token))
    assert read.status_code == 200 and read.content == world.team_a_blob, describe(read, world.server)


# -- robots --------------------------------------------------------------------------------------

def test_robot_outside_its_repository_pattern_is_denied(world: World) -> None:
    robot, robot_secret = CI_READER.username, world.secrets[CI_READER.username]
    token = world.token(robot, scope("team-a/app", "pull"), scope("ci/app", "pull,push"), password=robot_secret)
    # Its own scope (ci/*, pull) caps the policy (ci/* pull,push for any signed-in account).
    assert granted(token) == {"team-a/app": [], "ci/app": ["pull"]}
    response = world.client.get("/v2/ci/app/manifests/v1", headers=bearer(token))
    assert response.status_code == 200, describe(response, world.server)  # control

    image = make_image()
    # With its token: 401 insufficient_scope (the token lacks the scope); with its secret as basic
    # credentials: 403 DENIED (signed in, and the policy with its own scope says no).
    for headers in (bearer(token), basic(robot, robot_secret)):
        def refused(response: httpx.Response, scope_: str, sent: dict[str, str] = headers) -> None:
            if sent["Authorization"].startswith("Bearer"):
                assert_insufficient_scope(response, world.server, scope_)
            else:
                assert_error(response, 403, "DENIED", world.server)

        refused(world.client.get("/v2/team-a/app/manifests/v1", headers=headers), "repository:team-a/app:pull")
        refused(post_blob(world.client, "ci/app", image.layer, headers), "repository:ci/app:pull,push")
        refused(put_manifest(world.client, "ci/app", "robot-push", image.manifest, headers),
                "repository:ci/app:pull,push")
        refused(post_blob(world.client, "ci/new-repo", image.layer, headers), "repository:ci/new-repo:pull,push")
    world.store.assert_nothing_written("ci/app", [sha256(image.layer)], tag="robot-push", repository_existed=True)
    world.store.assert_nothing_written("ci/new-repo", [sha256(image.layer)])


@pytest.mark.parametrize("name", ["ci/../team-a/app", "ci/%2e%2e/team-a/app", "ci/x/../../team-a/app"])
def test_robot_cannot_leave_its_pattern_with_dot_segments(world: World, name: str) -> None:
    # `ci/*` matches "ci/../team-a/app" as a string: the name itself must be refused.
    robot, robot_secret = CI_READER.username, world.secrets[CI_READER.username]
    response = raw_request(world.server, "GET", f"/v2/{name}/manifests/v1", headers=basic(robot, robot_secret))
    assert response.status == 400 and response.codes == ["NAME_INVALID"], (response.status, response.body[:500])
    assert world.app.manifest not in response.body


@dataclass
class ExpiredRobot:
    robot: Robot
    secret: str
    access_token: str
    refresh_token: str


@pytest.fixture(scope="module")
def expired_robot(world: World) -> ExpiredRobot:
    """A robot valid for 4 s: used while valid (so its credentials are right), then left to expire."""
    robot = Robot("ci-short", ("ci/*",), actions="pull,push", expires="4s")
    secret_ = add_accounts(world.server.data_dir, robots=[robot]).secrets[robot.username]
    created = time.time()  # expires_at <= created + 4
    body = token_for(world.client, robot.username, secret_, scope("ci/app", "pull,push"), offline=True)
    assert granted(body["token"]) == {"ci/app": ["pull", "push"]}
    assert body["expires_in"] <= 4, body  # never outlives the robot
    assert claims_of(body["refresh_token"])["exp"] <= created + 4
    response = world.client.get("/v2/ci/app/tags/list", headers=bearer(body["token"]))
    assert response.status_code == 200, describe(response, world.server)
    response = world.client.get("/v2/ci/app/tags/list", headers=basic(robot.username, secret_))
    assert response.status_code == 200, describe(response, world.server)
    time.sleep(max(0.0, created + 4 + 1 - time.time()))
    return ExpiredRobot(robot, secret_, body["token"], body["refresh_token"])


def test_expired_robot_cannot_sign_in(world: World, expired_robot: ExpiredRobot) -> None:
    name, secret_ = expired_robot.robot.username, expired_robot.secret
    response = request_token(world.client, name, secret_, [scope("ci/app", "pull")])
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    response = world.client.post("/auth/token", data={"grant_type": "password", "username": name,
                                                      "password": secret_, "service": "registry"})
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    image = make_image()
    response = world.client.get("/v2/ci/app/tags/list", headers=basic(name, secret_))
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    response = post_blob(world.client, "ci/app", image.layer, basic(name, secret_))
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    world.store.assert_nothing_written("ci/app", [sha256(image.layer)], repository_existed=True)


def test_expired_robot_refresh_token_is_refused(world: World, expired_robot: ExpiredRobot) -> None:
    response = world.client.post("/auth/token", data={"grant_type": "refresh_token", "service": "registry",
                                                      "refresh_token": expired_robot.refresh_token,
                                                      "scope": scope("ci/app", "pull")})
    assert_error(response, 401, "UNAUTHORIZED", world.server)


def test_token_issued_to_a_robot_does_not_outlive_it(world: World, expired_robot: ExpiredRobot) -> None:
    """The token's exp is the robot's expiry; past it the token must not work any more."""
    assert claims_of(expired_robot.access_token)["exp"] < time.time()
    image = make_image()
    headers = bearer(expired_robot.access_token)
    response = world.client.get("/v2/ci/app/tags/list", headers=headers)
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    response = post_blob(world.client, "ci/app", image.layer, headers)
    assert_error(response, 401, "UNAUTHORIZED", world.server)
    world.store.assert_nothing_written("ci/app", [sha256(image.layer)], repository_existed=True)


# -- basic mode ----------------------------------------------------------------------------------

B_ALICE = User("alice", secret("b-alice"))
B_BOB = User("bob", secret("b-bob"))


@dataclass
class BasicWorld:
    server: AuthRegistry
    client: httpx.Client
    store: Store
    alice_blob: bytes  # in team-a/src
    bob_blob: bytes    # in team-b/secret


@pytest.fixture(scope="module")
def basic_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BasicWorld]:
    root = tmp_path_factory.mktemp("denied-basic")
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    htpasswd = write_htpasswd(root / "htpasswd", {B_ALICE.name: B_ALICE.password, B_BOB.name: B_BOB.password})
    args = ["--auth-mode", "basic", "--auth-htpasswd", str(htpasswd), "--auth-policy-file", str(policy),
            "--auth-failed-login-limit", "1000"]
    with AuthRegistry(root / "data", args=args) as server, server.client() as client:
        alice_blob, bob_blob = b"alice " + uuid.uuid4().bytes, b"bob " + uuid.uuid4().bytes
        response = post_blob(client, "team-a/src", alice_blob, basic(B_ALICE.name, B_ALICE.password))
        assert response.status_code == 201, describe(response, server)
        response = post_blob(client, "team-b/secret", bob_blob, basic(B_BOB.name, B_BOB.password))
        assert response.status_code == 201, describe(response, server)
        yield BasicWorld(server, client, Store(server.data_dir), alice_blob, bob_blob)


def _assert_basic_challenge(response: httpx.Response, server: AuthRegistry) -> None:
    assert_error(response, 401, "UNAUTHORIZED", server)
    scheme_, params = challenge(response)
    assert scheme_ == "Basic" and params.get("realm") == "registry", response.headers.get("www-authenticate")


def test_basic_mode_without_or_with_wrong_credentials_is_401_with_basic_challenge(basic_world: BasicWorld) -> None:
    c = basic_world.client
    image = make_image()
    for headers in ({}, basic(B_ALICE.name, secret("wrong")), basic("nobody", secret("wrong"))):
        _assert_basic_challenge(c.get("/v2/", headers=headers), basic_world.server)
        _assert_basic_challenge(c.get(f"/v2/team-a/src/blobs/{sha256(basic_world.alice_blob)}", headers=headers),
                                basic_world.server)
        _assert_basic_challenge(post_blob(c, "team-a/basic-push", image.layer, headers), basic_world.server)
        _assert_basic_challenge(put_manifest(c, "team-a/basic-push", "v1", image.manifest, headers),
                                basic_world.server)
    basic_world.store.assert_nothing_written("team-a/basic-push", [sha256(image.layer), image.digest])
    response = c.get("/v2/", headers=basic(B_ALICE.name, B_ALICE.password))
    assert response.status_code == 200, describe(response, basic_world.server)  # control


def test_basic_mode_policy_denies_with_403(basic_world: BasicWorld) -> None:
    c = basic_world.client
    bob = basic(B_BOB.name, B_BOB.password)
    image = make_image()
    response = post_blob(c, "team-a/src", image.layer, bob)
    assert_error(response, 403, "DENIED", basic_world.server)
    response = c.get(f"/v2/team-a/src/blobs/{sha256(basic_world.alice_blob)}", headers=bob)
    assert_error(response, 403, "DENIED", basic_world.server)
    response = c.delete(f"/v2/team-a/src/blobs/{sha256(basic_world.alice_blob)}", headers=bob)
    assert_error(response, 403, "DENIED", basic_world.server)
    basic_world.store.assert_nothing_written("team-a/src", [sha256(image.layer)], repository_existed=True)
    assert basic_world.store.linked("team-a/src", sha256(basic_world.alice_blob))


def test_basic_mode_refuses_bearer_tokens_and_has_no_token_server(basic_world: BasicWorld) -> None:
    c = basic_world.client
    # Even one signed by a key of the right kind: basic mode trusts no token.
    token = sign_token(ec.generate_private_key(ec.SECP256R1()), "ES256", B_ALICE.name,
                       access("team-a/src", "pull", "push"))
    response = c.get(f"/v2/team-a/src/blobs/{sha256(basic_world.alice_blob)}", headers=bearer(token))
    _assert_basic_challenge(response, basic_world.server)
    response = request_token(c, B_ALICE.name, B_ALICE.password, [scope("team-a/src")])
    assert response.status_code == 404, describe(response, basic_world.server)
    assert_error(response, 404, "UNSUPPORTED")


@pytest.mark.parametrize("header", ["Basic !!!not-base64!!!", "Basic YWxpY2U=", "Digest username=alice"])
def test_basic_mode_malformed_credentials_are_401_with_a_challenge(basic_world: BasicWorld, header: str) -> None:
    response = basic_world.client.get("/v2/", headers={"Authorization": header})
    _assert_basic_challenge(response, basic_world.server)


def test_basic_mode_mount_from_unreadable_repository_is_a_plain_upload(basic_world: BasicWorld) -> None:
    c = basic_world.client
    alice = basic(B_ALICE.name, B_ALICE.password)
    bob_digest, alice_digest = sha256(basic_world.bob_blob), sha256(basic_world.alice_blob)
    response = c.post("/v2/team-a/basic-mount/blobs/uploads/", params={"mount": bob_digest, "from": "team-b/secret"},
                      headers=alice)
    assert response.status_code == 202, describe(response, basic_world.server)
    assert "docker-content-digest" not in response.headers
    read = c.get(f"/v2/team-a/basic-mount/blobs/{bob_digest}", headers=alice)
    assert_error(read, 404, "BLOB_UNKNOWN", basic_world.server)
    assert not basic_world.store.linked("team-a/basic-mount", bob_digest)
    assert c.delete(response.headers["location"], headers=alice).status_code == 204

    response = c.post("/v2/team-a/basic-mount/blobs/uploads/", params={"mount": alice_digest, "from": "team-a/src"},
                      headers=alice)
    assert response.status_code == 201, describe(response, basic_world.server)
    read = c.get(f"/v2/team-a/basic-mount/blobs/{alice_digest}", headers=alice)
    assert read.status_code == 200 and read.content == basic_world.alice_blob

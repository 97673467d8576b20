"""Hostile credentials and token requests: every one a clean 4xx with the spec's JSON, never a 500.

Authorization headers go out as raw bytes over a socket (non-ASCII, bytes that are not UTF-8,
wrong segment counts, long values below the header limit). Choices, where the protocol leaves room:
- Malformed credentials of any shape are 401 with the challenge, not 400: Distribution answers
  every Authorization it cannot use with its challenge (registry/auth/token/accesscontroller.go:
  no usable `Bearer` -> ErrTokenRequired, a token that does not parse -> invalid_token), and a
  401 with WWW-Authenticate is what makes a client ask for credentials again; a 400 would end
  the exchange. A Bearer that is not a valid token gets error="invalid_token" (RFC 6750 3.1);
  Basic and other schemes get the plain challenge.
- The token endpoint refuses bad parameters with 400 (UNSUPPORTED, or NAME_INVALID for a
  repository scope whose name is invalid), its bad credentials with 401 and a Basic challenge.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.auth.conftest import (
    AuthRegistry,
    RawResponse,
    Store,
    User,
    add_accounts,
    bearer,
    challenge,
    connect,
    describe,
    granted,
    read_response,
    scope,
    secret,
    token_for,
)

DEV = User("dev", secret("dev"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    root = tmp_path_factory.mktemp("auth-input")
    # No failed-login limit to speak of: this module sends many wrong credentials on purpose.
    with AuthRegistry(root / "data", args=["--auth-mode", "token", "--auth-failed-login-limit", "100000"]) as registry:
        add_accounts(registry.data_dir, users=[DEV])
        yield registry


def raw(server: AuthRegistry, method: str, target: str, headers: list[tuple[bytes, bytes]] = (),
        body: bytes = b"") -> RawResponse:
    """One request, bytes as given (http.client and httpx would refuse or re-encode them)."""
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: " + server.host.encode(), b"Connection: close",
             f"Content-Length: {len(body)}".encode()]
    lines += [name + b": " + value for name, value in headers]
    with connect(server, timeout=30) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        response = read_response(sock, time.monotonic() + 30)
    assert response is not None, f"{method} {target}: no answer\n{server.log_tail(20)}"
    return response


def error_code(response: RawResponse) -> str:
    assert response.headers.get("content-type", "").startswith("application/json"), (response.status, response.body)
    errors = json.loads(response.body)["errors"]
    assert errors and all(isinstance(e["message"], str) for e in errors), errors
    return errors[0]["code"]


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


BASIC = {
    "utf8-not-base64": b"Basic \xc3\xa9\xc3\xa9",  # the 500 of the issue: b64decode of non-ASCII
    "not-utf8": b"Basic \xff\xfe\xfd",
    "base64-of-not-utf8": b"Basic " + b64(b"\xff\xfe:\xff"),
    "unknown-non-ascii-user": b"Basic " + b64("é:é".encode()),
    "punctuation": b"Basic !!!",
    "empty": b"Basic ",
    "scheme-only": b"Basic",
    "no-colon": b"Basic " + b64(b"alice"),
    "empty-user": b"Basic " + b64(b":pw"),
    "space-inside": b"Basic YWxp Y2U6cHc=",
    "long": b"Basic " + b"A" * 12000,
    "long-password": b"Basic " + b64(b"dev:" + b"p" * 6000),
    "nul-in-name": b"Basic " + b64(b"d\x00ev:pw"),
    "control-chars": b"Basic " + b64(b"dev\r\n:pw\x07"),
    "upper-case-scheme": b"BASIC " + b64(b"nobody:pw"),
    "padding-only": b"Basic ====",
}
BEARER = {
    "scheme-only": b"Bearer",
    "empty": b"Bearer ",
    "one-segment": b"Bearer x",
    "two-segments": b"Bearer a.b",
    "four-segments": b"Bearer a.b.c.d",
    "dots": b"Bearer ...",
    "utf8": b"Bearer \xc3\xa9.\xc3\xa9.\xc3\xa9",
    "not-utf8": b"Bearer \xff\xfe.\xfd.\xfc",
    "long": b"Bearer " + b"x" * 12000,
    "header-not-json": b"Bearer " + base64.urlsafe_b64encode(b"{not json").rstrip(b"=") + b".e30.c2ln",
    "header-a-list": b"Bearer " + base64.urlsafe_b64encode(b"[1,2]").rstrip(b"=") + b".e30.c2ln",
    "payload-not-json": b"Bearer eyJhbGciOiJFUzI1NiJ9." + base64.urlsafe_b64encode(b"\xff\xfe").rstrip(b"=") + b".c2ln",
    "alg-none": b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJkZXYifQ.",
    "huge-kid": b"Bearer " + base64.urlsafe_b64encode(json.dumps({"alg": "ES256", "kid": "k" * 6000}).encode())
                .rstrip(b"=") + b".e30.c2ln",
    "repeated-prefix": b"Bearer " + b"eyJ" * 3000,
}
OTHER = {
    "negotiate": b"Negotiate abc",
    "binary": b"\xff\xfe",
    "colon": b":",
    "digest": b"Digest username=dev",
    "token": b"Token abc",
}
HEADERS = {**{f"basic-{k}": v for k, v in BASIC.items()}, **{f"bearer-{k}": v for k, v in BEARER.items()},
           **{f"other-{k}": v for k, v in OTHER.items()}}


@pytest.mark.parametrize("name", list(HEADERS))
def test_malformed_authorization_is_401_with_the_challenge(server: AuthRegistry, name: str) -> None:
    header = HEADERS[name]
    for method, target, scope_ in (("GET", "/v2/team/app/tags/list", "repository:team/app:pull"),
                                   ("POST", "/v2/team/app/blobs/uploads/", "repository:team/app:pull,push"),
                                   ("GET", "/v2/", None)):
        response = raw(server, method, target, [(b"Authorization", header)])
        detail = f"{name}: {method} {target} -> {response.status} {response.body[:300]!r}"
        assert response.status == 401 and error_code(response) == "UNAUTHORIZED", detail
        value = response.headers.get("www-authenticate", "")
        assert value.startswith(f'Bearer realm="http://{server.host}/auth/token",service="registry"'), detail
        if scope_:
            assert f'scope="{scope_}"' in value, detail
        if name.startswith("bearer-"):
            assert 'error="invalid_token"' in value, detail
        else:
            assert "error=" not in value, detail
    assert Store(server.data_dir).uploads() == 0


@pytest.mark.parametrize("name", list(BASIC))
def test_malformed_basic_credentials_at_the_token_endpoint_are_401(server: AuthRegistry, name: str) -> None:
    response = raw(server, "GET", "/auth/token?service=registry&scope=repository:team/app:pull",
                   [(b"Authorization", BASIC[name])])
    assert response.status == 401 and error_code(response) == "UNAUTHORIZED", (name, response.status, response.body)
    assert response.headers.get("www-authenticate") == 'Basic realm="registry"', response.headers


@pytest.mark.parametrize("host", [b'a"b', "é".encode(), b"a\\b", b"[::1", b"x" * 2000])
def test_odd_host_headers_still_give_a_well_formed_challenge(server: AuthRegistry, host: bytes) -> None:
    """The default realm is built from Host: quotes and backslashes are escaped, never a 500."""
    with connect(server, timeout=30) as sock:
        sock.sendall(b"GET /v2/team/app/tags/list HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
        response = read_response(sock, time.monotonic() + 30)
    assert response is not None and response.status in (400, 401), response
    if response.status == 401:
        value = response.headers["www-authenticate"]
        assert value.startswith('Bearer realm="') and value.endswith('scope="repository:team/app:pull"'), value
        assert '"b' not in value.replace('\\"', ""), value  # every quote inside a value is escaped


# -- the token endpoint's own parameters ------------------------------------------------------------

MANY = "&".join(f"scope=repository:many/r{i}:pull" for i in range(101))
BIG_TOKEN = "&".join(f"scope=repository:big/{'n' * 200}{i}:pull" for i in range(60))
REPEATED = "&".join(["scope=repository:rep/app:pull", "scope=repository:rep/app:push"] * 40)

TOKEN_QUERIES = [
    # (query string, expected status, expected error code or None for a token)
    ("scope=%FF", 400, "UNSUPPORTED"),
    ("scope=repository:%C3%A9:pull", 400, "NAME_INVALID"),
    ("scope=repository", 400, "UNSUPPORTED"),
    ("scope=repository::pull", 400, "UNSUPPORTED"),
    ("scope=:::", 400, "UNSUPPORTED"),
    ("scope=repository:a:pull:push", 400, "NAME_INVALID"),
    ("scope=repository:Upper:pull", 400, "NAME_INVALID"),
    ("scope=repository:a/../b:pull", 400, "NAME_INVALID"),
    ("scope=repository:a:pull%00", 400, "UNSUPPORTED"),
    ("scope=repository:a%0D%0Ab:pull", 400, "UNSUPPORTED"),
    ("scope=REPOSITORY:a:pull", 400, "UNSUPPORTED"),
    ("scope=repository:a:PULL", 400, "UNSUPPORTED"),
    ("scope=repository:" + "a" * 600 + ":pull", 400, "UNSUPPORTED"),
    ("scope=repository:" + "a" * 300 + ":pull", 400, "NAME_INVALID"),
    ("scope=repository:a:pull&scope=%22%3E%3Cscript%3E", 400, "UNSUPPORTED"),
    (MANY, 400, "UNSUPPORTED"),
    (BIG_TOKEN, 400, "UNSUPPORTED"),
    ("service=%FF", 400, "DENIED"),
    ("service=another-registry", 400, "DENIED"),
    ("scope=registry:catalog:*", 200, None),
    ("scope=repository(plugin):a/b:pull", 200, None),
    ("scope=repository:a:fly,pull", 200, None),
    ("scope=", 200, None),
    ("scope=%20%20", 200, None),
    ("offline_token=%FF&client_id=%C3%A9&account=%00", 200, None),
    (REPEATED, 200, None),
]


@pytest.mark.parametrize("query,status,code", TOKEN_QUERIES, ids=[q[:40] for q, _, _ in TOKEN_QUERIES])
def test_token_endpoint_parameters(server: AuthRegistry, query: str, status: int, code: str | None) -> None:
    credentials = b"Basic " + b64(f"{DEV.name}:{DEV.password}".encode())
    response = raw(server, "GET", f"/auth/token?{query}", [(b"Authorization", credentials)])
    detail = f"{query[:80]} -> {response.status} {response.body[:300]!r}"
    assert response.status == status, detail
    if code is not None:
        assert error_code(response) == code, detail
    else:
        assert json.loads(response.body)["token"], detail


def test_repeated_scopes_give_one_grant(server: AuthRegistry) -> None:
    with server.client() as client:
        response = client.get(f"/auth/token?{REPEATED}", auth=(DEV.name, DEV.password))
        assert response.status_code == 200, describe(response, server)
        assert granted(response.json()["token"]) == {"rep/app": ["pull", "push"]}


FORMS = [
    # (content type, body, expected status, expected code)
    ("application/x-www-form-urlencoded", b"grant_type=password&username=\xff\xfe&password=x", 400, "UNSUPPORTED"),
    ("application/x-www-form-urlencoded", b"grant_type=password&username=%FF&password=x", 401, "UNAUTHORIZED"),
    ("application/x-www-form-urlencoded", b"username=dev&password=x", 400, "UNSUPPORTED"),
    ("application/x-www-form-urlencoded", b"grant_type=%00", 400, "UNSUPPORTED"),
    ("application/x-www-form-urlencoded", b"grant_type=password&scope=repository%3A%C3%A9%3Apull", 400,
     "NAME_INVALID"),
    ("application/x-www-form-urlencoded", b"grant_type=password&scope=%3A%3A%3A", 400, "UNSUPPORTED"),
    ("application/x-www-form-urlencoded", b"grant_type=refresh_token&refresh_token=garbage", 401, "UNAUTHORIZED"),
    ("application/x-www-form-urlencoded", b"grant_type=refresh_token&refresh_token=%C3%A9.%FF.x", 401,
     "UNAUTHORIZED"),
    ("application/x-www-form-urlencoded", b"grant_type=password&service=%FF", 400, "DENIED"),
    ("application/json", b'{"grant_type": "password"}', 400, "UNSUPPORTED"),
    ("multipart/form-data; boundary=xyz",
     b'--xyz\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\npassword\r\n'
     b'--xyz\r\nContent-Disposition: form-data; name="username"; filename="u.txt"\r\n'
     b'Content-Type: text/plain\r\n\r\ndev\r\n--xyz--\r\n', 400, "UNSUPPORTED"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nbroken", 400, "UNSUPPORTED"),
    ("multipart/form-data", b"no boundary at all", 400, "UNSUPPORTED"),
    ("application/x-www-form-urlencoded", b"scope=" + b"a" * (2 * 1024 * 1024), 413, "SIZE_INVALID"),
]


@pytest.mark.parametrize("content_type,body,status,code", FORMS, ids=[f"{c[:20]}:{b[:40]!r}" for c, b, _, _ in FORMS])
def test_token_endpoint_forms(server: AuthRegistry, content_type: str, body: bytes, status: int, code: str) -> None:
    response = raw(server, "POST", "/auth/token", [(b"Content-Type", content_type.encode())], body)
    detail = f"{content_type} {body[:80]!r} -> {response.status} {response.body[:300]!r}"
    assert response.status == status and error_code(response) == code, detail


def test_the_server_is_fine_afterwards(server: AuthRegistry) -> None:
    with server.client() as client:
        token = token_for(client, DEV.name, DEV.password, scope("after/all", "pull,push"))["token"]
        response = client.post("/v2/after/all/blobs/uploads/", headers=bearer(token))
        assert response.status_code == 202, describe(response, server)
        assert client.delete(response.headers["location"], headers=bearer(token)).status_code == 204
        response = client.get("/v2/after/all/tags/list", headers=bearer(token))
        assert response.status_code in (200, 404), describe(response, server)
        scheme, params = challenge(client.get("/v2/"))
        assert scheme == "Bearer" and params["service"] == "registry"


def test_a_huge_scope_list_in_a_form_is_refused_quickly(server: AuthRegistry) -> None:
    """The form may be 1 MiB: 30,000 scopes are counted and refused, not granted one by one."""
    scopes = " ".join(f"repository:r{i}:pull" for i in range(30_000))
    started = time.monotonic()
    with server.client() as client:
        response = client.post("/auth/token", data={"grant_type": "password", "username": DEV.name,
                                                     "password": DEV.password, "scope": scopes})
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "UNSUPPORTED", \
        describe(response, server)
    assert time.monotonic() - started < 10


def test_wrong_basic_password_is_unaffected(server: AuthRegistry) -> None:
    """Control: well-formed but wrong credentials are still the plain 401 (no error parameter)."""
    with server.client() as client:
        response = client.get("/v2/", auth=(DEV.name, secret("wrong")))
    assert response.status_code == 401, describe(response, server)
    assert "error=" not in response.headers["www-authenticate"]
    assert httpx.get(f"{server.url}/v2/", auth=(DEV.name, DEV.password)).status_code == 200

"""Passwords, robot secrets and tokens never reach the server's log, even at debug level.

One registry (token mode, `--log-level debug`) goes through every way credentials travel:
basic credentials on the API, the token endpoint's GET and OAuth2 POST forms, refresh tokens,
robots, right and wrong passwords, rejected tokens. Then the whole log is searched for every
secret in every form it could have been written in (raw, URL-encoded, inside the Basic header
value; for tokens also each signed part alone).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from collections.abc import Iterator

import httpx
import pytest

from tests.auth.conftest import (
    AuthRegistry,
    Robot,
    User,
    add_accounts,
    basic,
    basic_value,
    bearer,
    describe,
    make_image,
    post_blob,
    push_image,
    request_token,
    scope,
    secret,
    token_for,
    write_htpasswd,
)

ALICE = User("alice", secret("Alice-pw"))
# Characters that get encoded differently in a form, a URL and a Basic header.
BOB = User("bob", secret("b0b:p@ss/w+rd&x=1 %41~é"))
CI = Robot("ci", ("ci/*",), actions="pull,push")
HTPASSWD_USER = User("hank", secret("hank-pw"))


@dataclass
class Exercised:
    log: str
    passwords: list[str] = field(default_factory=list)       # right and wrong ones
    basic_values: list[str] = field(default_factory=list)    # base64 of user:password as sent
    robot_secrets: list[str] = field(default_factory=list)
    access_tokens: list[str] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)
    cli_output: str = ""


def _ok(response: httpx.Response, server: AuthRegistry, status: int | tuple[int, ...] = 200) -> httpx.Response:
    assert response.status_code in (status if isinstance(status, tuple) else (status,)), describe(response, server)
    return response


def _form(client: httpx.Client, **fields: str) -> httpx.Response:
    return client.post("/auth/token", data={"service": "registry", **fields})


@pytest.fixture(scope="module")
def exercised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exercised]:
    root = tmp_path_factory.mktemp("logs")
    htpasswd = write_htpasswd(root / "htpasswd", {HTPASSWD_USER.name: HTPASSWD_USER.password})
    server = AuthRegistry(root / "data", args=["--auth-mode", "token", "--log-level", "debug",
                                               "--auth-htpasswd", str(htpasswd)])
    with server:
        accounts = add_accounts(server.data_dir, users=[ALICE, BOB], robots=[CI])
        robot_secret = accounts.secrets[CI.username]
        credentials = [(u.name, u.password) for u in (ALICE, BOB, HTPASSWD_USER)] + [(CI.username, robot_secret)]
        wrong = [secret("wrong-pw") for _ in credentials]
        seen = Exercised(log="", passwords=[ALICE.password, BOB.password, HTPASSWD_USER.password, *wrong],
                         robot_secrets=[robot_secret], cli_output="\n".join(accounts.outputs))
        seen.basic_values = [basic_value(n, p) for n, p in credentials]
        seen.basic_values += [basic_value(n, w) for (n, _), w in zip(credentials, wrong)]

        with server.client() as c:
            for (name, password), bad in zip(credentials, wrong):
                repo = "ci/logs" if name.startswith("robot$") else f"{name}/logs"
                # Basic credentials on the API (token mode accepts them as well), right and wrong.
                _ok(c.get("/v2/", headers=basic(name, password)), server)
                _ok(c.get("/v2/", headers=basic(name, bad)), server, 401)
                # The GET token flow, with an offline (refresh) token, right and wrong.
                body = token_for(c, name, password, scope(repo, "pull,push"), offline=True)
                seen.access_tokens.append(body["token"])
                seen.refresh_tokens.append(body["refresh_token"])
                _ok(request_token(c, name, bad, [scope(repo, "pull")]), server, 401)
                # The OAuth2 POST form, password grant, right and wrong.
                body = _ok(_form(c, grant_type="password", username=name, password=password,
                                 scope=scope(repo, "pull,push"), access_type="offline"), server).json()
                seen.access_tokens.append(body["access_token"])
                seen.refresh_tokens.append(body["refresh_token"])
                _ok(_form(c, grant_type="password", username=name, password=bad), server, 401)
                # The refresh grant; then a mangled refresh token.
                body = _ok(_form(c, grant_type="refresh_token", refresh_token=body["refresh_token"],
                                 scope=scope(repo, "pull,push"), access_type="offline"), server).json()
                seen.access_tokens.append(body["access_token"])
                seen.refresh_tokens.append(body["refresh_token"])
                _ok(_form(c, grant_type="refresh_token", refresh_token=body["refresh_token"][:-4] + "AAAA"),
                    server, 401)
                # Use the tokens: a push, a pull, and a tampered token that must be refused.
                token = seen.access_tokens[-1]
                push_image(c, repo, "v1", bearer(token))
                _ok(c.get(f"/v2/{repo}/tags/list", headers=bearer(token)), server)
                _ok(c.get(f"/v2/{repo}/tags/list", headers=bearer(token[:-4] + "AAAA")), server, 401)
                # A token used where it gives no access: the insufficient_scope path.
                _ok(post_blob(c, "nobody/else", make_image().layer, bearer(token)), server, 401)
            # A password typed where a token goes, and a token typed where a password goes.
            _ok(c.get("/v2/", headers=bearer(ALICE.password)), server, 401)
            # (Over 72 bytes; a 500 today, see test_denied.py::test_overlong_password_is_401_not_500: the
            # error path must not leak it either.)
            _ok(c.get("/v2/", headers=basic(ALICE.name, seen.access_tokens[0])), server, (401, 500))
    seen.log = server.log_text()  # after stop: everything is flushed
    yield seen


def _forms(value: str) -> set[str]:
    """The ways a secret could be written down: raw, URL-encoded (both flavours), repr-escaped."""
    return {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
            value.encode("unicode_escape").decode(), repr(value)[1:-1]}


def _leaks(log: str, values: list[str]) -> list[str]:
    return [f"{value[:12]}… as {form[:40]!r}" for value in values for form in _forms(value) if form in log]


def test_the_log_is_at_debug_level_and_saw_the_traffic(exercised: Exercised) -> None:
    log = exercised.log
    assert " DEBUG " in log, "no debug lines: --log-level debug not in effect"
    assert "GET /auth/token" in log and "POST /auth/token" in log and "/v2/" in log
    assert "failed login for 'alice'" in log and "failed login for 'robot$ci'" in log


def test_passwords_never_appear_in_the_log(exercised: Exercised) -> None:
    assert len(exercised.passwords) == 7
    assert _leaks(exercised.log, exercised.passwords) == []


def test_basic_credentials_never_appear_in_the_log(exercised: Exercised) -> None:
    assert _leaks(exercised.log, exercised.basic_values) == []


def test_robot_secrets_never_appear_in_the_log(exercised: Exercised) -> None:
    assert _leaks(exercised.log, exercised.robot_secrets) == []


def _token_parts(tokens: list[str]) -> list[str]:
    parts = list(tokens)
    for token in tokens:
        header, payload, signature = token.split(".")
        parts += [payload, signature]  # the header is the same in every token: not a secret
    return parts


def test_access_tokens_never_appear_in_the_log(exercised: Exercised) -> None:
    assert len(exercised.access_tokens) == 12
    assert _leaks(exercised.log, _token_parts(exercised.access_tokens)) == []


def test_refresh_tokens_never_appear_in_the_log(exercised: Exercised) -> None:
    assert len(exercised.refresh_tokens) == 12
    assert _leaks(exercised.log, _token_parts(exercised.refresh_tokens)) == []


def test_account_commands_do_not_echo_passwords(exercised: Exercised) -> None:
    """`registry user add` never prints the password; `robot add` prints its secret once, on stdout."""
    assert _leaks(exercised.cli_output, [ALICE.password, BOB.password]) == []
    assert exercised.cli_output.count(exercised.robot_secrets[0]) == 1

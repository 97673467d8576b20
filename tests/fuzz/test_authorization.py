"""The Authorization header's readers (registry/auth/gate.py parse_basic, registry/auth/tokens.py
TokenVerifier) and what a verified token's claims become (token_identity, TokenVerifier.grants):
for any value, credentials or a token's claims, or the module's own refusal (UNAUTHORIZED, TokenError),
never another exception. The same headers through a real registry are in tests/auth/test_auth_input.py."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import example, given
from hypothesis import strategies as st

from registry.auth.gate import parse_basic, quoted, token_identity
from registry.auth.identity import Identity
from registry.auth.tokens import Grant, TokenError, TokenIssuer, TokenVerifier
from registry.errors import RegistryError
from registry.http_errors import http_status
from tests.fuzz.conftest import fuzz
from tests.fuzz.strategies import any_text, mutated, near, values

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISSUER = TokenIssuer(KEY, "ES256", "registry", "registry", 300, 3600)
VERIFIER = TokenVerifier([KEY.public_key(), RSA_KEY.public_key()], "registry", "registry")
FOREIGN = TokenIssuer(OTHER_KEY, "ES256", "registry", "registry", 300, 3600)
TOKENS = [ISSUER.access_token("dev", [Grant("team/app", ("pull", "push"))])[0],
          ISSUER.access_token("", [])[0], ISSUER.refresh_token("dev"),
          FOREIGN.access_token("dev", [Grant("team/app", ("pull",))])[0],
          ISSUER.access_token("dev", [Grant("a", ("*",))], not_after=time.time() - 10)[0]]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment_json(value: Any) -> bytes:
    try:
        return json.dumps(value, default=str).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError):
        return b"{}"


# A real token with a segment replaced by (base64url of) other JSON or bytes: unknown algorithms,
# deep nesting, 5,000-digit numbers, lists where objects belong, not UTF-8.
_HEADERS = st.one_of(
    st.fixed_dictionaries({"alg": st.sampled_from(["ES256", "RS256", "HS256", "none", "ES512", "", "PS256"])},
                          optional={"kid": any_text(20), "typ": any_text(5), "crit": values(max_leaves=3)})
    .map(_segment_json),
    values(max_leaves=6).map(_segment_json),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(4000, 6000).map(lambda n: b'{"alg": "ES256", "kid": ' + b"1" * n + b"}"),
    st.binary(max_size=40))
_PAYLOADS = st.one_of(values(max_leaves=8).map(_segment_json), st.binary(max_size=40),
                      st.fixed_dictionaries({"iss": st.just("registry"), "aud": st.just("registry"),
                                             "exp": st.one_of(st.integers(), st.floats(), any_text(10)),
                                             "access": values(max_leaves=6)}).map(_segment_json))


@st.composite
def spliced_tokens(draw: st.DrawFn) -> str:
    header, payload, signature = draw(st.sampled_from(TOKENS)).split(".")
    which = draw(st.integers(0, 2))
    if which == 0:
        header = b64url(draw(_HEADERS))
    elif which == 1:
        payload = b64url(draw(_PAYLOADS))
    else:
        signature = draw(st.one_of(st.just(""), st.binary(max_size=80).map(b64url), any_text(20)))
    return ".".join([header, payload, signature])


BEARER_VALUES = st.one_of(st.sampled_from(TOKENS), mutated(st.sampled_from(TOKENS)), spliced_tokens(), any_text(),
                          st.lists(st.sampled_from(TOKENS[0].split(".") + ["", "a", "=="]), max_size=6).map(".".join))


@fuzz
@given(BEARER_VALUES)
@example(b64url(b"[" * 5000) + ".e30.c2ln")
@example(b64url(b'{"alg":"ES256","kid":' + b"1" * 5000 + b"}") + ".e30.c2ln")
@example("\udc80.a.b")
@example("eyJhbGciOiJub25lIn0.eyJzdWIiOiJkZXYifQ.")
def test_bearer_tokens(value: str) -> None:
    try:
        claims = VERIFIER.access(value)
    except TokenError as exc:
        assert str(exc)
        return
    assert value == TOKENS[0] or value == TOKENS[1], "only the registry's own unexpired access tokens verify"
    assert isinstance(token_identity(claims, "127.0.0.1"), Identity)


CREDENTIALS = st.builds(lambda user, password: f"{user}:{password}", any_text(20), any_text(20))
BASIC_VALUES = st.one_of(
    CREDENTIALS.map(lambda c: base64.b64encode(c.encode("utf-8", "surrogatepass")).decode()),
    mutated(CREDENTIALS.map(lambda c: base64.b64encode(c.encode("utf-8", "surrogatepass")).decode())),
    st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()), any_text())


@fuzz
@given(BASIC_VALUES)
@example("ééé")  # the 500 of issue 17: b64decode of non-ASCII raised ValueError
@example(base64.b64encode(b"\xff\xfe:\xff").decode())
@example("YWxp Y2U6cHc=")
@example("====")
def test_basic_credentials(value: str) -> None:
    try:
        name, password = parse_basic(value)
    except RegistryError as exc:
        assert exc.code == "UNAUTHORIZED" and http_status(exc) == 401
        return
    assert name and isinstance(password, str)
    assert base64.b64decode(value.strip(), validate=True).decode() == f"{name}:{password}"


_ACTIONS = st.lists(st.sampled_from(["pull", "push", "*", "delete", "", "PULL", 5, None]), max_size=4)
_ACCESS_ENTRY = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["repository", "registry", "", 5, None]), "name": st.sampled_from(["team/app", "", 5, None]),
    "actions": st.one_of(_ACTIONS, st.sampled_from(["pull", None, {"a": 1}]))})
_CLAIMS = st.fixed_dictionaries({}, optional={
    "sub": st.sampled_from(["dev", "", 5, None, ["dev"]]), "groups": st.one_of(st.lists(st.sampled_from(["ops", 5, None])),
                                                                             st.sampled_from(["ops", None])),
    "access": st.one_of(st.lists(st.one_of(_ACCESS_ENTRY, st.sampled_from([None, 5, "x", []])), max_size=4),
                        st.sampled_from([None, "repository:a:pull", {"type": "repository"}]))})


@fuzz
@given(st.one_of(_CLAIMS, values(max_leaves=8)))
def test_claims_of_any_shape_become_an_identity(claims: Any) -> None:
    """Claims come from a signature we trust, but an external issuer may put anything in them."""
    claims = claims if isinstance(claims, dict) else {"access": claims}
    identity = token_identity(claims, "10.0.0.1")
    assert identity.kind == "token" and isinstance(identity.name, str)
    for repository, actions in identity.granted.items():
        assert isinstance(repository, str) and actions <= {"pull", "push", "delete"} | {a for a in actions}


@fuzz
@given(near(st.sampled_from(["localhost:5000", "registry.example", "[::1]:443", 'a"b', "a\\b"])))
def test_challenge_parameters_stay_one_quoted_string(value: str) -> None:
    """A Host header or a configured realm in WWW-Authenticate: one quoted-string, no control characters."""
    rendered = quoted(value)
    assert rendered.startswith('"') and rendered.endswith('"') and len(rendered) >= 2
    inner = rendered[1:-1]
    assert not any(c < " " or c == "\x7f" for c in inner), repr(rendered)
    assert '"' not in inner.replace('\\\\', "").replace('\\"', ""), repr(rendered)

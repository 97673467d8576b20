"""/auth/token: Docker token authentication, the GET form and the OAuth2 POST form.

GET  /auth/token?service=S&scope=repository:NAME:pull,push[&scope=...][&offline_token=true]
     with Basic credentials, or none for an anonymous token.
POST /auth/token (form): grant_type=password (username, password) or refresh_token
     (refresh_token), service, scope (space separated), access_type=offline.

Each scope is granted only as far as the policy allows the caller; a token may so carry fewer
actions than asked for (the registry then answers 401 insufficient_scope), as the Docker token
spec describes. Several scopes come as repeated `scope` parameters (GET), space separated (POST,
and in a challenge's `scope` that a client passes on as one parameter); repeats are merged into
one grant per repository.

Bad requests are a 400 with the spec's JSON error, never a 500: a `repository` scope whose name is
invalid is NAME_INVALID; a scope that is not `type:name:actions`, more than MAX_SCOPES scopes,
a token that would not fit in a request header, or a form that is not UTF-8 is UNSUPPORTED (the
code Distribution gives "an invalid set of parameters"). Scopes of other types
(`registry:catalog:*`, `repository(plugin):...`'s unknown kinds) grant nothing and are no error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Any

from aiohttp import web

from registry.api.common import LIMITS_KEY
from registry.auth.gate import GATE_KEY, Gate, client_address, need_of, parse_basic
from registry.auth.identity import Identity, anonymous
from registry.auth.tokens import Grant, TokenError
from registry.errors import RegistryError
from registry.events.journal import Change
from registry.http_errors import HTTPError
from registry.reference import validate_name

# type[(class)]:name:actions; the name may hold a colon (host:port/...), so type is up to the first
# colon and the actions are after the last (the grammar of Docker's token scope documentation).
_SCOPE = re.compile(r"(?P<type>[a-z0-9]+)(?:\((?P<class>[a-z0-9]+)\))?:(?P<name>.+):(?P<actions>[a-z*]*(?:,[a-z*]*)*)")
MAX_SCOPES = 100  # docker asks for 1-3 (the target and mount sources); any client far fewer than this
MAX_SCOPE_LENGTH = 512  # a repository name is at most 255 characters


def add_routes(app: web.Application) -> None:
    app.router.add_get("/auth/token", get_token)
    app.router.add_post("/auth/token", post_token)


def _gate(request: web.Request) -> Gate:
    gate = request.app[GATE_KEY]
    if gate.issuer is None:
        raise HTTPError("UNSUPPORTED", "this registry does not issue tokens (auth.mode is not token, "
                                           "or an external issuer is configured)", status=404)
    return gate


def _check_service(gate: Gate, service: str | None) -> None:
    if service and service != gate.service:
        raise HTTPError("DENIED", f"unknown service {service[:100]!r}", status=400)


def requested(values: list[str]) -> dict[str, set[str]]:
    """{repository: actions asked for} from `scope` values; RegistryError 400 for a bad request."""
    items = [item for value in values for item in value.split()]
    if len(items) > MAX_SCOPES:
        raise HTTPError("UNSUPPORTED", f"too many scopes: {len(items)} (at most {MAX_SCOPES})", status=400)
    wanted: dict[str, set[str]] = {}
    for item in items:
        match = _SCOPE.fullmatch(item) if len(item) <= MAX_SCOPE_LENGTH else None
        if not match:
            raise HTTPError("UNSUPPORTED", "malformed scope: expected type:name:actions such as "
                                "repository:team/app:pull,push", detail={"scope": item[:300]}, status=400)
        if match["type"] != "repository":
            continue  # registry:catalog:* and unknown types: nothing to grant in the token
        name = match["name"]
        validate_name(name)  # NAME_INVALID (400), naming the name
        actions = set(match["actions"].split(",")) - {""}
        if "*" in actions:
            actions = {"pull", "push", "delete"}
        wanted.setdefault(name, set()).update(actions)  # unknown actions are simply not granted
    return wanted


def _grants(gate: Gate, identity: Identity, wanted: dict[str, set[str]]) -> list[Grant]:
    return [Grant(name, tuple(sorted(actions & gate.policy.allowed(identity, name))))
            for name, actions in wanted.items()]


def _answer(request: web.Request, gate: Gate, identity: Identity, wanted: dict[str, set[str]],
            offline: bool) -> web.Response:
    assert gate.issuer is not None
    subject = identity.name
    grants = _grants(gate, identity, wanted)
    token, expires_in = gate.issuer.access_token(subject, grants, identity.expires_at, identity.groups)
    header_limit = request.app[LIMITS_KEY].header_bytes
    if len("Authorization: Bearer ") + len(token) > header_limit:  # the registry would refuse to read it
        raise HTTPError("UNSUPPORTED", f"a token for these scopes would be {len(token)} bytes, more than "
                            f"a request header may hold here ({header_limit}); ask for fewer", status=400)
    body: dict[str, Any] = {
        "token": token, "access_token": token, "expires_in": expires_in,
        "issued_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
    }
    if offline and not identity.anonymous:
        body["refresh_token"] = gate.issuer.refresh_token(subject, identity.expires_at)
    return web.Response(body=json.dumps(body).encode(), content_type="application/json",
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def get_token(request: web.Request) -> web.Response:
    gate = _gate(request)
    _check_service(gate, request.query.get("service"))
    wanted = requested(request.query.getall("scope", []))  # a bad request costs no password check
    address = client_address(request)
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            name, password = parse_basic(value)
        except RegistryError as exc:
            raise gate.challenge(request, need_of(request), message=exc.message) from None
        identity = await gate.login(name, password, address, request, announce=True)
    else:
        identity = anonymous(address)
    offline = request.query.get("offline_token", "").lower() == "true"
    return _answer(request, gate, identity, wanted, offline)


async def post_token(request: web.Request) -> web.Response:
    gate = _gate(request)
    timeout = request.app[LIMITS_KEY].body_timeout
    if request.content_type != "application/x-www-form-urlencoded":  # RFC 6749 4.3.2 and 6: a form, nothing else
        raise HTTPError("UNSUPPORTED", "the token request is a form: Content-Type "
                            "application/x-www-form-urlencoded", status=400)
    try:
        form = await asyncio.wait_for(request.post(), timeout)
    except TimeoutError:
        raise HTTPError("UNAUTHORIZED", f"request body stalled for {timeout:.0f}s", status=408) from None
    except ValueError:  # not UTF-8 (UnicodeDecodeError)
        raise HTTPError("UNSUPPORTED", "the form must be application/x-www-form-urlencoded UTF-8",
                            status=400) from None

    def field(key: str) -> str:
        value = form.get(key, "")
        return value if isinstance(value, str) else ""

    _check_service(gate, field("service") or None)
    wanted = requested([field("scope")])
    address = client_address(request)
    grant_type = field("grant_type")
    if grant_type == "password":
        identity = await gate.login(field("username"), field("password"), address, request, announce=True)
    elif grant_type == "refresh_token":
        identity = await _from_refresh_token(gate, field("refresh_token"), address)
        gate.on_audit(request, identity, Change("login", "account", detail={"path": request.path,
                                                                            "grant": "refresh_token"}))
    else:
        raise HTTPError("UNSUPPORTED", "grant_type must be password or refresh_token", status=400)
    return _answer(request, gate, identity, wanted, field("access_type") == "offline")


async def _from_refresh_token(gate: Gate, token: str, address: str) -> Identity:
    assert gate.verifier is not None
    try:
        claims = gate.verifier.refresh(token)
    except TokenError as exc:
        raise RegistryError("UNAUTHORIZED", f"refresh token rejected: {exc}") from None
    subject = str(claims.get("sub", ""))
    identity = await gate.credentials.identity_for(subject, address)
    if identity is None:  # the account is gone, or the robot expired
        raise RegistryError("UNAUTHORIZED", "the account behind this refresh token no longer exists")
    return identity


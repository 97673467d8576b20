"""/auth/token: Docker token authentication, the GET form and the OAuth2 POST form.

GET  /auth/token?service=S&scope=repository:NAME:pull,push[&scope=...][&offline_token=true]
     with Basic credentials, or none for an anonymous token.
POST /auth/token (form): grant_type=password (username, password) or refresh_token
     (refresh_token), service, scope (space separated), access_type=offline.

Each scope is granted only as far as the policy allows the caller; a token may so carry fewer
actions than asked for (the registry then answers DENIED), as the Docker token spec describes.
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
from registry.reference import validate_name

_SCOPE = re.compile(r"^repository(?:\([a-z0-9]+\))?:(?P<name>[^:]+):(?P<actions>[a-z*,]*)$")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/auth/token", get_token)
    app.router.add_post("/auth/token", post_token)


def _gate(request: web.Request) -> Gate:
    gate = request.app[GATE_KEY]
    if gate.issuer is None:
        raise RegistryError("UNSUPPORTED", "this registry does not issue tokens (auth.mode is not token, "
                                           "or an external issuer is configured)", status=404)
    return gate


def _check_service(gate: Gate, service: str | None) -> None:
    if service and service != gate.service:
        raise RegistryError("DENIED", f"unknown service {service!r}", status=400)


def _grants(gate: Gate, identity: Identity, scopes: list[str]) -> list[Grant]:
    grants: list[Grant] = []
    for scope in scopes:
        match = _SCOPE.match(scope)
        if not match:
            continue  # registry:catalog:* and unknown types: nothing to grant in the token
        name = match["name"]
        try:
            validate_name(name)
        except RegistryError:
            continue
        wanted = set(match["actions"].split(",")) - {""}
        if "*" in wanted:
            wanted = {"pull", "push", "delete"}
        allowed = sorted(wanted & gate.policy.allowed(identity, name))
        grants.append(Grant(name, tuple(allowed)))
    return grants


def _answer(gate: Gate, identity: Identity, scopes: list[str], offline: bool) -> web.Response:
    assert gate.issuer is not None
    subject = identity.name
    grants = _grants(gate, identity, scopes)
    token, expires_in = gate.issuer.access_token(subject, grants, identity.expires_at, identity.groups)
    body: dict[str, Any] = {
        "token": token, "access_token": token, "expires_in": expires_in,
        "issued_at": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
    }
    if offline and not identity.anonymous:
        body["refresh_token"] = gate.issuer.refresh_token(subject, identity.expires_at)
    return web.Response(body=json.dumps(body).encode(), content_type="application/json",
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def get_token(request: web.Request) -> web.Response:
    gate = _gate(request)
    _check_service(gate, request.query.get("service"))
    address = client_address(request)
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            name, password = parse_basic(header[6:])
        except RegistryError as exc:
            raise gate.challenge(request, need_of(request), "invalid_request", exc.message) from None
        identity = await gate.login(name, password, address, request)
    else:
        identity = anonymous(address)
    scopes = request.query.getall("scope", [])
    offline = request.query.get("offline_token", "").lower() == "true"
    return _answer(gate, identity, scopes, offline)


async def post_token(request: web.Request) -> web.Response:
    gate = _gate(request)
    timeout = request.app[LIMITS_KEY].body_timeout
    try:
        form = await asyncio.wait_for(request.post(), timeout)
    except asyncio.TimeoutError:
        raise RegistryError("UNAUTHORIZED", f"request body stalled for {timeout:.0f}s", status=408) from None
    _check_service(gate, str(form.get("service") or "") or None)
    address = client_address(request)
    grant_type = form.get("grant_type")
    if grant_type == "password":
        identity = await gate.login(str(form.get("username", "")), str(form.get("password", "")), address, request)
    elif grant_type == "refresh_token":
        identity = await _from_refresh_token(gate, str(form.get("refresh_token", "")), address)
    else:
        raise RegistryError("UNSUPPORTED", "grant_type must be password or refresh_token", status=400)
    scopes = str(form.get("scope", "")).split()
    return _answer(gate, identity, scopes, str(form.get("access_type", "")) == "offline")


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


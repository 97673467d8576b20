"""The gate every request passes: rate limit, credentials, and the access the request needs.

What a request needs comes from its route: GET/HEAD of a repository's content is `pull`;
POST/PUT/PATCH is `push`; DELETE is `delete`; `/v2/` needs a signed-in caller once
credentials are configured (that 401 is what starts `docker login`); the catalog needs a
signed-in caller and lists only what the caller may pull.

Without credentials where they are needed: 401 with the challenge (Basic or Bearer with the
scope to ask for). With credentials that do not allow the action: 403 DENIED.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from registry.auth.credentials import CredentialChecker
from registry.auth.identity import Identity, anonymous
from registry.auth.policy import Policy
from registry.auth.throttle import LoginThrottle, RateLimiter
from registry.auth.tokens import (EXTERNAL_LEEWAY_SECONDS, TokenError, TokenIssuer, TokenVerifier, external_keys,
                                  load_or_create_key)
from registry.config import Config
from registry.errors import RegistryError
from registry.metadata.db import Database

log = logging.getLogger("registry.auth")

IDENTITY_KEY = "registry.identity"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Need:
    """The access a request needs: an action on a repository, or a kind of check."""

    kind: str  # "repository" | "signed-in" | "catalog" | "admin" | "open"
    repository: str = ""
    action: str = ""

    def scope(self) -> str:
        if self.kind == "repository":
            actions = "pull" if self.action == "pull" else f"pull,{self.action}"
            return f"repository:{self.repository}:{actions}"
        if self.kind == "catalog":
            return "registry:catalog:*"
        return ""


def need_of(request: web.Request) -> Need:
    path = request.path
    if path.startswith("/admin"):
        return Need("admin")
    if not path.startswith("/v2"):
        return Need("open")  # /auth/token and friends check their own credentials
    name = request.match_info.get("name")
    if name:
        method = request.method
        action = "pull" if method in ("GET", "HEAD") else "push"
        if method == "DELETE" and "uuid" not in request.match_info:  # cancelling an upload is part of a push
            action = "delete"
        return Need("repository", name, action)
    if path.startswith("/v2/_catalog"):
        return Need("catalog")
    return Need("signed-in")


class Gate:
    def __init__(self, config: Config, db: Database) -> None:
        auth = config.auth
        self.mode = auth.mode
        self.service = auth.service
        self.realm = auth.token.realm
        admins = [a.strip() for a in auth.admins.split(",") if a.strip()]
        self.policy = Policy.load(Path(auth.policy_file)) if auth.policy_file else \
            Policy.default(auth.mode, auth.anonymous_pull, auth.anonymous_push_networks, admins)
        if auth.policy_file and admins:
            self.policy.admin_users |= {a for a in admins if not a.startswith("group:")}
            self.policy.admin_groups |= {a[6:] for a in admins if a.startswith("group:")}
        self.credentials = CredentialChecker(db, auth.htpasswd)
        self.logins = LoginThrottle(auth.failed_login_limit)
        self.rate = RateLimiter(config.limits.rate, config.limits.burst)
        self.issuer: TokenIssuer | None = None
        self.verifier: TokenVerifier | None = None
        if auth.mode == "token":
            token = auth.token
            trusted = external_keys(token.external_public_key, token.external_jwks)
            leeway = EXTERNAL_LEEWAY_SECONDS if trusted else 0
            if not trusted:  # our own token server
                key_file = Path(token.key_file) if token.key_file else \
                    Path(config.data_dir) / "auth" / f"token-{token.algorithm.lower()}.pem"
                key = load_or_create_key(key_file, token.algorithm)
                self.issuer = TokenIssuer(key, token.algorithm, token.issuer, auth.service, token.expiry,
                                          token.refresh_expiry)
                trusted = [key.public_key()]
            self.verifier = TokenVerifier(trusted, token.issuer, auth.service, leeway)

    # -- identities -------------------------------------------------------------------
    async def identify(self, request: web.Request) -> Identity:
        """The caller, from the Authorization header; 401 for credentials that do not check out."""
        address = client_address(request)
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if not header or self.mode == "none":
            return anonymous(address)
        if scheme.lower() == "basic":
            try:
                name, password = parse_basic(value)
            except RegistryError as exc:
                raise self.challenge(request, need_of(request), "invalid_request", exc.message) from None
            return await self.login(name, password, address, request)
        if scheme.lower() == "bearer" and self.verifier is not None:
            try:
                claims = self.verifier.access(value.strip())
            except TokenError as exc:
                raise self.challenge(request, need_of(request), "invalid_token", f"token rejected: {exc}")
            groups = claims.get("groups") if isinstance(claims.get("groups"), list) else []
            return Identity(name=str(claims.get("sub", "")), kind="token", groups=tuple(groups),
                            granted=TokenVerifier.grants(claims), address=address)
        raise self.challenge(request, need_of(request), "invalid_request", "unsupported authorization scheme")

    async def login(self, name: str, password: str, address: str, request: web.Request) -> Identity:
        wait = self.logins.blocked_for(address, name)
        if wait:
            raise RegistryError("TOOMANYREQUESTS", "too many failed logins; try again later",
                                headers={"Retry-After": str(int(wait) + 1)})
        identity = await self.credentials.check(name, password, address)
        if identity is None:
            self.logins.failed(address, name)
            log.warning("failed login for %r from %s", name, address)
            raise self.challenge(request, need_of(request), "invalid_credentials", "invalid username or password")
        self.logins.succeeded(address, name)
        return identity

    # -- decisions --------------------------------------------------------------------
    def allows(self, identity: Identity, repository: str, action: str) -> bool:
        return action in self.policy.allowed(identity, repository)

    async def pull_filter(self, identity: Identity) -> Callable[[str], bool] | None:
        """For listings (the catalog): which repositories the caller may pull; None when all."""
        if any(rule.anonymous and rule.repositories == ("*",) and "pull" in rule.actions and not rule.networks
               for rule in self.policy.rules):
            return None
        if identity.kind == "token":  # judge by the account the token was issued to, as it is now
            identity = await self.credentials.identity_for(identity.name, identity.address) or identity
        return lambda repository: self.allows(identity, repository, "pull")

    def is_admin(self, identity: Identity) -> bool:
        """The admin role: listed users and groups; with mode none, the networks that may push."""
        if self.mode == "none":
            return self.allows(identity, "*", "delete")
        return self.policy.is_admin(identity)

    def authorize(self, request: web.Request, identity: Identity, need: Need) -> None:
        if need.kind == "open":
            return
        if need.kind == "admin":
            if self.is_admin(identity):
                return
            if identity.anonymous and self.mode != "none":
                raise self.challenge(request, need)
            raise RegistryError("DENIED", "the admin role is required")
        if need.kind in ("signed-in", "catalog"):
            if identity.anonymous and self.mode != "none":
                raise self.challenge(request, need)
            return
        if self.allows(identity, need.repository, need.action):
            return
        if identity.anonymous and self.mode != "none":
            raise self.challenge(request, need)
        message = "requested access to the resource is denied"
        if identity.anonymous:
            message += f"; anonymous {need.action} is not allowed from this address (configure auth, see README)"
        raise RegistryError("DENIED", message, detail={"repository": need.repository, "action": need.action})

    def challenge(self, request: web.Request, need: Need, error: str = "", message: str = "") -> RegistryError:
        # Browsers answer only Basic challenges: the admin page's own files ask for Basic, and the
        # browser then sends those credentials with the page's API calls too (basic works in token mode).
        page = request.path.startswith("/admin") and not request.path.startswith("/admin/api/")
        if self.mode == "token" and not page:
            realm = self.realm or f"{request.scheme}://{request.host}/auth/token"
            parts = [f'realm="{realm}"', f'service="{self.service}"']
            if need.scope():
                parts.append(f'scope="{need.scope()}"')
            if error:
                parts.append(f'error="{error}"')
            header = "Bearer " + ",".join(parts)
        else:
            header = f'Basic realm="{self.service}"'
        return RegistryError("UNAUTHORIZED", message or "authentication required",
                             detail=[{"Type": "repository", "Name": need.repository, "Action": need.action}]
                             if need.kind == "repository" else None,
                             headers={"WWW-Authenticate": header})

    # -- the middleware ---------------------------------------------------------------
    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            wait = self.rate.acquire(client_address(request))
            if wait:
                raise RegistryError("TOOMANYREQUESTS", "request rate limit exceeded",
                                    headers={"Retry-After": str(int(wait) + 1)})
            need = need_of(request)
            identity = await self.identify(request) if need.kind != "open" else anonymous(client_address(request))
            self.authorize(request, identity, need)
            request[IDENTITY_KEY] = identity
            return await handler(request)

        return gate


GATE_KEY = web.AppKey("gate", Gate)


def client_address(request: web.Request) -> str:
    return request.remote or ""


def parse_basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise RegistryError("UNAUTHORIZED", "malformed basic credentials") from None
    name, sep, password = decoded.partition(":")
    if not sep or not name:
        raise RegistryError("UNAUTHORIZED", "malformed basic credentials")
    return name, password


def identity_of(request: web.Request) -> Identity:
    return request.get(IDENTITY_KEY) or anonymous(client_address(request))

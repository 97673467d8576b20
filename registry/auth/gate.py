"""The gate every request passes: rate limit, credentials, and the access the request needs.

What a request needs comes from its route: GET/HEAD of a repository's content is `pull`;
POST/PUT/PATCH is `push`; DELETE is `delete`; `/v2/` needs a signed-in caller once
credentials are configured (that 401 is what starts `docker login`); the catalog needs a
signed-in caller and lists only what the caller may pull.

Without credentials where they are needed, or with credentials that do not check out: 401
with the challenge (Basic, or Bearer with every scope the request needs: for a cross-repository
mount also `repository:SOURCE:pull`). In token mode a valid token that lacks the scope is 401 with
`error="insufficient_scope"` too, as Distribution answers (docker and containers/image then
report "denied: requested access to the resource is denied"). 403 DENIED is for callers who are
identified without a token (basic credentials, or an address in mode none) and whom the policy
refuses, and for the admin role.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from registry.auth.credentials import CredentialChecker
from registry.auth.directory import DirectoryUnavailable, open_directory
from registry.auth.identity import Identity, anonymous
from registry.auth.policy import Policy
from registry.auth.throttle import LoginThrottle, RateLimiter
from registry.auth.tokens import (EXTERNAL_LEEWAY_SECONDS, TokenError, TokenIssuer, TokenVerifier, external_keys,
                                  load_or_create_key)
from registry.config import Config
from registry.errors import RegistryError
from registry.events.journal import Change
from registry.http_errors import HTTPError
from registry.metadata.db import Database
from registry.reference import validate_name

log = logging.getLogger("registry.auth")

IDENTITY_KEY = "registry.identity"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Need:
    """The access a request needs: an action on a repository, or a kind of check."""

    kind: str  # "repository" | "signed-in" | "catalog" | "admin" | "open"
    repository: str = ""
    action: str = ""
    # POST ?mount=DIGEST&from=SOURCE: the source, a valid name other than the target, or "". Reading
    # it is not required (without it the mount is a plain upload session), but the challenge asks
    # for it, so a client that takes its scopes from the challenge gets a token that can mount.
    mount_from: str = ""

    def access(self) -> list[tuple[str, str, str]]:
        """(type, name, action) for each thing the request needs, as Distribution lists them."""
        if self.kind == "catalog":
            return [("registry", "catalog", "*")]
        if self.kind != "repository":
            return []
        actions = ["pull"] if self.action == "pull" else ["pull", self.action]
        needed = [("repository", self.repository, action) for action in actions]
        if self.mount_from:
            needed.append(("repository", self.mount_from, "pull"))
        return needed

    def scope(self) -> str:
        """The challenge's `scope`: one `type:name:actions` per resource, space separated (RFC 6750)."""
        by_resource: dict[tuple[str, str], list[str]] = {}
        for type_, name, action in self.access():
            by_resource.setdefault((type_, name), []).append(action)
        return " ".join(f"{type_}:{name}:{','.join(actions)}" for (type_, name), actions in by_resource.items())


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
        return Need("repository", name, action, _mount_source(request, name))
    if path.startswith("/v2/_catalog"):
        return Need("catalog")
    return Need("signed-in")


def _mount_source(request: web.Request, target: str) -> str:
    if request.method != "POST" or "mount" not in request.query:
        return ""
    source = request.query.get("from", "")
    try:
        validate_name(source)
    except RegistryError:
        return ""  # an invalid source is the handler's 400 (once the caller may push at all)
    return "" if source == target else source


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
        self.credentials = CredentialChecker(db, auth.htpasswd, open_directory(config))
        self.logins = LoginThrottle(auth.failed_login_limit)
        self.rate = RateLimiter(config.limits.rate, config.limits.burst)
        self.issuer: TokenIssuer | None = None
        self.verifier: TokenVerifier | None = None
        # Told each refusal's reason (registry_auth_failures_total); a challenge to a caller who sent no
        # credentials is how every client starts, not a failure, and is not told.
        self.on_refusal: Callable[[str], None] = lambda reason: None
        # Told logins (successes where a client logs in: `docker login`'s GET /v2/, the token endpoint;
        # every failure) and policy denials, for the audit trail (registry/api/recording.py).
        self.on_audit: Callable[[web.Request, Identity, Change], None] = lambda request, identity, change: None
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
        """The caller, from the Authorization header; 401 with the challenge for credentials that do
        not check out, whatever their shape (garbage, non-ASCII, wrong segments): never a 500."""
        address = client_address(request)
        header = request.headers.get("Authorization", "")
        if not header or self.mode == "none":
            return anonymous(address)
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                name, password = parse_basic(value)
            except RegistryError as exc:
                self.on_refusal("malformed")
                raise self.challenge(request, need_of(request), message=exc.message) from None
            return await self.login(name, password, address, request, announce=need_of(request).kind == "signed-in")
        if scheme.lower() == "bearer" and self.verifier is not None:
            try:
                claims = self.verifier.access(value.strip())
            except TokenError as exc:
                self.on_refusal("invalid_token")
                raise self.challenge(request, need_of(request), "invalid_token", f"token rejected: {exc}") from None
            return token_identity(claims, address)
        self.on_refusal("malformed")
        raise self.challenge(request, need_of(request), message="unsupported authorization scheme")

    async def login(self, name: str, password: str, address: str, request: web.Request,
                    announce: bool = False) -> Identity:
        """The account behind a name and password; 401 (429 while locked out) otherwise. Failures are
        audited; a success when `announce` (a client logging in, not one more request of a session)."""
        wait = self.logins.blocked_for(address, name)
        if wait:
            self.on_refusal("locked_out")
            raise HTTPError("TOOMANYREQUESTS", "too many failed logins; try again later",
                                headers={"Retry-After": str(int(wait) + 1)})
        try:
            identity = await self.credentials.check(name, password, address)
        except DirectoryUnavailable:  # 503 with Retry-After; not a failed login, so not counted as one
            self.on_refusal("directory_unavailable")
            raise
        if identity is None:
            self.logins.failed(address, name)
            log.warning("failed login for %r from %s", name[:100], address)  # names come from anyone
            self.on_refusal("bad_credentials")
            claimed = Identity(name=name, kind="user", address=address)
            self.on_audit(request, claimed, Change("login", "account", outcome="failed",
                                                   detail={"reason": "invalid username or password"}))
            raise self.challenge(request, need_of(request), message="invalid username or password")
        self.logins.succeeded(address, name)
        if announce:
            self.on_audit(request, identity, Change("login", "account", detail={"path": request.path}))
        return identity

    def close(self) -> None:
        self.credentials.close()

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
            self.on_refusal("denied")
            self.on_audit(request, identity, Change("denied", "admin", outcome="denied", detail={
                "method": request.method, "path": request.path[:200], "reason": "the admin role is required"}))
            raise RegistryError("DENIED", "the admin role is required")
        if need.kind in ("signed-in", "catalog"):
            if identity.anonymous and self.mode != "none":
                raise self.challenge(request, need)
            return
        if self.allows(identity, need.repository, need.action):
            return
        if identity.kind == "token" and identity.name:
            # A signed-in caller's token does not carry the scope: 401 insufficient_scope with the
            # scope needed, as Distribution answers (never 403): a token for it may be had (the token
            # server grants what the policy allows now), and a HEAD has no body, so only the challenge
            # can say what is missing. docker, skopeo and podman print "denied: requested access to
            # the resource is denied".
            self.on_refusal("insufficient_scope")
            self._audit_denial(request, identity, need, "the token does not allow it")
            raise self.challenge(request, need, "insufficient_scope",
                                 f"insufficient scope: the token does not allow {need.action} on {need.repository}")
        if identity.kind == "token":
            # An anonymous token (no subject) authenticates nobody: the challenge carries no error, as
            # RFC 6750 3.1 has it for a request without authentication, so clients report
            # "authentication required" and the user knows to log in.
            raise self.challenge(request, need)
        if identity.anonymous and self.mode != "none":
            raise self.challenge(request, need)
        self.on_refusal("denied")
        message = "requested access to the resource is denied"
        if identity.anonymous:
            message += f"; anonymous {need.action} is not allowed from this address (configure auth, see README)"
        self._audit_denial(request, identity, need, "the policy does not allow it")
        raise RegistryError("DENIED", message, detail={"repository": need.repository, "action": need.action})

    def _audit_denial(self, request: web.Request, identity: Identity, need: Need, reason: str) -> None:
        self.on_audit(request, identity, Change("denied", "repository", need.repository, outcome="denied",
                                                detail={"action": need.action, "method": request.method,
                                                        "reason": reason}))

    def challenge(self, request: web.Request, need: Need, error: str = "", message: str = "") -> RegistryError:
        """401 UNAUTHORIZED with WWW-Authenticate. `error` is RFC 6750's: "invalid_token" for a token
        that is not accepted, "insufficient_scope" for one without the scope; none when no (usable)
        token came, as Distribution does."""
        # Browsers answer only Basic challenges: the admin page's own files ask for Basic, and the
        # browser then sends those credentials with the page's API calls too (basic works in token mode).
        # The token endpoint itself takes basic credentials: its challenge is Basic too.
        page = request.path.startswith("/admin") and not request.path.startswith("/admin/api/")
        if self.mode == "token" and not page and request.path.startswith(("/v2", "/admin")):
            realm = self.realm or f"{request.scheme}://{request.host}/auth/token"
            parts = [f"realm={quoted(realm)}", f"service={quoted(self.service)}"]
            if need.scope():
                parts.append(f"scope={quoted(need.scope())}")
            if error:
                parts.append(f"error={quoted(error)}")
            header = "Bearer " + ",".join(parts)
        else:
            header = f"Basic realm={quoted(self.service)}"
        detail = [{"Type": type_, "Name": name, "Action": action} for type_, name, action in need.access()]
        return HTTPError("UNAUTHORIZED", message or "authentication required", detail=detail or None,
                             headers={"WWW-Authenticate": header})

    # -- the middleware ---------------------------------------------------------------
    def middleware(self) -> Middleware:
        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            wait = self.rate.acquire(client_address(request))
            if wait:
                raise HTTPError("TOOMANYREQUESTS", "request rate limit exceeded",
                                    headers={"Retry-After": str(int(wait) + 1)})
            need = need_of(request)
            if need.kind == "repository":
                validate_name(need.repository)  # 400 NAME_INVALID before any challenge that would carry it
            identity = await self.identify(request) if need.kind != "open" else anonymous(client_address(request))
            self.authorize(request, identity, need)
            request[IDENTITY_KEY] = identity
            return await handler(request)

        return gate


GATE_KEY = web.AppKey("gate", Gate)


def client_address(request: web.Request) -> str:
    return request.remote or ""


def parse_basic(value: str) -> tuple[str, str]:
    """(user, password) from a Basic header's value; UNAUTHORIZED for anything but base64 of
    UTF-8 `user:password` (non-ASCII or stray characters in the header included)."""
    value = value.strip()
    if not value.isascii():  # b64decode raises ValueError, not binascii.Error, for these
        raise RegistryError("UNAUTHORIZED", "malformed basic credentials: not base64")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise RegistryError("UNAUTHORIZED", "malformed basic credentials") from None
    name, sep, password = decoded.partition(":")
    if not sep or not name:
        raise RegistryError("UNAUTHORIZED", "malformed basic credentials")
    return name, password


def token_identity(claims: dict[str, Any], address: str) -> Identity:
    """The caller a verified token speaks for; claims of the wrong shape count as absent."""
    subject = claims.get("sub")
    groups = claims.get("groups")
    return Identity(name=subject if isinstance(subject, str) else "", kind="token",
                    groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
                    granted=TokenVerifier.grants(claims), address=address)


def quoted(value: str) -> str:
    """An RFC 9110 quoted-string: `"` and `\\` escaped, control characters dropped (a Host header
    or a configured realm must never break the header, or make it one aiohttp refuses to send)."""
    printable = "".join(c for c in value if c >= " " and c != "\x7f")
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


def identity_of(request: web.Request) -> Identity:
    return request.get(IDENTITY_KEY) or anonymous(client_address(request))

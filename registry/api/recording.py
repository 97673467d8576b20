"""Requests as the events they cause see them (registry/events/).

- `recorded`, a middleware after the auth gate: the caller and the request (address, host, method,
  user agent, request id) become the current RequestInfo, which the content layer's writes read
  when they record a push, a mount or a delete; a handler's DENIED (a quota, a rule) is noted as a
  denial.
- `note_pull`: a manifest or blob GET, for webhooks and the audit trail (batched by the journal:
  a pull changes nothing, so it takes no write transaction of its own).
- `gate_recorder`: the auth gate's logins and denials, noted the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from registry.api.common import REQUEST_ID_KEY
from registry.auth.gate import client_address, identity_of
from registry.auth.identity import Identity
from registry.errors import RegistryError
from registry.events.context import RequestInfo, actor_kind, current, serving
from registry.events.journal import Change, Journal

JOURNAL_KEY = web.AppKey("journal", Journal)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_info(request: web.Request, identity: Identity) -> RequestInfo:
    return RequestInfo(id=request.get(REQUEST_ID_KEY, ""), address=identity.address or client_address(request),
                       host=request.host, method=request.method,
                       user_agent=request.headers.get("User-Agent", ""), actor=identity.name,
                       actor_kind=actor_kind(identity.kind, identity.name))


@web.middleware
async def recorded(request: web.Request, handler: Handler) -> web.StreamResponse:
    with serving(request_info(request, identity_of(request))):
        try:
            return await handler(request)
        except RegistryError as exc:
            if exc.code == "DENIED" and request.path.startswith("/v2/"):
                note(request, Change("denied", "repository", request.match_info.get("name"), outcome="denied",
                                     detail={"method": request.method, "reason": exc.message[:300]}))
            raise


def note(request: web.Request, change: Change, identity: Identity | None = None) -> None:
    """Note an event of this request (by `identity`, when not the request's caller)."""
    journal = request.app.get(JOURNAL_KEY)
    if journal is not None:
        info = current() if identity is None else None  # the middleware's, made once per request
        journal.note(change, info or request_info(request, identity or identity_of(request)))


def note_pull(request: web.Request, target_type: str, repository: str, digest: str, media_type: str,
              size: int, tag: str | None = None) -> None:
    """A GET that served a manifest or blob (a HEAD is no pull)."""
    if request.method == "GET":
        note(request, Change("pull", target_type, repository, digest, tag, media_type, size))


def gate_recorder(journal: Journal) -> Callable[[web.Request, Identity, Change], None]:
    """For Gate.on_audit: its logins and denials, with the caller they concern."""
    def record(request: web.Request, identity: Identity, change: Change) -> None:
        journal.note(change, request_info(request, identity))
    return record

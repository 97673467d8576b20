"""The LDAP client behind directory logins (the `ldap` extra): ldap3, whose calls block, run in threads of
its own over a small pool of open connections, so the event loop never waits on the directory.

A login is three steps, in one thread job:
1. search for the user as the service account (`bind_dn`) under `base_dn` with `user_filter`, the name
   escaped (RFC 4515): exactly one entry, or the login fails;
2. bind as that entry's DN with the password, on a connection kept for users' binds (never the service
   account's, whose searches need its own rights);
3. the user's groups, as the service account: a search with `group_filter`, and/or the DNs in the user's
   `member_of_attribute`; directory.py maps them to the policy's groups.

Connections: `pool_size` for searches (bound as the service account) and as many for users' binds, reused
while they work; one that fails (the server restarted, a firewall dropped it) is closed with the others of
its pool and the step is tried once more on a new connection. New connections try the URLs in order.
TLS (ldaps:// or StartTLS) is verified by the standard library: the chain to `ca_file` (or the system's
CAs) and the server's name, IP addresses included.

When the directory cannot answer, the login ends in DirectoryUnavailable (503 with Retry-After), and for
RETRY_SECONDS the next directory logins get it at once rather than each waiting out the timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ldap3 import NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPBindError, LDAPCommunicationError, LDAPException
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from registry.auth.directory import (MAX_PASSWORD_BYTES, MAX_USERNAME_CHARACTERS, RETRY_SECONDS, DirectoryGroup,
                                     DirectorySettings, DirectoryUnavailable, DirectoryUser)

log = logging.getLogger("registry.auth")

T = TypeVar("T")

IDLE_SECONDS = 60.0  # a connection idle longer is closed rather than reused: firewalls drop idle ones silently
MAX_GROUPS = 1000
MAX_CACHED = 10_000
# Bind results that refuse the credentials (a failed login): invalidCredentials, inappropriateAuthentication,
# unwillingToPerform (a disabled account, on some servers). Any other result is the directory's trouble: 503.
REFUSED = {49, 48, 53}
SIZE_LIMIT_EXCEEDED = 4
# What a broken connection raises; LDAPBindError is ldap3's rebind() reporting a connection the server closed.
BROKEN = (LDAPCommunicationError, LDAPBindError, OSError)


def filter_problem(text: str) -> str | None:
    """Why `text` (with its placeholders filled in) is not a filter ldap3 can send; None if it is."""
    sample = text.replace("{username}", "name").replace("{dn}", "cn=name,dc=example")
    try:
        parse_filter(sample, None, True, True, None, False)
    except LDAPException as exc:
        return str(exc)
    return None


def filled(template: str, username: str = "", dn: str = "") -> str:
    """A configured filter with the login name and DN put in, each escaped (RFC 4515): `*`, `(`, `)`, `\\`
    and NUL can never change the filter's shape."""
    return template.replace("{username}", escape_filter_chars(username)).replace("{dn}", escape_filter_chars(dn))


class _VerifiedTls(Tls):
    """ldap3's Tls with the standard library's checks: OpenSSL verifies the chain and the server's name (an
    IP address too) during the handshake. ldap3's own name check uses ssl.match_hostname, gone in Python 3.12,
    and its fallback refuses IP addresses."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(validate=context.verify_mode)
        self.context = context

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self.context.wrap_socket(connection.socket, server_hostname=connection.server.host,
                                                     do_handshake_on_connect=do_handshake)


def _tls_context(settings: DirectorySettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _close(conn: Any) -> None:
    try:
        conn.unbind()
    except (LDAPException, OSError):  # closing what is already broken
        pass


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _result(conn: Any) -> str:
    result = conn.result or {}
    message = result.get("message") or ""
    return f"{result.get('description', 'no result')} ({result.get('result')})" + (f": {message}" if message else "")


class _Pool:
    """Open connections of one kind, each used by one thread at a time and given back after."""

    def __init__(self, open_: Callable[[], Any]) -> None:
        self._open = open_
        self._idle: list[tuple[float, Any]] = []  # (given back at, connection)
        self._lock = threading.Lock()
        self.closed = False

    def run(self, job: Callable[[Any], T]) -> T:
        """`job` on a pooled connection. If a reused one turns out broken, every idle one is dropped (they are
        likely of the same server's past life) and the job runs once more on a new connection."""
        for attempt in (1, 2):
            conn, reused = self._take(fresh=attempt == 2)
            try:
                result = job(conn)
            except BROKEN as exc:
                _close(conn)
                if reused and attempt == 1:
                    self.clear()
                    continue
                raise DirectoryUnavailable(_reason(exc)) from None
            except LDAPException as exc:  # anything else ldap3 raises: the directory cannot say, 503 (logged)
                _close(conn)
                raise DirectoryUnavailable(_reason(exc)) from None
            except BaseException:
                _close(conn)
                raise
            self._give(conn)
            return result
        raise AssertionError("unreachable")

    def _take(self, fresh: bool) -> tuple[Any, bool]:
        now = time.monotonic()
        stale = []
        found = None
        with self._lock:
            while self._idle and not fresh and found is None:
                given_at, conn = self._idle.pop()
                if now - given_at < IDLE_SECONDS:
                    found = conn
                else:
                    stale.append(conn)
        for conn in stale:  # outside the lock: an unbind is a network write
            _close(conn)
        return (found, True) if found is not None else (self._open(), False)

    def _give(self, conn: Any) -> None:
        with self._lock:
            if not self.closed:
                self._idle.append((time.monotonic(), conn))
                return
        _close(conn)

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, conn in idle:
            _close(conn)


@dataclass(frozen=True)
class _Entry:
    dn: str
    attributes: dict[str, Any]


class LdapDirectory:
    """Directory logins and lookups for the credential checker (registry/auth/credentials.py)."""

    def __init__(self, settings: DirectorySettings) -> None:
        self.settings = settings
        self.cache_seconds = settings.cache_seconds
        self._tls = _VerifiedTls(_tls_context(settings))
        self._receive_timeout = math.ceil(settings.timeout)  # ldap3 packs it as an integer
        # A login's whole wait: a connection to each server in turn, then the answers.
        self.deadline = settings.connect_timeout * len(settings.endpoints) + settings.timeout
        self._searches = _Pool(lambda: self._connect(as_service=True))
        self._binds = _Pool(lambda: self._connect(as_service=False))
        self._executor = ThreadPoolExecutor(max_workers=settings.pool_size, thread_name_prefix="ldap")
        self._down_until = 0.0
        self._lookups: dict[str, tuple[float, DirectoryUser]] = {}
        for endpoint in settings.endpoints:
            if not endpoint.tls and not settings.start_tls and endpoint.host not in ("127.0.0.1", "::1", "localhost"):
                log.warning("auth.ldap: %s without start_tls: passwords cross the network in clear text", endpoint.url)
        if not settings.tls_verify:
            log.warning("auth.ldap.tls_verify is off: the directory's certificate is not checked")

    # -- on the event loop -----------------------------------------------------------------------
    async def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """The user if the directory accepts the password; None if it does not (or knows no such user).
        DirectoryUnavailable when it cannot say."""
        if not password or len(password.encode()) > MAX_PASSWORD_BYTES or not _usable(username):
            return None  # an empty password would be an "unauthenticated bind", which servers let through
        return await self._run(self._authenticate, username, password)

    async def lookup(self, username: str) -> DirectoryUser | None:
        """The user as the directory has it now, without a password (for refresh tokens issued before);
        remembered for cache_seconds."""
        if not _usable(username):
            return None
        cached = self._lookups.get(username)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        user = await self._run(self._lookup, username)
        if user is not None and self.cache_seconds > 0:
            if len(self._lookups) > MAX_CACHED:
                self._lookups.clear()
            self._lookups[username] = (time.monotonic() + self.cache_seconds, user)
        return user

    async def _run(self, job: Callable[..., T], *args: Any) -> T:
        wait = self._down_until - time.monotonic()
        if wait > 0:
            raise DirectoryUnavailable("the directory failed moments ago", retry_after=wait)
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, job, *args), self.deadline)
        except TimeoutError:
            problem = f"no answer within {self.deadline:g}s"
        except DirectoryUnavailable as exc:
            problem = exc.reason
        self._down_until = time.monotonic() + RETRY_SECONDS
        log.error("the directory is unreachable: %s; directory logins are answered 503 for %ds", problem,
                  RETRY_SECONDS)
        raise DirectoryUnavailable(problem)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for pool in (self._searches, self._binds):
            pool.closed = True
            pool.clear()

    # -- in the executor's threads ---------------------------------------------------------------
    def _authenticate(self, username: str, password: str) -> DirectoryUser | None:
        entry = self._find(username)
        if entry is None or not self._binds.run(lambda conn: self._bind_as(conn, entry.dn, password)):
            return None
        return DirectoryUser(entry.dn, self.settings.policy_groups(self._groups(username, entry)))

    def _lookup(self, username: str) -> DirectoryUser | None:
        entry = self._find(username)
        if entry is None:
            return None
        return DirectoryUser(entry.dn, self.settings.policy_groups(self._groups(username, entry)))

    def _find(self, username: str) -> _Entry | None:
        settings = self.settings
        attributes = [settings.member_of_attribute] if settings.member_of_attribute else ["1.1"]  # 1.1: none
        entries = self._search(settings.base_dn, filled(settings.user_filter, username=username), attributes, 2)
        if len(entries) > 1:
            log.warning("auth.ldap.user_filter finds more than one entry for %r (%s, ...): the login is refused",
                        username[:100], entries[0].dn)
            return None
        return entries[0] if entries else None

    def _bind_as(self, conn: Any, dn: str, password: str) -> bool:
        if conn.rebind(user=dn, password=password, read_server_info=False):
            return True
        code = (conn.result or {}).get("result")
        if code in REFUSED:
            return False
        raise DirectoryUnavailable(f"the bind as {dn!r} failed: {_result(conn)}")

    def _groups(self, username: str, entry: _Entry) -> list[DirectoryGroup]:
        settings = self.settings
        found = []
        if settings.member_of_attribute:
            for dn in _values(entry.attributes, settings.member_of_attribute):
                found.append(DirectoryGroup(_first_value(dn), dn))
        if settings.group_filter:
            search = filled(settings.group_filter, username=username, dn=entry.dn)
            for group in self._search(settings.group_base_dn, search, [settings.group_name_attribute], MAX_GROUPS):
                names = _values(group.attributes, settings.group_name_attribute)
                found.append(DirectoryGroup(names[0] if names else _first_value(group.dn), group.dn))
        return found

    def _search(self, base: str, search_filter: str, attributes: list[str], limit: int) -> list[_Entry]:
        def search(conn: Any) -> list[_Entry]:
            conn.search(base, search_filter, search_scope=SUBTREE, attributes=attributes, size_limit=limit,
                        time_limit=self._receive_timeout)
            code = (conn.result or {}).get("result")
            if code not in (0, SIZE_LIMIT_EXCEEDED):
                raise DirectoryUnavailable(f"the search under {base!r} for {search_filter!r} failed: {_result(conn)}")
            return [_Entry(item["dn"], dict(item.get("attributes") or {})) for item in conn.response or ()
                    if item.get("type") == "searchResEntry"]

        return self._searches.run(search)

    def _connect(self, as_service: bool) -> Any:
        """A new connection, to the first server that takes it: TLS started if configured, and bound as the
        service account for searches (users' binds come later, on connections of their own)."""
        settings = self.settings
        problems = []
        service = as_service and bool(settings.bind_dn)
        for endpoint in settings.endpoints:
            # A Server of its own for each connection: ldap3's Server remembers a failed address and refuses
            # to try it again for a few seconds, across threads; RETRY_SECONDS is the one such memory here.
            server = Server(endpoint.host, port=endpoint.port, use_ssl=endpoint.tls, tls=self._tls, get_info=NONE,
                            connect_timeout=settings.connect_timeout)
            conn = Connection(server, user=settings.bind_dn if service else None,
                              password=settings.bind_password if service else None, raise_exceptions=False,
                              receive_timeout=self._receive_timeout, auto_referrals=False, read_only=True,
                              check_names=False)
            refused = ""
            try:
                conn.open(read_server_info=False)
                if settings.start_tls and not conn.start_tls(read_server_info=False):
                    raise LDAPCommunicationError(f"StartTLS failed: {_result(conn)}")
                if not service or conn.bind(read_server_info=False):
                    return conn
                refused = f"the service bind as {settings.bind_dn!r} was refused: {_result(conn)}"
            except (LDAPException, OSError) as exc:
                problems.append(f"{endpoint.url}: {_reason(exc)}")
            _close(conn)
            if refused:
                raise DirectoryUnavailable(f"{endpoint.url}: {refused}")
        raise DirectoryUnavailable("; ".join(problems))


def _usable(username: str) -> bool:
    return 0 < len(username) <= MAX_USERNAME_CHARACTERS


def _values(attributes: dict[str, Any], name: str) -> list[str]:
    """An attribute's values as text, whatever the case of its name in the answer."""
    for key, value in attributes.items():
        if key.lower() == name.lower():
            values = value if isinstance(value, list) else [value]
            return [v if isinstance(v, str) else v.decode("utf-8", "replace") for v in values if v]
    return []


def _first_value(dn: str) -> str:
    """`devs` of `cn=devs,ou=groups,dc=example,dc=org`: how a group listed by DN is named."""
    try:
        return str(parse_dn(dn)[0][1])
    except (LDAPException, IndexError):
        return dn

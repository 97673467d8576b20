"""Checking a name and password: robot secrets, local users (database or htpasswd file, bcrypt), then
directory users (LDAP, registry/auth/directory.py) for names unknown locally.

bcrypt is slow on purpose (~0.2 s); it runs in a thread, and a successful check is remembered
for a minute (keyed by a salted hash, never the password) so clients that send basic auth on
every request do not pay it each time. A directory login is remembered the same way, for
auth.ldap.cache_seconds. Failures are never remembered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import logging
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import bcrypt

from registry.auth.files import AuthFileError
from registry.auth.identity import Identity
from registry.metadata import accounts
from registry.metadata.db import Database

if TYPE_CHECKING:
    from registry.auth.ldap import LdapDirectory

log = logging.getLogger("registry.auth")

ROBOT_PREFIX = "robot$"
MAX_PASSWORD_BYTES = 72  # bcrypt's limit: longer passwords are refused, never silently cut
CACHE_SECONDS = 60.0


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=12)).decode()


def hash_robot_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_robot_secret() -> str:
    return secrets.token_urlsafe(32)


class HtpasswdError(AuthFileError):
    """An htpasswd file that cannot be used: names the file, the line and why."""


def read_htpasswd(path: Path) -> dict[str, str]:
    """user -> bcrypt hash; other hash kinds are refused (they are not safe to keep)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HtpasswdError(f"{path}: cannot read the htpasswd file: {exc}") from None
    entries: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise HtpasswdError(f"{path}:{number}: expected USER:BCRYPT-HASH (htpasswd -B)")
        if not hashed.startswith(("$2y$", "$2b$", "$2a$")) or not _is_bcrypt(hashed):
            raise HtpasswdError(f"{path}:{number}: user {user!r}: only bcrypt entries are supported (htpasswd -B)")
        if user in lines:
            raise HtpasswdError(f"{path}:{number}: user {user!r} is already on line {lines[user]}")
        entries[user], lines[user] = hashed, number
    return entries


def _is_bcrypt(hashed: str) -> bool:
    """`$2y$NN$` + 53 characters of bcrypt's base64: what checkpw accepts without raising."""
    return len(hashed) == 60 and hashed[4:6].isascii() and hashed[4:6].isdigit() and 4 <= int(hashed[4:6]) <= 31 \
        and hashed[6] == "$" and all(c in _BCRYPT_ALPHABET for c in hashed[7:])


_BCRYPT_ALPHABET = frozenset("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


class CredentialChecker:
    def __init__(self, db: Database, htpasswd: str = "", directory: LdapDirectory | None = None) -> None:
        self.db = db
        self.htpasswd_path = Path(htpasswd) if htpasswd else None
        self.directory = directory
        self._htpasswd: dict[str, str] = {}
        self._htpasswd_mtime = 0.0
        self._salt = os.urandom(16)
        self._verified: dict[str, tuple[float, Identity]] = {}

    async def check(self, name: str, password: str, address: str) -> Identity | None:
        """The caller if the password is right; None if not. A directory user's check raises
        DirectoryUnavailable (503) when the directory cannot answer."""
        key = hmac.new(self._salt, f"{name}\0{password}".encode(), hashlib.sha256).hexdigest()
        cached = self._verified.get(key)
        if cached and cached[0] > time.monotonic():
            # Remembered from an earlier request, perhaps from another address: the policy's networks
            # judge this request's.
            return dataclasses.replace(cached[1], address=address)
        lifetime = CACHE_SECONDS
        if name.startswith(ROBOT_PREFIX):
            identity = await self._check_robot(name, password, address)
        elif self.directory is None or await self._is_local(name):
            identity = await self._check_user(name, password, address)
        else:
            identity = await self._check_directory(name, password, address)
            lifetime = self.directory.cache_seconds
        if identity is not None and lifetime > 0:
            if len(self._verified) > 10_000:
                self._verified.clear()
            if identity.expires_at is not None:  # a robot's expiry is never outlived by the cache
                lifetime = min(lifetime, identity.expires_at - time.time())
            self._verified[key] = (time.monotonic() + lifetime, identity)
        return identity

    async def identity_for(self, name: str, address: str) -> Identity | None:
        """The account as it is now (no password check): for refresh tokens issued to it earlier."""
        if name.startswith(ROBOT_PREFIX):
            async with self.db.read() as conn:
                robot = await accounts.get_robot(conn, name[len(ROBOT_PREFIX):])
            if robot is None or (robot.expires_at is not None and robot.expires_at < time.time()):
                return None
            return Identity(name=name, kind="robot", robot_repositories=robot.repositories,
                            robot_actions=robot.actions, address=address, expires_at=robot.expires_at)
        if name in self._htpasswd_entries():
            return Identity(name=name, kind="user", address=address)
        async with self.db.read() as conn:
            user = await accounts.get_user(conn, name)
        if user is not None:
            return Identity(name=name, kind="user", groups=user.groups, address=address)
        if self.directory is None:
            return None
        found = await self.directory.lookup(name)
        return Identity(name=name, kind="user", groups=found.groups, address=address) if found else None

    async def _is_local(self, name: str) -> bool:
        """A user of the htpasswd file or the database: checked here, never in the directory."""
        if name in self._htpasswd_entries():
            return True
        async with self.db.read() as conn:
            return await accounts.get_user(conn, name) is not None

    async def _check_user(self, name: str, password: str, address: str) -> Identity | None:
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            await asyncio.to_thread(_check_dummy)  # same cost as any failure
            return None
        hashed = self._htpasswd_entries().get(name)
        groups: tuple[str, ...] = ()
        if hashed is None:
            async with self.db.read() as conn:
                row = await accounts.get_user(conn, name)
            if row is None:
                # Same cost as a real check, so timing does not tell which names exist.
                await asyncio.to_thread(_check_dummy)
                return None
            hashed, groups = row.password_hash, row.groups
        if not await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed.encode()):
            return None
        return Identity(name=name, kind="user", groups=groups, address=address)

    async def _check_directory(self, name: str, password: str, address: str) -> Identity | None:
        assert self.directory is not None
        found = await self.directory.authenticate(name, password)
        return Identity(name=name, kind="user", groups=found.groups, address=address) if found else None

    def close(self) -> None:
        if self.directory is not None:
            self.directory.close()

    async def _check_robot(self, name: str, secret: str, address: str) -> Identity | None:
        async with self.db.read() as conn:
            row = await accounts.get_robot(conn, name[len(ROBOT_PREFIX):])
        if row is None or not hmac.compare_digest(row.secret_hash, hash_robot_secret(secret)):
            return None
        if row.expires_at is not None and row.expires_at < time.time():
            return None
        return Identity(name=name, kind="robot", robot_repositories=row.repositories, robot_actions=row.actions,
                        address=address, expires_at=row.expires_at)

    def _htpasswd_entries(self) -> dict[str, str]:
        if self.htpasswd_path is None:
            return {}
        try:
            mtime = self.htpasswd_path.stat().st_mtime
        except OSError:  # removed (or unreadable): no users from it
            return {}
        if mtime != self._htpasswd_mtime:  # edited while running: reload
            self._htpasswd_mtime = mtime
            try:
                self._htpasswd = read_htpasswd(self.htpasswd_path)
            except HtpasswdError as exc:  # half written, or a typo: keep serving with what was good
                log.error("%s; keeping the %d user(s) read before", exc, len(self._htpasswd))
        return self._htpasswd


def _check_dummy() -> None:
    bcrypt.checkpw(b"x", _dummy_hash())


@functools.cache
def _dummy_hash() -> bytes:
    """A hash to check against when the user is unknown, so both failures cost the same; made on
    first use, not at import (it takes a quarter of a second)."""
    return bcrypt.hashpw(b"dummy", bcrypt.gensalt(rounds=12))

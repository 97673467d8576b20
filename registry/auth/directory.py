"""Directory (LDAP) users: the settings as the server uses them, checked when the configuration is loaded,
what a lookup finds, how directory groups become the policy's groups, and the failure a login meets when the
directory cannot answer. The LDAP client itself is registry/auth/ldap.py (the `ldap` extra, imported only
when a directory is configured).

Which source decides: robots (`robot$NAME`) and local users (the database and the htpasswd file) first; a
name that exists locally is checked there and never sent to the directory, so a directory entry can never
take over a local account. Only names unknown locally are looked up in the directory.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from registry.config import ConfigError
from registry.config_entries import Entry, EntryError, described
from registry.errors import RegistryError

if TYPE_CHECKING:
    from registry.auth.ldap import LdapDirectory
    from registry.config import Config, LdapConfig

RETRY_SECONDS = 5  # after a failure, directory logins are answered 503 at once for this long (Retry-After)
MAX_USERNAME_CHARACTERS = 256
MAX_PASSWORD_BYTES = 1024  # directory passwords are not bcrypt's; this only bounds what is sent on


class DirectoryConfigError(ConfigError):
    """An `auth.ldap` option that cannot be used; `option` names it, so the error can say where it was set."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")
        self.option = option


class DirectoryUnavailable(RegistryError):
    """The directory did not answer (down, unreachable, TLS refused, the service bind refused): 503 for
    directory users, with Retry-After. `reason` is for the log, never for the client."""

    def __init__(self, reason: str, retry_after: float = RETRY_SECONDS) -> None:
        super().__init__("UNAVAILABLE", "the directory is unreachable", retry_after=retry_after)
        self.reason = reason


@dataclass(frozen=True)
class Endpoint:
    url: str
    host: str
    port: int
    tls: bool  # ldaps://


@dataclass(frozen=True)
class DirectoryGroup:
    name: str  # the group's name attribute (or the first value of its DN)
    dn: str


@dataclass(frozen=True)
class DirectoryUser:
    dn: str
    groups: tuple[str, ...]  # the policy's groups, mapped


@dataclass(frozen=True)
class DirectorySettings:
    endpoints: tuple[Endpoint, ...]
    bind_dn: str
    bind_password: str = field(repr=False)
    base_dn: str
    user_filter: str
    group_base_dn: str
    group_filter: str
    group_name_attribute: str
    member_of_attribute: str
    group_map: tuple[tuple[str, str], ...]  # (directory group name or normalized DN, lower case; policy group)
    start_tls: bool
    ca_file: str
    tls_verify: bool
    connect_timeout: float
    timeout: float
    cache_seconds: float
    pool_size: int

    def policy_groups(self, found: list[DirectoryGroup]) -> tuple[str, ...]:
        """The policy's groups for the directory groups a user is in: each name as it is, or with a group_map
        only the groups it lists, under their mapped names."""
        if not self.group_map:
            names = [group.name for group in found if group.name]
        else:
            keys = {key for group in found for key in (group.name.lower(), normalized_dn(group.dn))}
            names = [policy_group for directory, policy_group in self.group_map if directory in keys]
        return tuple(sorted(set(names)))


def normalized_dn(dn: str) -> str:
    """A DN to compare: lower case, no spaces around `=` and `,` (enough for the DNs a config names)."""
    parts = [part.strip() for part in dn.split(",")]
    return ",".join("=".join(side.strip() for side in part.split("=", 1)) for part in parts).lower()


def directory_settings(config: Config) -> DirectorySettings | None:
    """`auth.ldap` checked and resolved (the password file read); None when no directory is configured.
    Raises DirectoryConfigError naming the option."""
    ldap = config.auth.ldap
    if not ldap.url.strip():
        return None
    if config.auth.mode == "none":
        raise DirectoryConfigError("auth.ldap.url", "a directory needs auth.mode basic or token (mode none asks "
                                                    "nobody for credentials)")
    endpoints = tuple(_endpoint(url.strip()) for url in ldap.url.split(",") if url.strip())
    if ldap.start_tls and any(endpoint.tls for endpoint in endpoints):
        raise DirectoryConfigError("auth.ldap.start_tls", "StartTLS is for ldap:// URLs; an ldaps:// URL is TLS "
                                                          "from the start")
    if not ldap.base_dn.strip():
        raise DirectoryConfigError("auth.ldap.base_dn", "required with auth.ldap.url: where users are searched")
    _check_filter("auth.ldap.user_filter", ldap.user_filter, ("{username}",), required=True)
    _check_filter("auth.ldap.group_filter", ldap.group_filter, ("{dn}", "{username}"), required=False)
    for option, value in (("auth.ldap.group_name_attribute", ldap.group_name_attribute),
                          ("auth.ldap.member_of_attribute", ldap.member_of_attribute)):
        if value and not _is_attribute(value):
            raise DirectoryConfigError(option, f"{value[:100]!r} is not an attribute name")
    if not ldap.group_name_attribute:
        raise DirectoryConfigError("auth.ldap.group_name_attribute", "required (cn, for most directories)")
    for option, number, least in (("auth.ldap.connect_timeout", ldap.connect_timeout, 0.1),
                                  ("auth.ldap.timeout", ldap.timeout, 0.1),
                                  ("auth.ldap.cache_seconds", ldap.cache_seconds, 0.0),
                                  ("auth.ldap.pool_size", ldap.pool_size, 1)):
        if number < least:
            raise DirectoryConfigError(option, f"must be at least {least:g}")
    if ldap.ca_file:
        _check_ca_file(ldap.ca_file)
    return DirectorySettings(
        endpoints=endpoints, bind_dn=ldap.bind_dn.strip(), bind_password=_bind_password(ldap),
        base_dn=ldap.base_dn.strip(), user_filter=ldap.user_filter.strip(),
        group_base_dn=ldap.group_base_dn.strip() or ldap.base_dn.strip(), group_filter=ldap.group_filter.strip(),
        group_name_attribute=ldap.group_name_attribute, member_of_attribute=ldap.member_of_attribute,
        group_map=_group_map(ldap.group_map), start_tls=ldap.start_tls, ca_file=ldap.ca_file,
        tls_verify=ldap.tls_verify, connect_timeout=ldap.connect_timeout, timeout=ldap.timeout,
        cache_seconds=ldap.cache_seconds, pool_size=ldap.pool_size)


def check_directory(config: Config) -> None:
    """What the server will use, checked before it starts: the settings, then each filter by the LDAP client's
    own parser (the `ldap` extra must be installed; registry/settings.py checks that first)."""
    settings = directory_settings(config)
    if settings is None:
        return
    from registry.auth.ldap import filter_problem

    for option, text in (("auth.ldap.user_filter", settings.user_filter),
                         ("auth.ldap.group_filter", settings.group_filter)):
        problem = filter_problem(text) if text else None
        if problem:
            raise DirectoryConfigError(option, f"not a valid LDAP filter: {problem}")


def open_directory(config: Config) -> LdapDirectory | None:
    settings = directory_settings(config)
    if settings is None:
        return None
    from registry.auth.ldap import LdapDirectory

    return LdapDirectory(settings)


def _endpoint(url: str) -> Endpoint:
    option = "auth.ldap.url"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DirectoryConfigError(option, f"{url[:200]!r}: {exc}") from None
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise DirectoryConfigError(option, f"{url[:200]!r} is not ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise DirectoryConfigError(option, f"{url[:200]!r}: only the scheme, host and port are read (give the "
                                           f"DNs and filters as their own options)")
    tls = parts.scheme == "ldaps"
    return Endpoint(url, parts.hostname, port or (636 if tls else 389), tls)


def _check_filter(option: str, text: str, placeholders: tuple[str, ...], required: bool) -> None:
    text = text.strip()
    if not text:
        if required:
            raise DirectoryConfigError(option, "required")
        return
    if not (text.startswith("(") and text.endswith(")")):
        raise DirectoryConfigError(option, f"{text[:200]!r} is not a filter in parentheses")
    if not any(placeholder in text for placeholder in placeholders):
        raise DirectoryConfigError(option, f"{text[:200]!r} must hold {' or '.join(placeholders)}")


def _is_attribute(name: str) -> bool:
    """An attribute description: a name (letters, digits, hyphens) or a numeric OID."""
    return name.isascii() and len(name) <= 100 and all(c.isalnum() or c in "-." for c in name) and name[0].isalnum()


def _check_ca_file(path: str) -> None:
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise DirectoryConfigError("auth.ldap.ca_file", f"{path}: not a readable PEM CA file ({exc})") from None


def _bind_password(ldap: LdapConfig) -> str:
    if ldap.bind_password and ldap.bind_password_file:
        raise DirectoryConfigError("auth.ldap.bind_password_file", "give bind_password or bind_password_file, "
                                                                   "not both")
    password = ldap.bind_password
    if ldap.bind_password_file:
        try:
            text = Path(ldap.bind_password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DirectoryConfigError("auth.ldap.bind_password_file",
                                       f"{ldap.bind_password_file}: cannot read it: {exc}") from None
        password = text.split("\n", 1)[0].rstrip("\r")
        if not password:
            raise DirectoryConfigError("auth.ldap.bind_password_file", f"{ldap.bind_password_file} is empty")
    if ldap.bind_dn.strip() and not password:
        # A DN with an empty password is an "unauthenticated bind", which servers answer as anonymous.
        raise DirectoryConfigError("auth.ldap.bind_dn", "needs bind_password (or bind_password_file)")
    if password and not ldap.bind_dn.strip():
        raise DirectoryConfigError("auth.ldap.bind_password", "given without auth.ldap.bind_dn")
    return password


def _group_map(raw: list[Any]) -> tuple[tuple[str, str], ...]:
    mapped = []
    for index, item in enumerate(raw):
        where = f"entry {index + 1}"
        try:
            entry = Entry(item, where, ("directory", "group"), EntryError,
                          what="an entry is a mapping with directory (a group's name or DN) and group")
            directory = entry.text("directory", required=True, max_length=1000).strip()
            group = entry.text("group", required=True, max_length=200).strip()
        except EntryError as exc:
            raise DirectoryConfigError("auth.ldap.group_map", str(exc)) from None
        if not directory or not group:
            raise DirectoryConfigError("auth.ldap.group_map", f"{where}: directory and group must not be blank; "
                                                              f"got {described(item)}")
        mapped.append((normalized_dn(directory) if "=" in directory else directory.lower(), group))
    return tuple(mapped)

"""Upstream registries from config, and the routing that picks one for a request.

One mirror endpoint serves every upstream at once:
- Docker's `registry-mirrors` sends root requests (`/v2/library/alpine/...`): with an upstream marked
  `docker_hub`, every root name is Docker Hub's, except under `mirror.local_namespaces` (e.g. `team/...`),
  which are this registry's own: a local push can never stand in for a Docker Hub image;
- containerd's `hosts.toml` adds `?ns=<registry host>`: the upstream whose `host` (or alias)
  it names;
- a path prefix `/v2/<alias or host>/<name>/...` reaches any upstream from any client.
Mirrored content is cached under the local repository `<alias>/<upstream name>`, so all three
forms share one cache, and nobody can push into it.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from registry.client import RegistryClient
from registry.client.client import trust_context
from registry.config_entries import Entry, EntryError
from registry.errors import RegistryError

DOCKER_HUB_HOSTS = ("docker.io", "registry-1.docker.io", "index.docker.io")


class MirrorConfigError(EntryError):
    pass


_UPSTREAM_KEYS = ("alias", "url", "host", "docker_hub", "username", "password", "tag_ttl", "ca_file")


@dataclass
class UpstreamStats:
    hits: int = 0
    misses: int = 0
    bytes_from_upstream: int = 0
    bytes_served: int = 0
    throttled: int = 0
    stale_serves: int = 0
    revalidations: int = 0
    upstream_errors: int = 0


@dataclass
class Upstream:
    alias: str
    url: str
    host: str
    docker_hub: bool = False
    username: str = ""
    password: str = ""
    tag_ttl: float = 300.0
    ca_file: str = ""  # PEM CA(s) to trust for this upstream besides the system's (a private CA)
    stats: UpstreamStats = field(default_factory=UpstreamStats)
    blocked_until: float = 0.0  # after a 429: no upstream calls before this (monotonic)
    _client: RegistryClient | None = None

    @property
    def client(self) -> RegistryClient:
        if self._client is None:
            # One retry: a mirror answers from its cache (or fails fast) rather than keep a client waiting.
            self._client = RegistryClient(self.url, self.username, self.password, retries=1,
                                          user_agent="registry-mirror",
                                          tls=trust_context([Path(self.ca_file)] if self.ca_file else []))
        return self._client

    def cache_name(self, upstream_name: str) -> str:
        return f"{self.alias}/{upstream_name}"

    def throttled_for(self) -> float:
        return max(self.blocked_until - time.monotonic(), 0.0)

    def block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, time.monotonic() + max(seconds, 1.0))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def parse_upstreams(entries: list[Any]) -> list[Upstream]:
    upstreams: list[Upstream] = []
    for index, raw in enumerate(entries):
        entry = Entry(raw, f"mirror.upstreams[{index}]", _UPSTREAM_KEYS, MirrorConfigError)
        url = entry.text("url", required=True)
        try:
            parsed = urlparse(url)
            _ = parsed.port  # a port that is not a number in range raises here
        except ValueError as exc:
            raise entry.fail("url", str(exc)) from None
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise entry.fail("url", f"expected http(s)://host[:port], got {url!r}")
        alias = entry.text("alias", required=True)
        if "/" in alias or alias != alias.lower() or not alias.isascii():
            raise entry.fail("alias", "must be one lower-case path component")
        docker_hub = entry.flag("docker_hub")
        ca_file = entry.text("ca_file")
        if ca_file:
            _check_ca_file(entry, ca_file)
        host = entry.text("host") or parsed.netloc  # Docker Hub's own names route to a docker_hub one anyway
        tag_ttl = entry.number("tag_ttl", 300.0)
        assert tag_ttl is not None
        upstreams.append(Upstream(alias=alias, url=url, host=host, docker_hub=docker_hub,
                                  username=entry.text("username"), password=entry.text("password"),
                                  tag_ttl=tag_ttl, ca_file=ca_file))
    aliases = [u.alias for u in upstreams]
    if len(set(aliases)) != len(aliases):
        raise MirrorConfigError("mirror.upstreams: aliases must be unique")
    if sum(u.docker_hub for u in upstreams) > 1:
        raise MirrorConfigError("mirror.upstreams: at most one upstream can be the docker_hub mirror")
    return upstreams


def _check_ca_file(entry: Entry, ca_file: str) -> None:
    """Refuse at start-up, not at the first pull, a CA file that cannot be read or parsed."""
    try:
        trust_context([Path(ca_file)])
    except (OSError, ssl.SSLError) as exc:
        raise entry.fail("ca_file", f"{ca_file}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the path: "embedded null byte"
        raise entry.fail("ca_file", f"{ca_file!r}: {exc}") from None


@dataclass(frozen=True)
class Route:
    upstream: Upstream
    name: str  # the repository name upstream

    @property
    def cache_name(self) -> str:
        return self.upstream.cache_name(self.name)


def parse_local_namespaces(entries: list[Any], upstreams: list[Upstream]) -> tuple[str, ...]:
    """mirror.local_namespaces: repository name prefixes (`team`, `ci/builds`) that stay this registry's own
    beside a docker_hub upstream; none may be an upstream's alias or host (those name its cache)."""
    from registry.reference import validate_name

    found = []
    for index, raw in enumerate(entries):
        where = f"mirror.local_namespaces[{index}]"
        if not isinstance(raw, str):
            raise MirrorConfigError(f"{where}: expected a repository name prefix such as team, got "
                                    f"{type(raw).__name__}")
        try:
            validate_name(raw)
        except RegistryError:
            raise MirrorConfigError(f"{where}: {raw[:100]!r} is not a repository name prefix") from None
        first = raw.partition("/")[0]
        taken = next((u for u in upstreams if first in (u.alias, u.host)), None)
        if taken is not None:
            raise MirrorConfigError(f"{where}: {first} names the cache of upstream {taken.alias}")
        found.append(raw)
    return tuple(found)


class Router:
    def __init__(self, upstreams: list[Upstream], local_namespaces: tuple[str, ...] = ()) -> None:
        self.upstreams = upstreams
        self.local_namespaces = local_namespaces
        self.by_prefix: dict[str, Upstream] = {}
        for upstream in upstreams:
            self.by_prefix[upstream.alias] = upstream
            self.by_prefix.setdefault(upstream.host, upstream)
            if upstream.docker_hub:
                for host in DOCKER_HUB_HOSTS:
                    self.by_prefix.setdefault(host, upstream)
        self.docker_hub = next((u for u in upstreams if u.docker_hub), None)

    def prefixed(self, name: str) -> Route | None:
        """`<alias or host>/<name>`: the explicit form, also the cache's own namespace."""
        first, _, rest = name.partition("/")
        upstream = self.by_prefix.get(first)
        if upstream is None or not rest:
            return None
        if upstream.docker_hub and "/" not in rest:
            rest = f"library/{rest}"
        return Route(upstream, rest)

    def by_namespace(self, ns: str, name: str) -> Route:
        """containerd's `?ns=<host>`: that host's upstream; an unknown host is NAME_UNKNOWN, so
        containerd falls back to the real registry instead of getting someone else's images."""
        upstream = self.by_prefix.get(ns)
        if upstream is None:
            raise RegistryError("NAME_UNKNOWN", f"this mirror has no upstream for {ns}", detail={"ns": ns[:100]})
        if upstream.docker_hub and "/" not in name:
            name = f"library/{name}"
        return Route(upstream, name)

    def cache_owner(self, name: str) -> Upstream | None:
        """The upstream whose cache the repository `name` is (`<alias>/...`), if any."""
        first, _, rest = name.partition("/")
        return next((u for u in self.upstreams if u.alias == first), None) if rest else None

    def is_local(self, name: str) -> bool:
        """Under one of mirror.local_namespaces."""
        return any(name == ns or name.startswith(ns + "/") for ns in self.local_namespaces)

    def docker_hub_route(self, name: str) -> Route | None:
        """A root name's route to the docker_hub upstream; None without one, or for a local namespace."""
        if self.docker_hub is None or self.is_local(name):
            return None
        return Route(self.docker_hub, name if "/" in name else f"library/{name}")

    def mirrored_namespace(self, name: str) -> Upstream | None:
        """Whose namespace a push to `name` would land in (pushes there are refused)."""
        first = name.partition("/")[0]
        if first in self.by_prefix and "/" in name:
            return self.by_prefix[first]
        return self.docker_hub if self.docker_hub_route(name) is not None else None

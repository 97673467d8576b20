"""Replication rules: what to copy, from where to where, and when. One parser serves the config file
(`replication.rules`) and the admin API, so a rule means the same wherever it was written.

    replication:
      rules:
        - name: from-dc1
          direction: pull                  # pull: remote -> here; push: here -> remote
          url: https://dc1.example.com      # any registry speaking the Distribution API
          username: robot$sync              # basic credentials, also used for bearer tokens
          password: s3cr3t
          ca_file: /etc/registry/dc1-ca.pem
          repositories: [team/**]           # path globs; names without wildcards need no catalog
          tags: ["v*", latest]              # shell globs (default: every tag)
          versions: ">=1.2 <2"              # a semver range tags must also satisfy
          platforms: [linux/amd64]          # an index's children copied (default: all)
          destination_prefix: dc1/          # prepended to each repository name at the destination
          schedule: every 10m               # or cron: "0 3 * * *"
          on_push: true                     # push rules: run on each local push that matches
          concurrency: 4                    # blobs moved at once
          delete: false                     # tags gone at the source are deleted at the destination
          referrers: true                   # signatures, SBOMs and attestations follow their subject
          enabled: true
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from registry.config_entries import Entry, EntryError, described, shown
from registry.cron import Schedule, parse_schedule
from registry.globs import path_match, path_pattern_problem, shell_match
from registry.errors import RegistryError
from registry.reference import validate_name
from registry.semver import VersionRange, parse_range

KEYS = ("name", "direction", "url", "username", "password", "ca_file", "repositories", "tags", "versions",
        "platforms", "destination_prefix", "schedule", "on_push", "concurrency", "delete", "referrers", "enabled")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PLATFORM = re.compile(r"[a-z0-9_.-]{1,32}/[a-z0-9_.-]{1,32}(?:/[a-z0-9_.-]{1,32})?")
MAX_PATTERNS = 100


class ReplicationConfigError(EntryError):
    """A replication rule that cannot be used: names the rule, the key and why."""


@dataclass(frozen=True)
class Rule:
    name: str
    direction: str
    url: str
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    repositories: tuple[str, ...] = ("**",)
    tags: tuple[str, ...] = ("*",)
    versions: str = ""
    platforms: tuple[str, ...] = ()
    destination_prefix: str = ""
    schedule: str = ""
    on_push: bool = False
    concurrency: int = 4
    delete: bool = False
    referrers: bool = True
    enabled: bool = True
    version_range: VersionRange | None = field(default=None, compare=False, repr=False)
    timing: Schedule | None = field(default=None, compare=False, repr=False)

    def wants_repository(self, name: str) -> bool:
        return any(path_match(pattern, name) for pattern in self.repositories)

    def wants_tag(self, tag: str) -> bool:
        if not any(shell_match(pattern, tag) for pattern in self.tags):
            return False
        return self.version_range is None or self.version_range.matches(tag)

    def wants_platform(self, platform: dict[str, Any] | None) -> bool:
        """An index child's platform (`{"os", "architecture", "variant"}`); children without one (an
        attestation manifest) go with the index when no platform filter is set, and are left out
        otherwise."""
        if not self.platforms:
            return True
        if not isinstance(platform, dict):
            return False
        os_arch = f"{platform.get('os', '')}/{platform.get('architecture', '')}"
        variant = platform.get("variant")
        return any(p == os_arch or (variant and p == f"{os_arch}/{variant}") for p in self.platforms)

    def destination(self, repository: str) -> str:
        return self.destination_prefix + repository

    def literal_repositories(self) -> list[str] | None:
        """The repository names when no pattern has a wildcard: a remote need not offer its catalog."""
        if any(any(c in pattern for c in "*?[") for pattern in self.repositories):
            return None
        return list(self.repositories)

    def as_json(self, with_secret: bool = False) -> dict[str, Any]:
        """The definition as written (the admin API shows it; the password only as whether one is set)."""
        shown_fields = {key: getattr(self, key) for key in KEYS if key != "password"}
        for key in ("repositories", "tags", "platforms"):
            shown_fields[key] = list(shown_fields[key])
        if with_secret:
            shown_fields["password"] = self.password
        else:
            shown_fields["password_set"] = bool(self.password)
        return shown_fields


def parse_rules(raw: Any, where: str = "replication.rules") -> list[Rule]:
    if not isinstance(raw, list):
        raise ReplicationConfigError(f"{where}: expected a list; got {described(raw)}")
    found: list[Rule] = []
    for index, item in enumerate(raw):
        rule = parse_rule(item, f"{where}[{index}]")
        if any(r.name == rule.name for r in found):
            raise ReplicationConfigError(f"{where}[{index}]: name {rule.name!r} is used by an earlier rule")
        found.append(rule)
    return found


def parse_rule(raw: Any, where: str = "rule") -> Rule:
    entry = Entry(raw, where, KEYS, ReplicationConfigError, "a rule is a mapping {name, direction, url, ...}")
    name = entry.text("name", required=True, max_length=64)
    if not NAME.fullmatch(name):
        raise entry.fail("name", "letters, digits, '.', '_' and '-', up to 64, starting with a letter or digit")
    direction = entry.text("direction", required=True, max_length=8)
    if direction not in ("pull", "push"):
        raise entry.fail("direction", f"pull or push; got {shown(direction)}")
    versions = entry.text("versions", max_length=256)
    try:
        version_range = parse_range(versions) if versions.strip() else None
    except ValueError as exc:
        raise entry.fail("versions", str(exc)) from None
    schedule = entry.text("schedule", max_length=128)
    try:
        timing = parse_schedule(schedule) if schedule.strip() else None
    except ValueError as exc:
        raise entry.fail("schedule", str(exc)) from None
    on_push = entry.flag("on_push")
    if on_push and direction != "push":
        raise entry.fail("on_push", "only a push rule runs on local pushes (a pull rule runs on its schedule)")
    prefix = entry.text("destination_prefix", max_length=200)
    if prefix and not _starts_a_name(prefix):
        raise entry.fail("destination_prefix", f"{shown(prefix)} does not start a repository name "
                                               "(lowercase path components, e.g. dc1/)")
    concurrency = entry.integer("concurrency", 4, minimum=1, maximum=32)
    assert concurrency is not None
    return Rule(name=name, direction=direction, url=_url(entry), username=entry.text("username", max_length=255),
                password=entry.text("password", max_length=4096), ca_file=entry.text("ca_file", max_length=4096),
                repositories=_repository_patterns(entry), tags=_patterns(entry, "tags", ("*",)),
                versions=versions, platforms=_platforms(entry), destination_prefix=prefix, schedule=schedule,
                on_push=on_push, concurrency=concurrency, delete=entry.flag("delete"),
                referrers=entry.flag("referrers", True), enabled=entry.flag("enabled", True),
                version_range=version_range, timing=timing)


def _starts_a_name(prefix: str) -> bool:
    try:
        validate_name(prefix + "x")
    except RegistryError:
        return False
    return True


def _url(entry: Entry) -> str:
    url, parts = entry.http_url("url")
    url = url.rstrip("/")
    if parts.path.rstrip("/"):
        raise entry.fail("url", "an http:// or https:// URL of a registry's root (no path)")
    if parts.username or parts.password:
        raise entry.fail("url", "credentials go in username and password, not in the URL")
    # The scheme in lower case, as urljoin writes it: the client checks an upload's Location against this URL.
    return parts.scheme + url[len(parts.scheme):]


def _patterns(entry: Entry, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    patterns = entry.names(key, "a pattern")
    if len(patterns) > MAX_PATTERNS:
        raise entry.fail(key, f"at most {MAX_PATTERNS} patterns")
    for pattern in patterns:
        if len(pattern) > 255:
            raise entry.fail(key, f"{shown(pattern)} is longer than 255 characters")
    return tuple(patterns) or default


def _repository_patterns(entry: Entry) -> tuple[str, ...]:
    patterns = _patterns(entry, "repositories", ("**",))
    for pattern in patterns:
        problem = path_pattern_problem(pattern)
        if problem:
            raise entry.fail("repositories", f"{shown(pattern)} {problem}")
    return patterns


def _platforms(entry: Entry) -> tuple[str, ...]:
    platforms = entry.names("platforms", "a platform")
    for platform in platforms:
        if not PLATFORM.fullmatch(platform):
            raise entry.fail("platforms", f"{shown(platform)} is not os/architecture[/variant], e.g. linux/arm64/v8")
    return tuple(platforms)

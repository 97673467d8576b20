"""The access policy: rules by repository pattern granting pull, push and delete.

A policy file (YAML) lists rules; the first rule whose repository pattern and subject match
decides nothing alone: grants from every matching rule add up. Patterns are shell-style
(`team/*`, `*`); `*` crosses slashes. Subjects: `users`, `groups`, `anonymous: true`, and
optionally `networks` (CIDRs the client address must be in).

    admins: [alice, "group:ops"]
    rules:
      - repositories: ["*"]
        anonymous: true
        actions: [pull]
      - repositories: ["team/*"]
        groups: [devs]
        actions: [pull, push]

Without a file the default policy applies (see Policy.default).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from registry.auth.identity import Identity

ACTIONS = ("pull", "push", "delete")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(Exception):
    pass


@dataclass(frozen=True)
class Rule:
    repositories: tuple[str, ...]
    actions: frozenset[str]
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    anonymous: bool = False
    authenticated: bool = False  # any signed-in user or robot
    networks: tuple[Network, ...] = ()

    def applies_to(self, identity: Identity, repository: str) -> bool:
        if not any(fnmatch.fnmatchcase(repository, pattern) for pattern in self.repositories):
            return False
        if self.networks and not _in_networks(identity.address, self.networks):
            return False
        if identity.anonymous:
            return self.anonymous
        return (self.authenticated or identity.name in self.users
                or any(group in self.groups for group in identity.groups))


def _in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def parse_networks(value: str | list[str]) -> tuple[Network, ...]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())
    except ValueError as exc:
        raise PolicyError(f"bad network: {exc}") from None


class Policy:
    def __init__(self, rules: list[Rule], admins: list[str]) -> None:
        self.rules = rules
        self.admin_users = {a for a in admins if not a.startswith("group:")}
        self.admin_groups = {a[len("group:"):] for a in admins if a.startswith("group:")}

    def allowed(self, identity: Identity, repository: str) -> frozenset[str]:
        """The actions `identity` may take on `repository`."""
        granted: set[str] = set()
        for rule in self.rules:
            if rule.applies_to(identity, repository):
                granted |= rule.actions
        if identity.kind == "robot":  # a robot never exceeds its own scope
            if not any(fnmatch.fnmatchcase(repository, p) for p in identity.robot_repositories):
                return frozenset()
            granted &= set(identity.robot_actions)
        if identity.kind == "token":  # a bearer token carries its grants
            return identity.granted.get(repository, frozenset())
        return frozenset(granted)

    def is_admin(self, identity: Identity) -> bool:
        return identity.kind in ("user", "token") and (identity.name in self.admin_users
                                            or any(g in self.admin_groups for g in identity.groups))

    @classmethod
    def default(cls, mode: str, anonymous_pull: bool, anonymous_push_networks: str, admins: list[str]) -> "Policy":
        """Without a policy file. Mode none: anyone pulls, only the given networks (loopback by default)
        push and delete. With credentials: signed-in users and robots may do everything (robots
        within their scope), and anonymous callers pull only if allowed."""
        everything = frozenset(ACTIONS)
        if mode == "none":
            return cls([Rule(("*",), frozenset({"pull"}), anonymous=True),
                        Rule(("*",), everything, anonymous=True, networks=parse_networks(anonymous_push_networks))],
                       admins)
        rules = [Rule(("*",), everything, authenticated=True)]
        if anonymous_pull:
            rules.append(Rule(("*",), frozenset({"pull"}), anonymous=True))
        return cls(rules, admins)

    @classmethod
    def load(cls, path: Path) -> "Policy":
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"{path}: {exc}") from None
        if not isinstance(document, dict):
            raise PolicyError(f"{path}: expected a mapping with `rules` and `admins`")
        rules = [_rule(raw, f"{path}: rules[{i}]") for i, raw in enumerate(document.get("rules") or [])]
        admins = document.get("admins") or []
        if not isinstance(admins, list):
            raise PolicyError(f"{path}: admins must be a list")
        return cls(rules, [str(a) for a in admins])


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: a rule is a mapping")
    unknown = set(raw) - {"repositories", "actions", "users", "groups", "anonymous", "authenticated", "networks"}
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)}")
    repositories = raw.get("repositories")
    if isinstance(repositories, str):
        repositories = [repositories]
    actions = raw.get("actions") or []
    if not repositories or not all(isinstance(r, str) for r in repositories):
        raise PolicyError(f"{where}: repositories must list patterns")
    if not actions or not set(actions) <= set(ACTIONS):
        raise PolicyError(f"{where}: actions must be among {', '.join(ACTIONS)}")
    return Rule(tuple(repositories), frozenset(actions), frozenset(raw.get("users") or []),
                frozenset(raw.get("groups") or []), bool(raw.get("anonymous")), bool(raw.get("authenticated")),
                parse_networks(raw.get("networks") or []))

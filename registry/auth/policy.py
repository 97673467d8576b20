"""The access policy: rules by repository pattern granting pull, push and delete.

A policy file (YAML) lists rules; the first rule whose repository pattern and subject match
decides nothing alone: grants from every matching rule add up. Patterns are shell globs
(`team/*`, `*`; registry/globs.py): `*` crosses slashes. Subjects: `users`, `groups`,
`anonymous: true`, and optionally `networks` (CIDRs the client address must be in).

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

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from registry.auth.files import AuthFileError
from registry.config_entries import Entry, described, shown
from registry.globs import shell_match
from registry.auth.identity import Identity

ACTIONS = ("pull", "push", "delete")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(AuthFileError):
    """A policy file (or network list) that cannot be used: names the file, the entry and why."""


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
        if not any(shell_match(pattern, repository) for pattern in self.repositories):
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


def parse_networks(value: str | list[str], where: str = "networks") -> tuple[Network, ...]:
    """CIDRs, as a comma-separated string or a list; PolicyError naming `where` and the bad item."""
    items = value.split(",") if isinstance(value, str) else value
    networks = []
    for item in items:
        if not isinstance(item, str):
            raise PolicyError(f"{where}: {shown(item)} is not a network (a CIDR such as 10.0.0.0/8)")
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError as exc:
            raise PolicyError(f"{where}: {shown(item)} is not a network ({exc})") from None
    return tuple(networks)


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
            if not any(shell_match(p, repository) for p in identity.robot_repositories):
                return frozenset()
            granted &= set(identity.robot_actions)
        if identity.kind == "token":  # a bearer token carries its grants
            return identity.granted.get(repository, frozenset())
        return frozenset(granted)

    def is_admin(self, identity: Identity) -> bool:
        return identity.kind in ("user", "token") and (identity.name in self.admin_users
                                            or any(g in self.admin_groups for g in identity.groups))

    @classmethod
    def default(cls, mode: str, anonymous_pull: bool, anonymous_push_networks: str, admins: list[str]) -> Policy:
        """Without a policy file. Mode none: anyone pulls, only the given networks (loopback by default)
        push and delete. With credentials: signed-in users and robots may do everything (robots
        within their scope), and anonymous callers pull only if allowed."""
        everything = frozenset(ACTIONS)
        if mode == "none":
            local = parse_networks(anonymous_push_networks, "auth.anonymous_push_networks")
            return cls([Rule(("*",), frozenset({"pull"}), anonymous=True),
                        Rule(("*",), everything, anonymous=True, networks=local)], admins)
        rules = [Rule(("*",), everything, authenticated=True)]
        if anonymous_pull:
            rules.append(Rule(("*",), frozenset({"pull"}), anonymous=True))
        return cls(rules, admins)

    @classmethod
    def load(cls, path: Path) -> Policy:
        """The policy in `path`; any problem is one PolicyError naming the file, the entry and why."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{path}: cannot read the policy file: {exc}") from None
        try:
            document = yaml.load(text, Loader=_PolicyLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
        # From PyYAML: an int of 4,300+ digits or a 30th of February (ValueError), a \U escape past C's int
        except (ValueError, OverflowError) as exc:
            raise PolicyError(f"{path}: not valid YAML: {' '.join(str(exc).split())[:200]}") from None
        except RecursionError:
            raise PolicyError(f"{path}: nested too deeply") from None
        top = Entry({} if document is None else document, str(path), ("rules", "admins"), PolicyError,
                    what="the top level must be a mapping with `rules` (and `admins`)")
        rules_raw = top.raw.get("rules")
        if rules_raw is None:
            rules_raw = []
        if not isinstance(rules_raw, list):
            raise PolicyError(f"{path}: rules must be a list of rules; got {described(rules_raw)}")
        lines = getattr(rules_raw, "lines", [])
        rules = [_rule(raw, _where(path, i, raw, lines[i] if i < len(lines) else 0)) for i, raw in enumerate(rules_raw)]
        admins = top.names("admins", "a user name or group:NAME")
        for admin in admins:
            if admin.startswith("group:") and not admin[len("group:"):].strip():
                raise PolicyError(f"{path}: admins: {shown(admin)} names no group")
        return cls(rules, admins)


RULE_KEYS = ("repositories", "actions", "users", "groups", "anonymous", "authenticated", "networks")


class _Located(dict):
    """A mapping from the policy file that remembers the line it starts on."""

    line = 0


class _Sequence(list):
    """A list from the policy file that remembers the line each item starts on."""

    lines: list[int] = []


class _PolicyLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys (the last one would silently win) and keeps line numbers."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Located:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:
            continue  # an unhashable key: construct_mapping below says so
        if first != key_node.start_mark.line + 1:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shown(key)} (first on line {first})", key_node.start_mark)
    mapping = _Located(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


def _construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> _Sequence:
    sequence = _Sequence(loader.construct_sequence(node, deep=True))
    sequence.lines = [item.start_mark.line + 1 for item in node.value]
    return sequence


_PolicyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_PolicyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """`line L, column C: what` on one line (PyYAML's own text spans several and quotes the source)."""
    mark = getattr(exc, "problem_mark", None)
    what = " ".join(str(part) for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part)
    if mark is None or not what:
        return " ".join(str(exc).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}"


def _where(path: Path, index: int, raw: Any, line: int = 0) -> str:
    """`FILE: rules[I] (line N, repositories P)`: enough to find the entry in the file."""
    parts = []
    if line:
        parts.append(f"line {line}")
    if isinstance(raw, dict):
        patterns = raw.get("repositories")
        if isinstance(patterns, str) or (isinstance(patterns, list) and patterns
                                         and all(isinstance(p, str) for p in patterns)):
            parts.append("repositories " + (patterns if isinstance(patterns, str) else ", ".join(patterns))[:80])
    return f"{path}: rules[{index}]" + (f" ({'; '.join(parts)})" if parts else "")


def _rule(raw: Any, where: str) -> Rule:
    entry = Entry(raw, where, RULE_KEYS, PolicyError, what="a rule is a mapping with repositories, actions and who")
    repositories = entry.names("repositories", "a repository pattern such as team/*")
    if not repositories:
        raise PolicyError(f"{where}: repositories must list at least one pattern (such as team/* or *)")
    actions = entry.names("actions", f"an action ({', '.join(ACTIONS)})")
    if not actions:
        raise PolicyError(f"{where}: actions must list at least one of {', '.join(ACTIONS)}")
    for action in actions:
        if action not in ACTIONS:
            raise PolicyError(f"{where}: actions: unknown action {shown(action)} (known: {', '.join(ACTIONS)})")
    users, groups = entry.names("users", "a user name"), entry.names("groups", "a group name")
    anonymous_, authenticated = entry.flag("anonymous"), entry.flag("authenticated")
    if not (users or groups or anonymous_ or authenticated):
        raise PolicyError(f"{where}: the rule applies to nobody: give users, groups, anonymous: true "
                          f"or authenticated: true")
    networks_raw = raw.get("networks")
    if networks_raw is not None and not isinstance(networks_raw, (str, list)):
        raise PolicyError(f"{where}: networks must be a list of CIDRs; got {described(networks_raw)}")
    networks = parse_networks(networks_raw or [], f"{where}: networks")
    return Rule(tuple(repositories), frozenset(actions), frozenset(users), frozenset(groups), anonymous_,
                authenticated, networks)

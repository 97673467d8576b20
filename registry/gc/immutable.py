"""Immutable tags: rules of a repository pattern and a tag pattern. A tag a rule holds, once pushed, is
neither moved to another manifest nor deleted, nor is its manifest deleted by digest (or its repository
as a whole); retention spares it, and gc keeps what a tag keeps anyway. Pushing the same manifest to it
again is fine (clients do).

Rules come from the configuration (`immutable_tags`, fixed at start-up) and from the database (added
through the admin API). The database's are read by the very transaction that would move or delete a
tag, so a rule added or deleted in one process applies at once in every other (workers, or hosts
sharing PostgreSQL); a push that only creates a tag reads none. Repository patterns are path globs
(registry/globs.py: `*` within a segment, `**` across), tag patterns shell globs (`v*`, `1.[0-9]*`).
A mirror's cache repositories (`<alias>/...`) follow their upstream: no rule holds their tags.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from registry.config_entries import Entry
from registry.errors import RegistryError
from registry.gc.policy import PolicyError
from registry.globs import path_match, path_pattern_problem, shell_match
from registry.metadata import immutable_rules as rule_rows
from registry.metadata.db import Connection

PATTERN_LENGTH = 255
RULE_KEYS = ("repositories", "tags")


class ImmutableRuleError(PolicyError):
    """A rule that cannot be used (in the configuration, or an admin API body): names the entry and why."""


@dataclass(frozen=True)
class ImmutableRule:
    repositories: str  # a path glob: prod/**
    tags: str  # a shell glob: v*
    id: int | None = None  # its database row (added through the admin API); None: from the configuration
    created_at: float | None = None
    created_by: str | None = None

    def holds(self, repository: str, tag: str) -> bool:
        return path_match(self.repositories, repository) and shell_match(self.tags, tag)

    def __str__(self) -> str:
        # No double quotes: skopeo and podman print a message inside quotes of their own, escaping them.
        return f"rule: repositories {self.repositories}, tags {self.tags}"

    def named(self) -> dict[str, Any]:
        """What a refused client is told of the rule (not who added it)."""
        return {"id": self.id, "repositories": self.repositories, "tags": self.tags,
                "source": "config" if self.id is None else "admin"}

    def describe(self) -> dict[str, Any]:
        """The rule as the admin API lists it."""
        return {**self.named(), "created_at": self.created_at, "created_by": self.created_by}


def parse_rule(raw: Any, where: str) -> ImmutableRule:
    """One rule, `{repositories, tags}`, from the configuration or an admin API body."""
    entry = Entry(raw, where, RULE_KEYS, ImmutableRuleError,
                  what="a rule is a mapping with repositories and tags, such as {repositories: prod/**, tags: v*}")
    repositories = entry.text("repositories", required=True, max_length=PATTERN_LENGTH)
    problem = _text_problem(repositories) or path_pattern_problem(repositories)
    if problem is None and repositories != repositories.lower():
        problem = "has upper-case letters, which no repository name does"
    if problem is not None:
        raise entry.fail("repositories", f"{repositories[:80]!r} {problem}")
    tags = entry.text("tags", required=True, max_length=PATTERN_LENGTH)
    problem = _text_problem(tags) or ("holds a /, which no tag does" if "/" in tags else None)
    if problem is not None:
        raise entry.fail("tags", f"{tags[:80]!r} {problem}")
    return ImmutableRule(repositories, tags)


def _text_problem(pattern: str) -> str | None:
    if not all("!" <= character <= "~" for character in pattern):
        return "holds a space, a control or a non-ASCII character, which no name or tag does"
    return None


def parse_immutable_tags(items: list[Any]) -> list[ImmutableRule]:
    return [parse_rule(raw, f"immutable_tags[{index}]") for index, raw in enumerate(items)]


class ImmutableTags:
    """The rules in force: the configuration's and the database's."""

    def __init__(self, configured: Sequence[ImmutableRule] = (), mirror_aliases: Iterable[str] = ()) -> None:
        self.configured = tuple(configured)
        self.exempt_prefixes = tuple(f"{alias}/" for alias in mirror_aliases)

    @classmethod
    def from_config(cls, config: Any) -> ImmutableTags:
        # The upstreams' aliases as registry/mirror/upstreams.py reads them (checked at start-up): the
        # mirror's layer is above this one.
        aliases = [str(raw["alias"]) for raw in config.mirror.upstreams
                   if isinstance(raw, dict) and raw.get("alias") is not None]
        return cls(parse_immutable_tags(config.immutable_tags), aliases)

    def exempt(self, repository: str) -> bool:
        """A mirror's cache repository: it follows its upstream, whatever the rules say."""
        return repository.startswith(self.exempt_prefixes)

    async def rules(self, conn: Connection) -> list[ImmutableRule]:
        """Every rule, the configuration's first, read in the caller's transaction."""
        stored = [ImmutableRule(r.repositories, r.tags, r.id, r.created_at, r.created_by)
                  for r in await rule_rows.list_rules(conn)]
        return [*self.configured, *stored]

    def rule_holding(self, rules: Iterable[ImmutableRule], repository: str, tag: str) -> ImmutableRule | None:
        """The first of `rules` (from `rules()`) that holds the tag, or None."""
        if self.exempt(repository):
            return None
        return next((rule for rule in rules if rule.holds(repository, tag)), None)

    async def holding(self, conn: Connection, repository: str, tags: Iterable[str]) -> tuple[str, ImmutableRule] | None:
        """The first of `tags` (of `repository`) that a rule holds, and the rule; None when none is held.
        Reads the database's rules only when there is a tag to decide on."""
        names = list(tags)
        if not names or self.exempt(repository):
            return None
        rules = await self.rules(conn)
        for name in names:
            rule = self.rule_holding(rules, repository, name)
            if rule is not None:
                return name, rule
        return None


def held_tag_error(repository: str, tag: str, rule: ImmutableRule) -> RegistryError:
    """A move or delete of a held tag: DENIED, naming the rule (docker prints `denied: <message>`)."""
    return RegistryError("DENIED", f"tag {tag} in {repository} is immutable ({rule})",
                         detail={"repository": repository, "tag": tag, "rule": rule.named()})


def held_manifest_error(repository: str, digest: str, tag: str, rule: ImmutableRule) -> RegistryError:
    """A delete by digest of a manifest a held tag points at (it would take the tag with it)."""
    return RegistryError("DENIED", f"manifest {digest} in {repository} is held by immutable tag {tag} ({rule})",
                         detail={"repository": repository, "digest": digest, "tag": tag, "rule": rule.named()})


def held_content_error(repository: str, digest: str, tag: str, rule: ImmutableRule) -> RegistryError:
    """A blob delete of a layer or config of an image a held tag points at (its pulls would break)."""
    return RegistryError("DENIED", f"blob {digest} in {repository} belongs to immutable tag {tag} ({rule})",
                         detail={"repository": repository, "digest": digest, "tag": tag, "rule": rule.named()})


def held_repository_error(repository: str, tag: str, rule: ImmutableRule) -> RegistryError:
    """A delete of a whole repository that holds a held tag."""
    return RegistryError("DENIED", f"repository {repository} holds immutable tag {tag} ({rule})",
                         detail={"repository": repository, "tag": tag, "rule": rule.named()})

"""Retention policies and namespace quotas, parsed from the configuration's lists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from registry.config_entries import Entry, EntryError, shown
from registry.globs import shell_match

DAY = 86400.0
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
          "t": 1000 ** 4, "tb": 1000 ** 4, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}


class PolicyError(EntryError):
    pass


_RETENTION_KEYS = ("repositories", "keep_last", "older_than_days", "keep_tags", "keep_pulled_within_days")


@dataclass(frozen=True)
class RetentionPolicy:
    """Which tags of matching repositories to delete.

    A tag is deleted when every rule that is set says it may go: it is not among the
    `keep_last` most recently pushed, it was pushed more than `older_than_days` ago, it does not
    match `keep_tags`, and it was not pulled within `keep_pulled_within_days`. At least one of
    `keep_last` / `older_than_days` must be set, so a policy never deletes everything by accident.
    """

    repositories: str  # shell glob (registry/globs.py: `*` crosses `/`), e.g. "team/*"
    keep_last: int | None = None
    older_than_days: float | None = None
    keep_tags: str | None = None  # regular expression, matched against the whole tag
    keep_pulled_within_days: float | None = None

    def matches(self, repository: str) -> bool:
        return shell_match(self.repositories, repository)

    def keeps_by_name(self, tag: str) -> bool:
        return self.keep_tags is not None and re.fullmatch(self.keep_tags, tag) is not None


@dataclass(frozen=True)
class Quota:
    namespace: str
    bytes: int


def parse_retention(items: list[Any]) -> list[RetentionPolicy]:
    policies = []
    for index, raw in enumerate(items):
        entry = Entry(raw, f"retention.policies[{index}]", _RETENTION_KEYS, PolicyError)
        keep_tags = entry.text("keep_tags") or None
        if keep_tags is not None:
            try:
                re.compile(keep_tags)
            except (re.error, RecursionError, OverflowError) as exc:
                raise entry.fail("keep_tags", f"not a regular expression: {exc}") from None
        policy = RetentionPolicy(
            repositories=entry.text("repositories", required=True),
            keep_last=entry.integer("keep_last"),
            older_than_days=entry.number("older_than_days"),
            keep_tags=keep_tags,
            keep_pulled_within_days=entry.number("keep_pulled_within_days"))
        if policy.keep_last is None and policy.older_than_days is None:
            raise PolicyError(f"{entry.where}: set keep_last or older_than_days (or both)")
        policies.append(policy)
    return policies


def parse_quotas(items: list[Any]) -> list[Quota]:
    quotas = []
    for index, raw in enumerate(items):
        entry = Entry(raw, f"quota.namespaces[{index}]", ("namespace", "bytes"), PolicyError)
        namespace = entry.text("namespace", required=True).strip("/")
        if not entry.has("bytes"):
            raise entry.fail("bytes", "required")
        quotas.append(Quota(namespace, parse_size(entry.raw["bytes"], f"{entry.where}: bytes")))
    return quotas


_SIZE = re.compile(r"\s*([0-9]{1,15}(?:\.[0-9]{1,9})?)\s*([a-zA-Z]{0,3})\s*")


def parse_size(value: Any, where: str = "size") -> int:
    """Bytes from 123, "10GiB", "500 MB"."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < 2 ** 63:
            return value  # beyond, never str(): it raises past 4,300 digits (YAML's hex integers get there)
        raise PolicyError(f"{where}: {shown(value)} is not a size from 0 to 2**63-1 bytes")
    match = _SIZE.fullmatch(str(value)) if isinstance(value, (str, float)) else None
    if not match or match.group(2).lower() not in _UNITS:
        raise PolicyError(f"{where}: not a size: {shown(value)} (use bytes or units like 500MB, 10GiB)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size >= 2 ** 63:
        raise PolicyError(f"{where}: {shown(value)} is too large")
    return size


def quota_for(quotas: list[Quota], repository: str) -> Quota | None:
    """The quota of the longest namespace containing the repository."""
    best = None
    for quota in quotas:
        if repository == quota.namespace or repository.startswith(quota.namespace + "/"):
            if best is None or len(quota.namespace) > len(best.namespace):
                best = quota
    return best


def format_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)

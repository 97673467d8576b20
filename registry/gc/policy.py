"""Retention policies and namespace quotas, parsed from the configuration's lists."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

DAY = 86400.0
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
          "t": 1000 ** 4, "tb": 1000 ** 4, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class RetentionPolicy:
    """Which tags of matching repositories to delete.

    A tag is deleted when every rule that is set says it may go: it is not among the
    `keep_last` most recently pushed, it was pushed more than `older_than_days` ago, it does not
    match `keep_tags`, and it was not pulled within `keep_pulled_within_days`. At least one of
    `keep_last` / `older_than_days` must be set, so a policy never deletes everything by accident.
    """

    repositories: str  # glob, e.g. "team/*"
    keep_last: int | None = None
    older_than_days: float | None = None
    keep_tags: str | None = None  # regular expression, matched against the whole tag
    keep_pulled_within_days: float | None = None

    def matches(self, repository: str) -> bool:
        return fnmatch.fnmatchcase(repository, self.repositories)

    def keeps_by_name(self, tag: str) -> bool:
        return self.keep_tags is not None and re.fullmatch(self.keep_tags, tag) is not None


@dataclass(frozen=True)
class Quota:
    namespace: str
    bytes: int


def parse_retention(items: list[Any]) -> list[RetentionPolicy]:
    policies = []
    for number, item in enumerate(items, start=1):
        where = f"retention.policies[{number}]"
        if not isinstance(item, dict) or not isinstance(item.get("repositories"), str):
            raise PolicyError(f"{where}: a mapping with `repositories` (a glob such as team/*) is required")
        unknown = set(item) - {"repositories", "keep_last", "older_than_days", "keep_tags", "keep_pulled_within_days"}
        if unknown:
            raise PolicyError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        try:
            policy = RetentionPolicy(
                repositories=item["repositories"],
                keep_last=_optional(item, "keep_last", int),
                older_than_days=_optional(item, "older_than_days", float),
                keep_tags=item.get("keep_tags"),
                keep_pulled_within_days=_optional(item, "keep_pulled_within_days", float))
            if policy.keep_tags is not None:
                re.compile(policy.keep_tags)
        except (TypeError, ValueError, re.error) as exc:
            raise PolicyError(f"{where}: {exc}") from None
        if policy.keep_last is None and policy.older_than_days is None:
            raise PolicyError(f"{where}: set keep_last or older_than_days (or both)")
        if (policy.keep_last or 0) < 0 or (policy.older_than_days or 0) < 0:
            raise PolicyError(f"{where}: keep_last and older_than_days cannot be negative")
        policies.append(policy)
    return policies


def parse_quotas(items: list[Any]) -> list[Quota]:
    quotas = []
    for number, item in enumerate(items, start=1):
        where = f"quotas[{number}]"
        if not isinstance(item, dict) or not isinstance(item.get("namespace"), str) or "bytes" not in item:
            raise PolicyError(f"{where}: a mapping with `namespace` and `bytes` is required")
        quotas.append(Quota(item["namespace"].strip("/"), parse_size(item["bytes"], where)))
    return quotas


def parse_size(value: Any, where: str = "size") -> int:
    """Bytes from 123, "10GiB", "500 MB"."""
    if isinstance(value, int) and value >= 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise PolicyError(f"{where}: not a size: {value!r} (use bytes or units like 500MB, 10GiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def quota_for(quotas: list[Quota], repository: str) -> Quota | None:
    """The quota of the longest namespace containing the repository."""
    best = None
    for quota in quotas:
        if repository == quota.namespace or repository.startswith(quota.namespace + "/"):
            if best is None or len(quota.namespace) > len(best.namespace):
                best = quota
    return best


def _optional(item: dict[str, Any], key: str, kind: type) -> Any:
    value = item.get(key)
    return None if value is None else kind(value)


def format_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)

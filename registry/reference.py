"""Repository names and tags by the distribution-spec grammar."""

from __future__ import annotations

import re

from registry.errors import RegistryError

MAX_NAME_LENGTH = 255
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError("NAME_INVALID", f"repository name longer than {MAX_NAME_LENGTH} characters",
                            detail={"name": name[:MAX_NAME_LENGTH] + "..."})
    if not _NAME.match(name):
        raise RegistryError("NAME_INVALID", "invalid repository name", detail={"name": name})
    return name


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG.match(tag))


def validate_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise RegistryError("TAG_INVALID", "invalid tag", detail={"tag": tag[:200]})
    return tag

"""Repository names and tags by the distribution-spec grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import RegistryError

MAX_NAME_LENGTH = 255
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError("NAME_INVALID", f"repository name longer than {MAX_NAME_LENGTH} characters",
                            detail={"name": name[:MAX_NAME_LENGTH] + "..."})
    if not _NAME.fullmatch(name):
        raise RegistryError("NAME_INVALID", "invalid repository name", detail={"name": name})
    return name


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG.fullmatch(tag))


def validate_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise RegistryError("TAG_INVALID", "invalid tag", detail={"tag": tag[:200]})
    return tag


DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True)
class ImageReference:
    """`[host[:port]/]name[:tag][@digest]` as Docker reads it: docker.io and library/ when no host."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What to ask the manifests endpoint for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_image_reference(value: str) -> ImageReference:
    """Parse an image reference; the first component is a host when it has a dot or a port or is localhost."""
    rest, _, digest = value.partition("@")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DEFAULT_REGISTRY, rest
    name, colon, tag = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "")
    if registry == DEFAULT_REGISTRY and "/" not in name:
        name = f"library/{name}"
    validate_name(name)
    if colon:
        validate_tag(tag)
    if digest and not re.fullmatch(r"[a-z0-9]+:[a-f0-9]{32,}", digest):
        raise RegistryError("DIGEST_INVALID", "invalid digest in image reference", detail={"reference": value})
    return ImageReference(registry, name, tag or (None if digest else "latest"), digest or None)

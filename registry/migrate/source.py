"""What a source directory offers, whichever layout it is: repositories with their tags, manifests and
blobs by digest, where each blob's bytes are, and what could not be read (each with its reason)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from registry.digest import Digest


class LayoutError(Exception):
    """PATH is not a layout this command reads (or cannot be read at all): a one-line usage error."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in the source skipped before any import: a link file or an index entry that says nothing
    usable. `kind`: blob, manifest, tag or repository."""

    kind: str
    repository: str | None
    name: str  # a digest, a tag, a path
    reason: str


@dataclass
class SourceRepository:
    name: str  # as the source calls it (before any prefix)
    tags: dict[str, Digest] = field(default_factory=dict)
    manifests: list[Digest] = field(default_factory=list)  # every manifest it holds, untagged ones too
    blobs: list[Digest] = field(default_factory=list)  # blobs linked to it (layers, configs), used or not


@dataclass
class Source:
    kind: str  # "distribution" or "oci"
    root: Path
    blob_path: Callable[[Digest], Path]  # where a blob's bytes would be (they may not be)
    repositories: list[SourceRepository] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

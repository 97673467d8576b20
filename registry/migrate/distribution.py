"""Reading a CNCF Distribution (registry:2, Debian's docker-registry) filesystem storage root.

Its layout under `docker/registry/v2/`:
- `blobs/sha256/xx/HEX/data`: every blob's bytes, manifests included;
- `repositories/NAME/` (NAME may be nested, `a/b/c`), holding `_layers/sha256/HEX/link` (blobs linked to
  the repository), `_manifests/revisions/sha256/HEX/link` (its manifests), `_manifests/tags/TAG/current/link`
  (each tag's manifest) and `_uploads/` (unfinished uploads, ignored). A link file holds `sha256:HEX`.

Only names and digests are read here; the bytes are checked by the importer.
"""

from __future__ import annotations

import os
from pathlib import Path

from registry.digest import Digest
from registry.migrate.links import BadLink, read_link
from registry.migrate.source import Problem, Source, SourceRepository

REPOSITORY_MARKERS = ("_manifests", "_layers", "_uploads")


def storage_root(path: Path) -> Path | None:
    """The `v2` directory for PATH (the storage root, or `v2` itself); None when PATH is neither."""
    nested = path / "docker" / "registry" / "v2"
    if nested.is_dir():
        return nested
    holds = [(path / part).is_dir() for part in ("repositories", "blobs")]
    if all(holds) or (path.name == "v2" and any(holds)):
        return path
    return None


def blob_path(v2: Path, digest: Digest) -> Path:
    return v2 / "blobs" / digest.algorithm / digest.hex[:2] / digest.hex / "data"


def read_distribution(v2: Path) -> Source:
    source = Source("distribution", v2, lambda digest: blob_path(v2, digest))
    top = v2 / "repositories"
    for directory in _repository_dirs(top):
        name = directory.relative_to(top).as_posix()
        source.repositories.append(_read_repository(directory, name, source.problems))
    source.repositories.sort(key=lambda repository: repository.name)
    return source


def _repository_dirs(top: Path) -> list[Path]:
    """Every directory under `top` holding `_manifests`, `_layers` or `_uploads`; symbolic links are not
    followed (a source could point one anywhere)."""
    found = []
    for dirpath, dirnames, _ in os.walk(top):
        if any(marker in dirnames for marker in REPOSITORY_MARKERS):
            found.append(Path(dirpath))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("_"))
    return found


def _read_repository(directory: Path, name: str, problems: list[Problem]) -> SourceRepository:
    repository = SourceRepository(name)
    repository.manifests = _digest_links(directory / "_manifests" / "revisions", name, "manifest", problems)
    repository.blobs = _digest_links(directory / "_layers", name, "blob", problems)
    tags_dir = directory / "_manifests" / "tags"
    for tag in _subdirs(tags_dir):
        link = tags_dir / tag / "current" / "link"
        try:
            repository.tags[tag] = read_link(link)
        except BadLink as exc:
            problems.append(Problem("tag", name, tag, f"{exc} ({link})"))
    return repository


def _digest_links(directory: Path, repository: str, kind: str, problems: list[Problem]) -> list[Digest]:
    """The digests of `ALGORITHM/HEX/link` files under `directory`, each checked against its path."""
    digests = []
    for algorithm in _subdirs(directory):
        for encoded in _subdirs(directory / algorithm):
            link = directory / algorithm / encoded / "link"
            try:
                digest = read_link(link)
            except BadLink as exc:
                problems.append(Problem(kind, repository, f"{algorithm}:{encoded}", f"{exc} ({link})"))
                continue
            if str(digest) != f"{algorithm}:{encoded}":
                problems.append(Problem(kind, repository, f"{algorithm}:{encoded}",
                                        f"link file names {digest}, not the digest of its directory ({link})"))
                continue
            digests.append(digest)
    return digests


def _subdirs(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []

"""Which layout PATH is, read by the reader for it; a LayoutError (one line) when it is neither."""

from __future__ import annotations

from pathlib import Path

from registry.errors import RegistryError
from registry.migrate.distribution import read_distribution, storage_root
from registry.migrate.oci_layout import is_oci_layout, read_oci_layout
from registry.migrate.source import LayoutError, Source
from registry.reference import validate_name


def open_source(path: Path, repository: str | None) -> Source:
    """The source at `path`; `repository`: the name an OCI layout's images go to (a Distribution root
    names its own repositories)."""
    if not path.exists():
        raise LayoutError(f"{path}: no such directory")
    if not path.is_dir():
        raise LayoutError(f"{path} is not a directory")
    if is_oci_layout(path):
        if repository is None:
            raise LayoutError(f"{path} is an OCI image layout: name the repository to import it into with "
                              "--repository NAME")
        try:
            validate_name(repository)
        except RegistryError as exc:
            raise LayoutError(f"--repository {repository!r}: {exc.message}") from None
        return read_oci_layout(path, repository)
    v2 = storage_root(path)
    if v2 is None:
        raise LayoutError(f"{path} is neither a registry:2 storage root (with docker/registry/v2/) nor an OCI "
                          "image layout (with oci-layout and index.json)")
    if repository is not None:
        raise LayoutError(f"{path} is a registry:2 storage root, whose repositories keep their names: "
                          "--repository is for OCI layouts (--repository-prefix puts them under a namespace)")
    return read_distribution(v2)

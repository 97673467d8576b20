"""Reading an OCI image layout: `oci-layout`, `index.json` and `blobs/ALGORITHM/HEX`.

index.json's descriptors name what the layout holds; a descriptor's `org.opencontainers.image.ref.name`
annotation is its tag, and one without is an untagged manifest. A bad descriptor is skipped with its
reason; an index.json that is not an index at all makes PATH unusable (a LayoutError).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry import json_strict
from registry.digest import Digest, parse_digest
from registry.errors import RegistryError
from registry.migrate.source import LayoutError, Problem, Source, SourceRepository

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
MAX_INDEX_BYTES = 64 * 1024 * 1024  # a descriptor is ~200 bytes: room for hundreds of thousands


@dataclass(frozen=True, slots=True)
class IndexEntry:
    digest: Digest
    media_type: str
    size: int
    ref_name: str | None
    raw: dict[str, Any]  # the descriptor as written, kept whole when an export adds to the layout


def is_oci_layout(path: Path) -> bool:
    return (path / LAYOUT_FILE).is_file()


def blob_path(root: Path, digest: Digest) -> Path:
    return root / "blobs" / digest.algorithm / digest.hex


def parse_index(data: bytes) -> tuple[list[IndexEntry], list[str]]:
    """index.json's descriptors, and a reason for each one that is not a usable descriptor."""
    try:
        document = json_strict.loads(data)
    except json_strict.StrictJSONError as exc:
        raise LayoutError(f"index.json is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise LayoutError("index.json is not a JSON object")
    if type(document.get("schemaVersion")) is not int or document["schemaVersion"] != 2:
        raise LayoutError("index.json has no schemaVersion 2")
    descriptors = document.get("manifests", [])
    if not isinstance(descriptors, list):
        raise LayoutError("index.json's manifests is not a list")
    entries, problems = [], []
    for position, raw in enumerate(descriptors):
        try:
            entries.append(_entry(raw))
        except ValueError as exc:
            problems.append(f"index.json manifests[{position}]: {exc}")
    return entries, problems


def _entry(raw: Any) -> IndexEntry:
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    media_type, digest, size, annotations = raw.get("mediaType"), raw.get("digest"), raw.get("size"), \
        raw.get("annotations")
    if not isinstance(media_type, str) or not media_type:
        raise ValueError("no mediaType")
    if not isinstance(digest, str):
        raise ValueError("no digest")
    try:
        parsed = parse_digest(digest)
    except RegistryError as exc:
        raise ValueError(f"{exc.message}: {digest[:80]!r}") from None
    if type(size) is not int or size < 0:
        raise ValueError("size is not a non-negative integer")
    if annotations is not None and (not isinstance(annotations, dict)
                                    or not all(isinstance(v, str) for v in annotations.values())):
        raise ValueError("annotations do not map strings to strings")
    ref_name = (annotations or {}).get(REF_NAME)
    return IndexEntry(parsed, media_type, size, ref_name, raw)


def read_index(root: Path) -> tuple[list[IndexEntry], list[str]]:
    path = root / INDEX_FILE
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INDEX_BYTES + 1)
    except FileNotFoundError:
        raise LayoutError(f"{path} is missing") from None
    except OSError as exc:
        raise LayoutError(f"{path} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_INDEX_BYTES:
        raise LayoutError(f"{path} is larger than {MAX_INDEX_BYTES} bytes")
    return parse_index(data)


def check_layout_file(root: Path) -> None:
    try:
        document = json.loads((root / LAYOUT_FILE).read_bytes()[:4096])
    except (OSError, ValueError, UnicodeDecodeError):
        raise LayoutError(f"{root / LAYOUT_FILE} is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("imageLayoutVersion"), str):
        raise LayoutError(f"{root / LAYOUT_FILE} has no imageLayoutVersion")


def read_oci_layout(root: Path, repository: str) -> Source:
    check_layout_file(root)
    entries, reasons = read_index(root)
    source = Source("oci", root, lambda digest: blob_path(root, digest))
    source.problems += [Problem("manifest", repository, INDEX_FILE, reason) for reason in reasons]
    found = SourceRepository(repository)
    for entry in entries:
        if entry.digest not in found.manifests:
            found.manifests.append(entry.digest)
        if entry.ref_name is None:
            continue
        if entry.ref_name in found.tags and found.tags[entry.ref_name] != entry.digest:
            source.problems.append(Problem("tag", repository, entry.ref_name,
                                           "index.json names this tag twice, for different manifests"))
            continue
        found.tags[entry.ref_name] = entry.digest
    source.repositories.append(found)
    return source

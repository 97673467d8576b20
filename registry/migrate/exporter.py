"""`registry export`: a repository's tags, and everything they reach, written as an OCI image layout.

Each tag's manifest is listed in index.json with its tag as `org.opencontainers.image.ref.name`; its
bytes, an index's children, configs and layers go to `blobs/ALGORITHM/HEX`, exact; the referrers of every
exported manifest (signatures, SBOMs) go too, listed without a ref name. Every file is streamed into a
temporary file, fsynced and renamed; index.json is written last, so an interrupted export leaves the
layout as it was plus some blobs. Adding to an existing layout keeps its other entries.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry import manifest as mf
from registry.digest import Digest, parse_digest
from registry.metadata import manifests as manifest_rows
from registry.metadata import tags as tag_rows
from registry.metadata.db import Database
from registry.storage.filesystem import make_directories
from registry.migrate.files import StagedFile, write_file
from registry.migrate.oci_layout import (INDEX_FILE, LAYOUT_FILE, LAYOUT_VERSION, REF_NAME, IndexEntry, blob_path,
                                         check_layout_file, is_oci_layout, read_index)
from registry.migrate.source import LayoutError
from registry.storage import BlobStore


class ExportError(Exception):
    """The export cannot start (no such repository or tag, a destination it must not write): one line."""


@dataclass
class ExportReport:
    repository: str
    destination: str
    tags: list[str]
    manifests: int = 0
    referrers: int = 0
    blobs_written: int = 0
    blobs_present: int = 0
    bytes_written: int = 0
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"repository": self.repository, "destination": self.destination, "tags": self.tags,
                "manifests": self.manifests, "referrers": self.referrers, "blobs_written": self.blobs_written,
                "blobs_present": self.blobs_present, "bytes_written": self.bytes_written, "problems": self.problems}


def parse_target(value: str) -> tuple[str, list[str] | None]:
    """`REPOSITORY[:TAG[,TAG...]]` -> (repository, tags or None for all)."""
    name, colon, tags = value.rpartition(":") if ":" in value.rsplit("/", 1)[-1] else (value, "", "")
    if not colon:
        return value, None
    listed = [tag for tag in tags.split(",") if tag]
    if not listed:
        raise ExportError(f"no tag after ':' in {value!r}")
    return name, listed


def check_destination(dest: Path) -> list[IndexEntry]:
    """The entries of the layout already at `dest` (none when it is absent or empty); ExportError when
    `dest` is something else."""
    if not dest.exists():
        return []
    if not dest.is_dir():
        raise ExportError(f"{dest} exists and is not a directory")
    if not any(dest.iterdir()):
        return []
    if not is_oci_layout(dest):
        raise ExportError(f"{dest} is not empty and not an OCI image layout: give an empty or new directory")
    try:
        check_layout_file(dest)
        entries, problems = read_index(dest)
    except LayoutError as exc:
        raise ExportError(str(exc)) from None
    if problems:
        raise ExportError(f"{dest}/{INDEX_FILE}: {problems[0]}")
    return entries


class Exporter:
    def __init__(self, db: Database, store: BlobStore, repository: str, tags: list[str] | None, dest: Path) -> None:
        self.db = db
        self.store = store
        self.repository = repository
        self.wanted = tags
        self.dest = dest
        self.report = ExportReport(repository, str(dest), [])
        self._done: set[str] = set()

    async def run(self) -> ExportReport:
        existing = check_destination(self.dest)
        tagged = await self._tagged_rows()
        make_directories(self.dest / "blobs")
        if not (self.dest / LAYOUT_FILE).exists():
            await asyncio.to_thread(write_file, self.dest / LAYOUT_FILE,
                                    json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
        descriptors: list[dict[str, Any]] = []
        referrers: list[dict[str, Any]] = []
        for tag, row in tagged:
            descriptors.append({"mediaType": index_media_type(row.media_type), "digest": row.digest,
                                "size": len(row.payload), "annotations": {REF_NAME: tag}})
            await self._manifest(row, referrers)
        self.report.tags = [tag for tag, _ in tagged]
        await asyncio.to_thread(self._write_index, existing, descriptors + referrers)
        return self.report

    async def _tagged_rows(self) -> list[tuple[str, manifest_rows.ManifestRow]]:
        tags = self.wanted
        if tags is None:
            tags = await tag_rows.list_tags(self.db, self.repository, None, None)
            if tags is None:
                raise ExportError(f"no repository {self.repository}")
            if not tags:
                raise ExportError(f"{self.repository} has no tags")
        found = []
        async with self.db.read() as conn:
            for tag in tags:
                row = await manifest_rows.manifest_by_tag(conn, self.repository, tag)
                if row is None:
                    raise ExportError(f"no tag {self.repository}:{tag}")
                found.append((tag, row))
        return found

    async def _manifest(self, row: manifest_rows.ManifestRow, referrers: list[dict[str, Any]]) -> None:
        """Write the manifest, then all it reaches and its referrers; each manifest once."""
        pending = [row]
        while pending:
            current = pending.pop()
            if current.digest in self._done:
                continue
            self._done.add(current.digest)
            self.report.manifests += 1
            await self._write_bytes(parse_digest(current.digest), current.payload)
            parsed = mf.parse_manifest(current.payload, current.media_type)
            for descriptor in parsed.blobs:
                await self._copy_blob(parse_digest(descriptor.digest))
            async with self.db.read() as conn:
                for child in parsed.manifests:
                    found = await manifest_rows.manifest_by_digest(conn, self.repository, child.digest)
                    if found is None:
                        self.report.problems.append(f"{current.digest} lists {child.digest}, which is not stored")
                    else:
                        pending.append(found)
                for referrer in await manifest_rows.referrers(conn, self.repository, current.digest, None):
                    found = await manifest_rows.manifest_by_digest(conn, self.repository, referrer.digest)
                    if found is None or referrer.digest in self._done:
                        continue
                    referrers.append(_referrer_descriptor(referrer))
                    self.report.referrers += 1
                    pending.append(found)

    async def _write_bytes(self, digest: Digest, data: bytes) -> None:
        final = blob_path(self.dest, digest)
        if _has(final, len(data)):
            self.report.blobs_present += 1
            return
        make_directories(final.parent)
        await asyncio.to_thread(write_file, final, data)
        self.report.blobs_written += 1
        self.report.bytes_written += len(data)

    async def _copy_blob(self, digest: Digest) -> None:
        """Stream a blob from the store into the layout, checking its digest on the way."""
        if str(digest) in self._done:
            return
        self._done.add(str(digest))
        size = await self.store.stat(digest)
        if size is None:
            self.report.problems.append(f"blob {digest} is missing from the storage")
            return
        final = blob_path(self.dest, digest)
        if _has(final, size):
            self.report.blobs_present += 1
            return
        make_directories(final.parent)
        hasher = digest.hasher()
        try:
            with StagedFile(final) as out:
                async for chunk in self.store.read(digest):
                    hasher.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
                if hasher.hexdigest() != digest.hex:
                    raise _Corrupt()
        except _Corrupt:
            self.report.problems.append(f"blob {digest} in the storage does not match its digest (fsck)")
            return
        self.report.blobs_written += 1
        self.report.bytes_written += size

    def _write_index(self, existing: list[IndexEntry], ours: list[dict[str, Any]]) -> None:
        """index.json: the entries already there that ours do not replace (same tag, or same untagged
        digest), then ours."""
        tags = {d["annotations"][REF_NAME] for d in ours if "annotations" in d and REF_NAME in d["annotations"]}
        untagged = {d["digest"] for d in ours if REF_NAME not in d.get("annotations", {})}
        kept = [entry.raw for entry in existing
                if not (entry.ref_name in tags if entry.ref_name is not None else str(entry.digest) in untagged)]
        index = {"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": kept + ours}
        write_file(self.dest / INDEX_FILE, json.dumps(index, indent=2).encode() + b"\n")


class _Corrupt(Exception):
    pass


def index_media_type(media_type: str) -> str:
    """The type index.json gives a manifest: Docker's types as the OCI types of the same shape. skopeo (its
    oci: transport) finds a tag only among OCI manifests and indexes; the bytes, and so the digest and the
    manifest's own mediaType field, stay Docker's, and readers go by those (docs/migrating.md, Export)."""
    return {mf.DOCKER_MANIFEST: mf.OCI_MANIFEST, mf.DOCKER_MANIFEST_LIST: mf.OCI_INDEX}.get(media_type, media_type)


def _has(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _referrer_descriptor(referrer: manifest_rows.Referrer) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"mediaType": index_media_type(referrer.media_type), "digest": referrer.digest,
                                  "size": referrer.size}
    if referrer.artifact_type:
        descriptor["artifactType"] = referrer.artifact_type
    annotations = {k: v for k, v in (referrer.annotations or {}).items() if k != REF_NAME}  # untagged here
    if annotations:
        descriptor["annotations"] = annotations
    return descriptor

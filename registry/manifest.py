"""Manifest parsing and validation: media types, descriptors, references, subject, artifactType.

Pure functions over the exact bytes pushed; no I/O. The content layer checks that what a
manifest references exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from registry.digest import parse_digest
from registry.errors import RegistryError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")

IMAGE_MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
MANIFEST_MEDIA_TYPES = IMAGE_MANIFESTS + INDEXES

# Layers with these types may live elsewhere (`urls`); they need not be in the registry.
FOREIGN_LAYERS = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass
class ParsedManifest:
    media_type: str
    blobs: list[Descriptor] = field(default_factory=list)  # config and layers that must exist
    manifests: list[Descriptor] = field(default_factory=list)  # index entries that must exist
    subject: str | None = None
    artifact_type: str | None = None  # what the referrers API reports for this manifest
    annotations: dict[str, str] | None = None


def _invalid(message: str, **detail: Any) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail=detail or None)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: descriptor must be an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}: descriptor has no mediaType")
    if not isinstance(digest, str):
        raise _invalid(f"{where}: descriptor has no digest")
    try:
        parse_digest(digest)
    except RegistryError:
        raise _invalid(f"{where}: invalid digest", digest=digest[:200]) from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}: descriptor size must be a non-negative integer")
    return Descriptor(media_type, digest, size)


def _media_type(document: dict[str, Any], content_type: str | None) -> str:
    declared = document.get("mediaType")
    header = (content_type or "").split(";")[0].strip().lower() or None
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    if header in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1 or document.get("schemaVersion") == 1:
        raise RegistryError("MANIFEST_INVALID", "Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if declared and header and header in MANIFEST_MEDIA_TYPES and declared != header:
        raise _invalid("mediaType in the manifest does not match the Content-Type header",
                       mediaType=declared, contentType=header)
    media_type = declared or (header if header in MANIFEST_MEDIA_TYPES else None)
    if media_type is None:  # OCI allows omitting mediaType; infer from the shape
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise _invalid(f"unsupported manifest media type {media_type!r}")
    return media_type


def parse_manifest(payload: bytes, content_type: str | None) -> ParsedManifest:
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("manifest must be a JSON object")
    media_type = _media_type(document, content_type)
    if document.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")

    parsed = ParsedManifest(media_type)
    annotations = document.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise _invalid("annotations must map strings to strings")
        parsed.annotations = annotations
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    if "subject" in document and document["subject"] is not None:
        parsed.subject = _descriptor(document["subject"], "subject").digest

    if media_type in IMAGE_MANIFESTS:
        config = _descriptor(document.get("config"), "config")
        layers = document.get("layers", [])
        if not isinstance(layers, list):
            raise _invalid("layers must be a list")
        parsed.blobs.append(config)
        for index, raw in enumerate(layers):
            layer = _descriptor(raw, f"layers[{index}]")
            if layer.media_type in FOREIGN_LAYERS or (isinstance(raw, dict) and raw.get("urls")):
                continue
            parsed.blobs.append(layer)
        parsed.artifact_type = artifact_type or config.media_type
    else:
        children = document.get("manifests")
        if not isinstance(children, list):
            raise _invalid("an index must have a manifests list")
        parsed.manifests = [_descriptor(raw, f"manifests[{i}]") for i, raw in enumerate(children)]
        parsed.artifact_type = artifact_type
    return parsed


def accepts(accept_headers: list[str], media_type: str) -> bool:
    """Whether an Accept header list admits `media_type` (q-values ignored, like the reference)."""
    major = media_type.split("/")[0]
    for header in accept_headers:
        for item in header.split(","):
            value = item.split(";")[0].strip().lower()
            if value in (media_type, "*/*", f"{major}/*"):
                return True
    return False

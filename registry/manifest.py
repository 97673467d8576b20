"""The one manifest reader: strict JSON (registry/json_strict.py), then media types, descriptors,
references, subject, artifactType.

Every path that takes a manifest or index in (push, mirror fill, runtime pull) reads it here, so
what is stored is what Go clients read the same way. Pure functions over the exact bytes; no I/O.
The content layer checks that what a manifest references exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry import json_strict
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
    document: dict[str, Any] = field(default_factory=dict, repr=False)  # the JSON, for platforms and the like


def _invalid(message: str, **detail: Any) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail=detail or None)


# Go's encoding/json matches keys to fields case-insensitively ("Layers" fills `layers`), so a key
# that differs from a field only in case would mean one thing to Go clients and another here.
_MANIFEST_FIELDS = ("schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests", "subject",
                    "annotations")
_DESCRIPTOR_FIELDS = ("mediaType", "digest", "size", "urls", "annotations", "data", "artifactType", "platform")


def _field_names(fields: tuple[str, ...]) -> tuple[frozenset[str], dict[str, str]]:
    return frozenset(fields), {f.casefold(): f for f in fields}


_MANIFEST_KEYS = _field_names(_MANIFEST_FIELDS)
_DESCRIPTOR_KEYS = _field_names(_DESCRIPTOR_FIELDS)


def _exact_keys(value: dict[str, Any], keys: tuple[frozenset[str], dict[str, str]], where: str) -> None:
    exact, folded = keys
    if value.keys() <= exact:  # the usual case, checked in C
        return
    for key in value:
        if key not in exact and (field_name := folded.get(key.casefold())) is not None:
            raise _invalid(f"{where}key {json_strict.show(key)} differs from \"{field_name}\" only in case "
                           f"(Go clients would read it as \"{field_name}\")")


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: descriptor must be an object")
    _exact_keys(value, _DESCRIPTOR_KEYS, where + ": ")
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


def _schema_version(document: dict[str, Any]) -> int | None:
    """schemaVersion when it is an integer: Go's int field refuses 2.0 and true (Python: 2.0 == 2)."""
    value = document.get("schemaVersion")
    return value if type(value) is int else None


def _media_type(document: dict[str, Any], content_type: str | None) -> str:
    declared = document.get("mediaType")
    header = (content_type or "").split(";")[0].strip().lower() or None
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    if header in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1 or _schema_version(document) == 1:
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


def read_json(payload: bytes) -> dict[str, Any]:
    """The manifest's JSON object by the strict reader, or MANIFEST_INVALID naming the problem."""
    try:
        document = json_strict.loads(payload)
    except json_strict.StrictJSONError as exc:
        raise _invalid(f"manifest {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("manifest must be a JSON object")
    return document


def parse_manifest(payload: bytes, content_type: str | None) -> ParsedManifest:
    document = read_json(payload)
    _exact_keys(document, _MANIFEST_KEYS, "manifest ")
    media_type = _media_type(document, content_type)
    if _schema_version(document) != 2:
        raise _invalid("schemaVersion must be the integer 2")

    parsed = ParsedManifest(media_type, document=document)
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

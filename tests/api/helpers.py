"""Small helpers for the black-box API tests: names, digests, blob and manifest pushes, error checks."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx

# -- media types -----------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

ACCEPT_ALL_MANIFESTS = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

# The OCI "empty descriptor": the two bytes "{}".
EMPTY_DATA = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
EMPTY_DESCRIPTOR = {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2}

ERROR_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED",
    "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
    # Docker Registry HTTP API v2 additions
    "MANIFEST_UNVERIFIED", "TAG_INVALID", "RANGE_INVALID", "PAGINATION_NUMBER_INVALID", "UNKNOWN",
}


# -- names and digests -----------------------------------------------------------------------

def unique_name(prefix: str = "api") -> str:
    """A repository name nobody else in the session uses."""
    return f"{prefix}/{uuid.uuid4().hex[:16]}"


def unique_tag(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def random_bytes(size: int = 64) -> bytes:
    return os.urandom(size)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def digest_of(data: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def random_digest() -> str:
    return sha256(random_bytes(32))


def blob_file(data_dir: Path, digest: str) -> Path:
    algorithm, _, hex_ = digest.partition(":")
    return Path(data_dir) / "blobs" / algorithm / hex_[:2] / hex_


# -- URLs ------------------------------------------------------------------------------------

def with_query(location: str, **params: str) -> str:
    """Add query parameters to an (absolute or relative) upload URL, keeping the ones it has."""
    parts = urlsplit(location)
    query = parts.query
    extra = urlencode(params)
    query = f"{query}&{extra}" if query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def path_of(location: str) -> str:
    return urlsplit(location).path


_LINK = re.compile(r'^\s*<([^>]*)>\s*;\s*rel="?next"?\s*$')


def next_link(resp: httpx.Response) -> str | None:
    """The target of an RFC 5988 `Link: <url>; rel="next"` header, or None when there is none."""
    value = resp.headers.get("Link")
    if value is None:
        return None
    match = _LINK.match(value)
    assert match, f"malformed Link header: {value!r}"
    return match.group(1)


def link_parts(link: str) -> tuple[str, dict[str, str]]:
    """(path, single-valued query parameters) of a Link target."""
    parts = urlsplit(link)
    query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    return parts.path, query


# -- errors ----------------------------------------------------------------------------------

def error_codes(resp: httpx.Response) -> list[str]:
    """Check the spec's error body shape and return its codes."""
    content_type = resp.headers.get("Content-Type", "")
    assert content_type.split(";")[0].strip() == "application/json", (
        f"error response has Content-Type {content_type!r}, body {resp.content[:300]!r}")
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {resp.content[:300]!r}") from None
    assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], body
    codes = []
    for entry in body["errors"]:
        assert isinstance(entry, dict), body
        assert isinstance(entry.get("code"), str) and re.fullmatch(r"[A-Z_]+", entry["code"]), body
        assert isinstance(entry.get("message"), str), body
        codes.append(entry["code"])
    return codes


def assert_error(resp: httpx.Response, status: int, *codes: str) -> None:
    """`status` and a JSON error body whose first code is one of `codes` (any code when none given)."""
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.request.url}: expected {status}, got {resp.status_code} {resp.content[:300]!r}")
    found = error_codes(resp)
    if codes:
        assert found[0] in codes, f"expected error code {codes}, got {found}"


def assert_head_error(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status, (
        f"HEAD {resp.request.url}: expected {status}, got {resp.status_code}")
    assert resp.content == b""


# -- blobs -----------------------------------------------------------------------------------

def start_upload(client: httpx.Client, name: str) -> httpx.Response:
    resp = client.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    assert resp.status_code == 202, f"POST upload: {resp.status_code} {resp.content[:300]!r}"
    assert resp.headers.get("Location"), "POST upload: no Location"
    return resp


def push_blob(client: httpx.Client, name: str, data: bytes, digest: str | None = None) -> str:
    """Push a blob monolithically (POST, then PUT ?digest= with the whole body); return its digest."""
    digest = digest or sha256(data)
    location = start_upload(client, name).headers["Location"]
    resp = client.put(with_query(location, digest=digest), content=data,
                      headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 201, f"PUT upload: {resp.status_code} {resp.content[:300]!r}"
    return digest


def push_blob_single_post(client: httpx.Client, name: str, data: bytes, digest: str | None = None
                          ) -> httpx.Response:
    digest = digest or sha256(data)
    return client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data,
                       headers={"Content-Type": "application/octet-stream"})


def push_empty_blob(client: httpx.Client, name: str) -> str:
    return push_blob(client, name, EMPTY_DATA, EMPTY_DIGEST)


# -- manifests -------------------------------------------------------------------------------

def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def put_manifest(client: httpx.Client, name: str, reference: str, body: bytes,
                 media_type: str = OCI_MANIFEST) -> httpx.Response:
    return client.put(f"/v2/{name}/manifests/{reference}", content=body, headers={"Content-Type": media_type})


def push_manifest(client: httpx.Client, name: str, reference: str, body: bytes,
                  media_type: str = OCI_MANIFEST) -> str:
    resp = put_manifest(client, name, reference, body, media_type)
    assert resp.status_code == 201, f"PUT manifest: {resp.status_code} {resp.content[:300]!r}"
    return sha256(body)


def get_manifest(client: httpx.Client, name: str, reference: str, accept: str = ACCEPT_ALL_MANIFESTS,
                 method: str = "GET") -> httpx.Response:
    return client.request(method, f"/v2/{name}/manifests/{reference}", headers={"Accept": accept})


@dataclass
class Pushed:
    """A manifest pushed to a repository, with what it references."""
    body: bytes
    media_type: str
    digest: str
    blobs: list[str] = field(default_factory=list)
    children: list[Pushed] = field(default_factory=list)

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body)}


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def image_manifest(client: httpx.Client, name: str, *, docker: bool = False, layers: int = 1,
                   config_media_type: str | None = None, artifact_type: str | None = None,
                   subject: dict[str, Any] | None = None, annotations: dict[str, str] | None = None,
                   empty_config: bool = False) -> tuple[bytes, list[str]]:
    """Push the blobs of a fresh image to `name`; return (manifest bytes, blob digests). Does not push it."""
    blobs: list[str] = []
    if empty_config:
        push_empty_blob(client, name)
        config = dict(EMPTY_DESCRIPTOR)
    else:
        config_bytes = encode({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex,
                               "rootfs": {"type": "layers", "diff_ids": []}})
        push_blob(client, name, config_bytes)
        config = descriptor(config_media_type or (DOCKER_CONFIG if docker else OCI_CONFIG), config_bytes)
    blobs.append(config["digest"])
    layer_descriptors = []
    for _ in range(layers):
        layer = random_bytes(128)
        push_blob(client, name, layer)
        layer_descriptors.append(descriptor(DOCKER_LAYER if docker else OCI_LAYER, layer))
        blobs.append(sha256(layer))
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST}
    if artifact_type is not None:
        document["artifactType"] = artifact_type
    document["config"] = config
    document["layers"] = layer_descriptors
    if subject is not None:
        document["subject"] = subject
    if annotations is not None:
        document["annotations"] = annotations
    return encode(document), blobs


def push_image(client: httpx.Client, name: str, reference: str | None = None, **kwargs: Any) -> Pushed:
    """Push a fresh image (blobs, then manifest by `reference`, by digest when None)."""
    docker = kwargs.get("docker", False)
    body, blobs = image_manifest(client, name, **kwargs)
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    push_manifest(client, name, reference or sha256(body), body, media_type)
    return Pushed(body, media_type, sha256(body), blobs)


def push_index(client: httpx.Client, name: str, reference: str | None = None, *, docker: bool = False,
               children: int = 2, artifact_type: str | None = None, subject: dict[str, Any] | None = None,
               annotations: dict[str, str] | None = None) -> Pushed:
    """Push child images by digest, then an OCI index (or Docker manifest list) naming them."""
    pushed = [push_image(client, name, docker=docker) for _ in range(children)]
    media_type = DOCKER_LIST if docker else OCI_INDEX
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type is not None:
        document["artifactType"] = artifact_type
    document["manifests"] = [
        {**child.descriptor(), "platform": {"architecture": arch, "os": "linux"}}
        for child, arch in zip(pushed, ["amd64", "arm64", "s390x", "ppc64le"] * children)
    ]
    if subject is not None:
        document["subject"] = subject
    if annotations is not None:
        document["annotations"] = annotations
    body = encode(document)
    push_manifest(client, name, reference or sha256(body), body, media_type)
    return Pushed(body, media_type, sha256(body), children=pushed)


def push_kind(client: httpx.Client, name: str, kind: str, reference: str | None = None) -> Pushed:
    """One manifest of the named kind: oci-manifest, docker-manifest, oci-index, docker-list."""
    if kind == "oci-manifest":
        return push_image(client, name, reference)
    if kind == "docker-manifest":
        return push_image(client, name, reference, docker=True)
    if kind == "oci-index":
        return push_index(client, name, reference)
    if kind == "docker-list":
        return push_index(client, name, reference, docker=True)
    raise ValueError(kind)


MANIFEST_KINDS = ["oci-manifest", "docker-manifest", "oci-index", "docker-list"]


# -- raw HTTP --------------------------------------------------------------------------------

@dataclass
class RawResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(host: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> RawResponse:
    """Send `path` exactly as given (httpx would normalise `..` segments away)."""
    hostname, _, port = host.rpartition(":")
    conn = http.client.HTTPConnection(hostname, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return RawResponse(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def assert_raw_error(resp: RawResponse, status: int, *codes: str) -> None:
    assert resp.status == status, f"expected {status}, got {resp.status} {resp.body[:300]!r}"
    content_type = resp.headers.get("Content-Type", "")
    assert content_type.split(";")[0].strip() == "application/json", content_type
    body = resp.json()
    assert isinstance(body.get("errors"), list) and body["errors"], body
    if codes:
        assert body["errors"][0]["code"] in codes, body

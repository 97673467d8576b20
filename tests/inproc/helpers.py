"""What the in-process tests share: digests, pushes through the HTTP API, and checks of the spec's
error body. Only HTTP is looked at (statuses, headers, JSON), never the registry's own classes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

# A client of a TestServer (made with the access logger `registry serve` uses), which pytest-aiohttp types
# without its application.
Client = TestClient[web.Request, Any]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def repository_name(prefix: str = "inproc") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


async def error_code(resp: ClientResponse, status: int) -> str:
    """The first code of the spec's error body `{"errors": [{"code", "message", ...}]}`, after checking
    the status, the JSON content type and the shape of every entry."""
    body = await resp.read()
    assert resp.status == status, f"{resp.method} {resp.url.path}: expected {status}, got {resp.status} {body[:300]!r}"
    assert resp.content_type == "application/json", (resp.content_type, body[:300])
    document = json.loads(body)
    assert isinstance(document, dict) and isinstance(document.get("errors"), list) and document["errors"], document
    for entry in document["errors"]:
        assert isinstance(entry.get("code"), str) and re.fullmatch(r"[A-Z_]+", entry["code"]), document
        assert isinstance(entry.get("message"), str) and entry["message"], document
    return str(document["errors"][0]["code"])


async def push_blob(client: Client, name: str, data: bytes) -> str:
    """A blob in one request (POST ?digest= with the body); its digest."""
    digest = sha256(data)
    resp = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, data=data,
                             headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 201, await resp.text()
    return digest


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


async def image_manifest(client: Client, name: str, *, artifact_type: str | None = None,
                         subject: dict[str, Any] | None = None) -> bytes:
    """The bytes of an OCI image manifest whose config and one layer are pushed to `name` already."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex}).encode()
    layer = os.urandom(256)
    await push_blob(client, name, config)
    await push_blob(client, name, layer)
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                "config": descriptor(OCI_CONFIG, config), "layers": [descriptor(OCI_LAYER, layer)]}
    if artifact_type is not None:
        document["artifactType"] = artifact_type
    if subject is not None:
        document["subject"] = subject
    return json.dumps(document).encode()


async def put_manifest(client: Client, name: str, reference: str, body: bytes,
                       media_type: str = OCI_MANIFEST) -> ClientResponse:
    return await client.put(f"/v2/{name}/manifests/{reference}", data=body, headers={"Content-Type": media_type})


async def push_image(client: Client, name: str, reference: str | None = None, **kwargs: Any) -> tuple[str, bytes]:
    """An image pushed under `reference` (its digest when None): (manifest digest, manifest bytes)."""
    body = await image_manifest(client, name, **kwargs)
    resp = await put_manifest(client, name, reference or sha256(body), body)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == sha256(body)
    return sha256(body), body


async def stored(client: Client) -> dict[str, Any]:
    """The admin API's storage totals (repositories, blobs, manifests, tags, uploads, bytes)."""
    resp = await client.get("/admin/api/storage")
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def nothing_stored(client: Client) -> bool:
    totals = await stored(client)
    return (totals["repositories"], totals["blobs"], totals["manifests"], totals["physical_bytes"]) == (0, 0, 0, 0)

"""A test's look at where the registry keeps bytes, whatever the backend: files or S3 objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


def _split(digest: str) -> tuple[str, str]:
    algorithm, _, hexpart = digest.partition(":")
    return algorithm, hexpart


class StorageView(Protocol):
    def blob_bytes(self, digest: str) -> bytes | None: ...

    def blob_digests(self) -> list[str]: ...

    def staging_exists(self, upload_id: str) -> bool: ...


class FilesystemView:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def blob_path(self, digest: str) -> Path:
        algorithm, hexpart = _split(digest)
        return self.root / "blobs" / algorithm / hexpart[:2] / hexpart

    def blob_bytes(self, digest: str) -> bytes | None:
        path = self.blob_path(digest)
        return path.read_bytes() if path.exists() else None

    def blob_digests(self) -> list[str]:
        blobs = self.root / "blobs"
        return sorted(f"{p.parent.parent.name}:{p.name}" for p in blobs.glob("*/*/*") if p.is_file())

    def staging_exists(self, upload_id: str) -> bool:
        return (self.root / "uploads" / upload_id).exists()


class S3View:
    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def blob_bytes(self, digest: str) -> bytes | None:
        algorithm, hexpart = _split(digest)
        try:
            response = self.client.get_object(Bucket=self.bucket,
                                              Key=f"{self.prefix}blobs/{algorithm}/{hexpart[:2]}/{hexpart}")
        except self.client.exceptions.NoSuchKey:
            return None
        return response["Body"].read()

    def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def blob_digests(self) -> list[str]:
        digests = []
        for key in self._keys(f"{self.prefix}blobs/"):
            parts = key[len(self.prefix):].split("/")  # blobs/<alg>/<2>/<hex>
            digests.append(f"{parts[1]}:{parts[3]}")
        return sorted(digests)

    def staging_exists(self, upload_id: str) -> bool:
        return bool(self._keys(f"{self.prefix}uploads/{upload_id}/"))

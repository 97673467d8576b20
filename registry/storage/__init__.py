"""Blob storage: bytes only, keyed by digest. See base.BlobStore for the contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.storage.base import (BlobStore, DigestMismatch, StorageUnavailable, UploadNotFound,
                                   UploadOffsetMismatch)

if TYPE_CHECKING:
    from registry.config import Config

__all__ = ["BlobStore", "DigestMismatch", "StorageUnavailable", "UploadOffsetMismatch", "UploadNotFound", "create_store"]


def create_store(config: Config) -> BlobStore:
    if config.storage.backend == "filesystem":
        from registry.storage.filesystem import FilesystemStore

        return FilesystemStore(config.storage_root)
    if config.storage.backend == "s3":
        from registry.storage.s3 import S3Settings, S3Store

        s3 = config.storage.s3
        return S3Store(S3Settings(
            bucket=s3.bucket, prefix=s3.prefix, region=s3.region or None, endpoint_url=s3.endpoint_url or None,
            path_style=s3.path_style, storage_class=s3.storage_class or None, access_key=s3.access_key or None,
            secret_key=s3.secret_key or None, part_size=s3.part_size, max_connections=s3.max_connections))
    raise ValueError(f"unknown storage backend {config.storage.backend!r}")

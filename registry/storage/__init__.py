"""Blob storage: bytes only, keyed by digest. See base.BlobStore for the contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.startup import StartupError, missing_extra
from registry.storage.base import (DISK_FULL_ERRNOS, BlobStore, DigestMismatch, StorageFull, StorageUnavailable,
                                   StoredBlob, UploadNotFound, UploadOffsetMismatch, require_free_space)

if TYPE_CHECKING:
    from registry.config import Config

__all__ = ["DISK_FULL_ERRNOS", "BlobStore", "DigestMismatch", "StorageFull", "StorageUnavailable",
           "StoredBlob", "UploadOffsetMismatch", "UploadNotFound", "create_store", "require_free_space"]


def create_store(config: Config) -> BlobStore:
    if config.storage.backend == "filesystem":
        from registry.storage.filesystem import FilesystemStore

        return FilesystemStore(config.storage_root, min_free_bytes=config.storage.min_free_bytes)
    if config.storage.backend == "s3":
        try:
            from registry.storage.s3 import S3Settings, S3Store
        except ModuleNotFoundError as exc:  # settings.load checks first; this is for callers that skip it
            if exc.name not in ("boto3", "botocore"):
                raise
            raise StartupError(missing_extra("storage.backend: s3", "s3")) from None

        s3 = config.storage.s3
        store = S3Store(S3Settings(
            bucket=s3.bucket, prefix=s3.prefix, region=s3.region or None, endpoint_url=s3.endpoint_url or None,
            path_style=s3.path_style, storage_class=s3.storage_class or None, access_key=s3.access_key or None,
            secret_key=s3.secret_key or None, part_size=s3.part_size, max_connections=s3.max_connections))
        store.min_free_bytes = config.storage.min_free_bytes  # for local disks beside it (an SQLite database)
        return store
    raise ValueError(f"unknown storage backend {config.storage.backend!r}")

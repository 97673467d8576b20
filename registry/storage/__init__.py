"""Blob storage: bytes only, keyed by digest. See base.BlobStore for the contract."""

from registry.storage.base import BlobStore, UploadOffsetMismatch, UploadNotFound

__all__ = ["BlobStore", "UploadOffsetMismatch", "UploadNotFound", "create_store"]


def create_store(config: "Config") -> BlobStore:  # noqa: F821 - avoid an import cycle at module load
    if config.storage.backend == "filesystem":
        from registry.storage.filesystem import FilesystemStore

        return FilesystemStore(config.storage_root)
    raise ValueError(f"unknown storage backend {config.storage.backend!r}")

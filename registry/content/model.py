"""The content interface the API handlers call: what a repository offers, whatever holds it.

`RepositoryContent` is implemented by local repositories (registry/content/local.py) and by mirrored
ones (registry/mirror/content.py), which serve an upstream's content and refuse writes. Handlers
get one of the two from `routed()` (registry/api/common.py) and know nothing else of either.
Failures are `RegistryError`s (registry/errors.py) and the storage and database layers' own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from collections.abc import AsyncIterable, AsyncIterator, Callable

from registry.digest import Digest, parse_digest
from registry.metadata.manifests import Referrer
from registry.storage import BlobStore

__all__ = ["BlobContent", "Manifest", "Referrer", "RepositoryContent", "Upload"]


@dataclass(frozen=True, slots=True)
class BlobContent:
    """A readable blob: a local file for sendfile, or a stream."""

    digest: str
    size: int
    path: Path | None = None
    data: bytes | None = None  # small in-database content (a manifest fetched through /blobs/)
    store: BlobStore | None = None
    redirect: str | None = None  # a pre-signed URL the client may fetch from instead
    reader: Callable[[int, int], AsyncIterator[bytes]] | None = None  # bytes still arriving (a mirror fill)

    def stream(self, offset: int, length: int) -> AsyncIterator[bytes]:
        if self.reader is not None:
            return self.reader(offset, length)
        assert self.store is not None
        return self.store.read(parse_digest(self.digest), offset, length)


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    repository: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    payload: bytes
    subject: str | None = None
    stale: bool = False  # served from a mirror's cache while its upstream fails


class RepositoryContent(Protocol):
    """Blobs, uploads, manifests, tags and referrers of repositories, by name."""

    # -- blobs
    async def blob(self, repository: str, digest: Digest) -> BlobContent: ...
    async def blob_head(self, repository: str, digest: Digest) -> BlobContent: ...
    async def delete_blob(self, repository: str, digest: Digest) -> None: ...

    async def mount_blob(self, repository: str, digest: Digest, source: str) -> BlobContent | None:
        """Link `source`'s blob into `repository`; None when the source does not hold it."""

    async def put_blob(self, repository: str, digest: Digest, body: AsyncIterable[bytes]) -> BlobContent: ...

    # -- uploads
    async def start_upload(self, repository: str) -> Upload: ...
    async def upload_status(self, repository: str, upload_id: str) -> Upload: ...
    async def append_upload(self, repository: str, upload_id: str, body: AsyncIterable[bytes],
                            start: int | None) -> Upload: ...
    async def finish_upload(self, repository: str, upload_id: str, digest: Digest,
                            body: AsyncIterable[bytes] | None, start: int | None) -> BlobContent: ...
    async def cancel_upload(self, repository: str, upload_id: str) -> None: ...

    # -- manifests
    async def manifest(self, repository: str, reference: str | Digest) -> Manifest: ...
    async def put_manifest(self, repository: str, reference: str | Digest, payload: bytes,
                           content_type: str | None) -> Manifest: ...
    async def delete_manifest(self, repository: str, reference: str | Digest) -> None: ...

    # -- discovery
    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]: ...
    async def referrers(self, repository: str, subject: Digest, artifact_type: str | None) -> list[Referrer]: ...

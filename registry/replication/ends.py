"""The two ends of a replication: this registry's own content (`LocalEnd`, over the content layer) and
another registry (`RemoteEnd`, over the one registry client). A run reads from one and writes to the
other, the same code either way round: a pull rule's source is remote, a push rule's is local.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from registry.client import RegistryClient
from registry.client.client import UpstreamNotFound, referrers_tag
from registry.content.local import LocalContent
from registry.digest import digest_bytes, parse_digest
from registry.errors import RegistryError

CHUNK = 1024 * 1024
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CATALOG_PAGE = 1000
BlobOpener = Callable[[], contextlib.AbstractAsyncContextManager[AsyncIterable[bytes]]]


class ReplicationError(Exception):
    """A manifest or blob that cannot be copied: one line, recorded with the run."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A manifest's exact bytes, checked against the digest they were asked or answered by."""

    digest: str
    media_type: str
    payload: bytes


def checked(reference: str, digest_header: str, media_type: str, payload: bytes) -> Fetched:
    """The payload's own digest; it must equal the digest asked for, or the one the server named."""
    expected = reference if reference.startswith("sha") and ":" in reference else digest_header
    algorithm = parse_digest(expected).algorithm if expected else "sha256"
    actual = str(digest_bytes(payload, algorithm))
    if expected and actual != expected:
        raise ReplicationError(f"manifest {reference}: its bytes hash to {actual}, not {expected}")
    return Fetched(actual, media_type, payload)


class End(Protocol):
    """One side of a run, by repository name."""

    label: str

    async def repositories(self, literal: list[str] | None) -> list[str]: ...
    async def tags(self, repository: str) -> list[str]: ...
    async def manifest(self, repository: str, reference: str) -> Fetched | None: ...
    async def tag_digest(self, repository: str, tag: str) -> str | None: ...
    async def has_manifest(self, repository: str, digest: str) -> bool: ...
    async def has_blob(self, repository: str, digest: str) -> bool: ...
    async def holders(self, digest: str) -> list[str]:
        """Repositories known to hold the blob at this end (none, where it cannot tell)."""
    def open_blob(self, repository: str, digest: str) -> contextlib.AbstractAsyncContextManager[AsyncIterable[bytes]]:
        ...
    async def put_blob(self, repository: str, digest: str, size: int, mount_from: str | None,
                       opener: BlobOpener) -> bool:
        """True when the blob was linked without its bytes moving (a mount), False when sent."""
    async def put_manifest(self, repository: str, reference: str, fetched: Fetched) -> None: ...
    async def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]: ...
    async def list_referrers(self, repository: str, subject: str, descriptors: list[dict[str, Any]]) -> bool:
        """After `descriptors` (a subject's referrers) were written: make them findable where the
        destination has no referrers API (the OCI 1.1 `sha256-<hex>` tag). True when that tag changed."""
    async def delete_tag(self, repository: str, tag: str) -> None: ...


class LocalEnd:
    """This registry, through the content layer: every write is checked, recorded and counted as a push."""

    label = "local"

    def __init__(self, content: LocalContent) -> None:
        self.content = content

    async def repositories(self, literal: list[str] | None) -> list[str]:
        if literal is not None:
            return literal
        names: list[str] = []
        last: str | None = None
        while True:
            page = await self.content.catalog(CATALOG_PAGE, last)
            names += page
            if len(page) < CATALOG_PAGE:
                return names
            last = page[-1]

    async def tags(self, repository: str) -> list[str]:
        try:
            return await self.content.tags(repository, None, None)
        except RegistryError as exc:
            if exc.code == "NAME_UNKNOWN":
                return []
            raise

    async def manifest(self, repository: str, reference: str) -> Fetched | None:
        try:
            found = await self.content.manifest(repository, _reference(reference))
        except RegistryError as exc:
            if exc.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"):
                return None
            raise
        return Fetched(found.digest, found.media_type, found.payload)

    async def tag_digest(self, repository: str, tag: str) -> str | None:
        found = await self.manifest(repository, tag)
        return found.digest if found else None

    async def has_manifest(self, repository: str, digest: str) -> bool:
        return await self.manifest(repository, digest) is not None

    async def has_blob(self, repository: str, digest: str) -> bool:
        try:
            await self.content.blob_head(repository, parse_digest(digest))
        except RegistryError as exc:
            if exc.code in ("BLOB_UNKNOWN", "NAME_UNKNOWN"):
                return False
            raise
        return True

    async def holders(self, digest: str) -> list[str]:
        return await self.content.holders(parse_digest(digest))

    @contextlib.asynccontextmanager
    async def open_blob(self, repository: str, digest: str) -> AsyncIterator[AsyncIterable[bytes]]:
        blob = await self.content.blob(repository, parse_digest(digest))
        yield blob.stream(0, blob.size)

    async def put_blob(self, repository: str, digest: str, size: int, mount_from: str | None,
                       opener: BlobOpener) -> bool:
        parsed = parse_digest(digest)
        if await self.content.link_stored(repository, parsed) is not None:
            return True  # stored for another repository already: linked, nothing moves
        async with opener() as chunks:
            await self.content.put_blob(repository, parsed, chunks)  # verified against the digest
        return False

    async def put_manifest(self, repository: str, reference: str, fetched: Fetched) -> None:
        await self.content.put_manifest(repository, _reference(reference), fetched.payload, fetched.media_type)

    async def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        found = await self.content.referrers(repository, parse_digest(digest), None)
        return [{"digest": r.digest, "mediaType": r.media_type, "size": r.size} for r in found]

    async def list_referrers(self, repository: str, subject: str, descriptors: list[dict[str, Any]]) -> bool:
        return False  # this registry indexes a manifest's subject as it is written

    async def delete_tag(self, repository: str, tag: str) -> None:
        await self.content.delete_manifest(repository, tag)


class RemoteEnd:
    """Another registry, through the one client (tokens, retries, 429s, capped reads)."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.label = client.base_url
        # Whether the registry answered a manifest with a subject with OCI-Subject (it has the referrers
        # API); None until one was written.
        self.indexes_subjects: bool | None = None

    async def repositories(self, literal: list[str] | None) -> list[str]:
        if literal is not None:
            return literal
        return await self.client.catalog()

    async def tags(self, repository: str) -> list[str]:
        try:
            return await self.client.tags(repository)
        except UpstreamNotFound:
            return []

    async def manifest(self, repository: str, reference: str) -> Fetched | None:
        try:
            answer = await self.client.get_manifest(repository, reference)
        except UpstreamNotFound:
            return None
        assert answer.payload is not None
        return checked(reference, answer.digest, answer.media_type, answer.payload)

    async def tag_digest(self, repository: str, tag: str) -> str | None:
        try:
            return (await self.client.head_manifest(repository, tag)).digest or None
        except UpstreamNotFound:
            return None

    async def has_manifest(self, repository: str, digest: str) -> bool:
        try:
            await self.client.head_manifest(repository, digest)
        except UpstreamNotFound:
            return False
        return True

    async def has_blob(self, repository: str, digest: str) -> bool:
        try:
            await self.client.head_blob(repository, digest)
        except UpstreamNotFound:
            return False
        return True

    async def holders(self, digest: str) -> list[str]:
        return []  # the Distribution API cannot say which repositories hold a blob

    @contextlib.asynccontextmanager
    async def open_blob(self, repository: str, digest: str) -> AsyncIterator[AsyncIterable[bytes]]:
        async with self.client.blob(repository, digest) as response:
            yield response.content.iter_chunked(CHUNK)

    async def put_blob(self, repository: str, digest: str, size: int, mount_from: str | None,
                       opener: BlobOpener) -> bool:
        if mount_from is not None and mount_from != repository:
            location = await self.client.mount_blob(repository, digest, mount_from)
            if location is None:
                return True
        else:
            location = await self.client.start_upload(repository)
        async with opener() as chunks:
            await self.client.finish_upload(location, digest, size, chunks)
        return False

    async def put_manifest(self, repository: str, reference: str, fetched: Fetched) -> None:
        pushed = await self.client.put_manifest(repository, reference, fetched.payload, fetched.media_type)
        if _has_subject(fetched.payload):
            self.indexes_subjects = pushed.subject is not None

    async def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        found = await self.client.referrers(repository, digest)
        return list(found.descriptors)

    async def list_referrers(self, repository: str, subject: str, descriptors: list[dict[str, Any]]) -> bool:
        if self.indexes_subjects is not False or not descriptors:
            return False
        tag = referrers_tag(parse_digest(subject))
        current = await self.manifest(repository, tag)
        listed: list[dict[str, Any]] = []
        if current is not None:
            manifests = json.loads(current.payload).get("manifests")
            listed = [m for m in manifests if isinstance(m, dict)] if isinstance(manifests, list) else []
        known = {m.get("digest") for m in listed}
        added = [d for d in descriptors if d.get("digest") not in known]
        if not added:
            return False
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed + added},
                           separators=(",", ":")).encode()
        await self.client.put_manifest(repository, tag, index, OCI_INDEX)
        return True

    async def delete_tag(self, repository: str, tag: str) -> None:
        await self.client.delete_manifest(repository, tag)


def _has_subject(payload: bytes) -> bool:
    try:
        document = json.loads(payload)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("subject"), dict)


def _reference(reference: str) -> Any:
    """A digest as a Digest (the content layer tells them apart by type), a tag as text."""
    return parse_digest(reference) if ":" in reference else reference

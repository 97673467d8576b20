"""Local repositories: the registry model between the API handlers and metadata + storage.

Handlers speak in names, digests and byte streams; this layer owns the transactions and the
order of effects that keeps a crash safe: bytes are staged, verified and published in the
store first, and only then does one database transaction make them visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from collections.abc import AsyncIterable, AsyncIterator

from registry import manifest as mf
from registry.content.locks import KeyedLocks
from registry.content.model import BlobContent, Manifest, Upload
from registry.content.recency import RecencyLog
from registry.gc.immutable import ImmutableTags, held_content_error, held_manifest_error, held_tag_error
from registry.gc.policy import Quota, format_bytes, quota_for
from registry.digest import DEFAULT_ALGORITHM, Digest, digest_bytes
from registry.errors import ChunkOutOfOrder, Conflict, RegistryError
from registry.events.context import current as current_request
from registry.events.journal import BLOB_MEDIA_TYPE, Change, Journal
from registry.gc.sweep import STALE_SECONDS, Sweeper
from registry.metadata import blobs as blob_rows
from registry.metadata import deletions, leases
from registry.metadata import inventory as inventory_rows
from registry.metadata import manifests as manifest_rows
from registry.metadata import repositories as repo_rows
from registry.metadata import tags as tag_rows
from registry.metadata import uploads as upload_rows
from registry.metadata import usage
from registry.metadata.db import Database
from registry.storage import BlobStore, DigestMismatch, StorageFull, UploadNotFound, UploadOffsetMismatch

log = logging.getLogger("registry.content")

MAX_HASH_STATES = 10_000
LEASE_SECONDS = 30.0
PUBLISH_WAIT_SECONDS = 30.0  # for a garbage collection deleting a blob's old copy (a batch takes seconds)
PROCESS_TAG = secrets.token_hex(6)
# A HEAD or GET restarts a link's grace period only once half of it has passed: a hot blob costs
# one write per half-period, and a client that saw 200 has at least half the period to reference it.
GRACE_RESTART_FRACTION = 0.5


@dataclass(slots=True)
class _Lease:
    ended: bool = False  # the upload finished and its row (with the lease) was deleted


class _HashState:
    """The running sha256 of an upload's staged bytes, valid while `size` matches the staging."""

    __slots__ = ("hasher", "size")

    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self.hasher.update(data)
        self.size += len(data)


class LocalContent:
    def __init__(self, db: Database, store: BlobStore, redirect_expiry: int | None = None,
                 quotas: list[Quota] | None = None, grace_seconds: float = 3600.0,
                 immutable: ImmutableTags | None = None, journal: Journal | None = None) -> None:
        self.db = db
        self.journal = journal  # events (webhooks, audit): written in the transactions below
        self.store = store
        self.redirect_expiry = redirect_expiry
        self.quotas = quotas or []
        self.immutable = immutable or ImmutableTags()
        self.grace_seconds = grace_seconds  # gc.grace_period: how long gc spares an unreferenced link
        self.pulls = RecencyLog(db, manifest_rows.record_pulls, "manifest pulls")
        self._upload_locks = KeyedLocks()
        self._hash_states: OrderedDict[str, _HashState] = OrderedDict()

    # -- blobs ------------------------------------------------------------------------
    async def blob(self, repository: str, digest: Digest) -> BlobContent:
        found = await self.blob_head(repository, digest)
        if found.data is not None:
            return found
        redirect = self.store.redirect_url(digest, self.redirect_expiry) if self.redirect_expiry else None
        return BlobContent(found.digest, found.size, path=self.store.local_path(digest), store=self.store,
                           redirect=redirect)

    async def blob_head(self, repository: str, digest: Digest) -> BlobContent:
        """What a HEAD needs: the blob's size (a manifest's bytes when asked for one through /blobs/).

        A client told that a blob exists may reference it in a manifest next, without uploading
        it: the link's grace period restarts (before the answer), so gc spares it meanwhile.
        """
        async with self.db.read() as conn:
            link = await blob_rows.linked_blob(conn, repository, str(digest))
            if link is None:
                # Some clients fetch manifests through /blobs/: serve the exact manifest bytes.
                row = await manifest_rows.manifest_by_digest(conn, repository, str(digest))
                if row is not None:
                    return BlobContent(row.digest, len(row.payload), data=row.payload)
                raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)})
        if self.grace_seconds > 0 and link.linked_at < time.time() - self.grace_seconds * GRACE_RESTART_FRACTION:
            await self._restart_grace(link.repository_id, digest)
        return BlobContent(str(digest), link.size)

    async def _restart_grace(self, repository_id: int, digest: Digest) -> None:
        """Restart the link's grace period; BLOB_UNKNOWN if gc took it since we looked (the client
        uploads it again rather than push a manifest that would be refused)."""
        async with self.db.write(durable=False) as conn:  # only a database host's crash loses it
            if not await blob_rows.restart_grace(conn, repository_id, str(digest)):
                raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)})

    async def delete_blob(self, repository: str, digest: Digest) -> None:
        async with self.db.write() as conn:
            repo_id = await repo_rows.repository_id(conn, repository)
            if repo_id is None or not await blob_rows.unlink_blob(conn, repo_id, str(digest)):
                raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)})
            # Unlinking a layer of an image an immutable tag holds would break its pulls: refused,
            # and the unlink rolls back (with nothing recorded).
            held = await self.immutable.holding(conn, repository,
                                                await inventory_rows.tags_reaching(conn, repo_id, str(digest)))
            if held is not None:
                raise held_content_error(repository, str(digest), *held)
            await self.record(conn, Change("delete", "blob", repository, str(digest)))

    async def mount_blob(self, repository: str, digest: Digest, source: str) -> BlobContent | None:
        """Link a blob from `source` without copying; None when the source does not hold it.

        The new (or re-made) link starts its own grace period, which is what the client's manifest
        in `repository` needs; the source's link is held only for this transaction, not refreshed.
        """
        quota = quota_for(self.quotas, repository)
        if quota is not None:
            await self._quota_used(quota)  # counted, for `_link` to check (the blob may be in it already)
        async with self.db.write() as conn:
            size = await blob_rows.linked_blob_size(conn, source, str(digest), lock=True)
            if size is None:
                return None
            repo_id = await repo_rows.ensure_repository(self.db, conn, repository)
            await self._link(conn, repository, repo_id, str(digest), size)
            await self.record(conn, Change("mount", "blob", repository, str(digest), media_type=BLOB_MEDIA_TYPE,
                                           size=size, from_repository=source))
        return BlobContent(str(digest), size)

    async def put_blob(self, repository: str, digest: Digest, body: AsyncIterable[bytes]) -> BlobContent:
        """A monolithic upload: the store verifies and publishes, then one transaction links it."""
        await self._check_quota_room(repository)
        known: frozenset[int] = frozenset()

        async def before_publish() -> None:
            nonlocal known
            known = await self._settled(digest)

        try:
            size = await self.store.put_blob(digest, body, before_publish)
        except DigestMismatch:
            raise RegistryError("DIGEST_INVALID", detail={"digest": str(digest)}) from None
        try:
            async with self.db.write() as conn:
                await self._record_and_link(conn, repository, digest, size, known)
                await self.record(conn, _blob_pushed(repository, digest, size))
        except RegistryError as exc:
            if exc.code == "DENIED":
                await self._leave_for_collection(digest, size)
            raise
        return BlobContent(str(digest), size)

    async def _settled(self, digest: Digest) -> frozenset[int]:
        """Call right before publishing `digest`'s bytes: waits while garbage collection is deleting
        them (publishing then could lose ours), and returns the tombstones known now, for
        `_record_and_link` to compare with."""
        deadline = time.monotonic() + PUBLISH_WAIT_SECONDS
        while True:
            async with self.db.read() as conn:
                found = await deletions.state(conn, str(digest))
            if found.pending_since is None:
                return found.known
            if found.pending_since < time.time() - STALE_SECONDS:  # its deleter died: finish its work
                await Sweeper(self.db, self.store).finish_stale_deletions()
            elif time.monotonic() > deadline:
                raise RegistryError("UNAVAILABLE", "garbage collection is deleting this blob's old copy; retry",
                                    detail={"digest": str(digest)}, retry_after=5)
            await asyncio.sleep(0.05)

    async def _record_and_link(self, conn, repository: str, digest: Digest, size: int,
                               known: frozenset[int]) -> None:
        """Inside a write transaction: the blob's row (locked) and its link into the repository.

        `known`: the digest's tombstones seen before its bytes were published. A new one means a
        garbage collection deleted these very bytes (or the copy the store kept instead of ours)
        after we looked: fail cleanly rather than record a blob that is not there. Checked after
        the row is written, which on PostgreSQL waits for a concurrent tombstone to commit.
        """
        await blob_rows.record_blob(self.db, conn, str(digest), size)
        if await deletions.appeared(conn, str(digest), known):
            raise RegistryError("BLOB_UPLOAD_INVALID", "the blob was garbage-collected while this upload "
                                "finished; push it again", detail={"digest": str(digest)})
        repo_id = await repo_rows.ensure_repository(self.db, conn, repository)
        await self._link(conn, repository, repo_id, str(digest), size)

    async def _link(self, conn, repository: str, repository_id: int, digest: str, size: int) -> None:
        """Inside a write transaction: link the blob, refusing (and so rolling back) when that takes
        the repository's namespace over its quota. The counters move with the link itself, and on
        PostgreSQL a concurrent link in the namespace waits for this transaction: the total read
        after the link is final, so concurrent pushes never overshoot together."""
        quota = quota_for(self.quotas, repository)
        scope = usage.quota_scope(quota.namespace) if quota is not None else None
        already = scope is None or await usage.holds(conn, scope, digest)  # costs nothing more
        await blob_rows.link_blob(self.db, conn, repository_id, digest)
        if quota is None or scope is None or already:
            return
        used = await usage.scope_bytes(conn, scope)
        if used is not None and used > quota.bytes:
            raise _quota_error(quota, used - size, size)

    async def _leave_for_collection(self, digest: Digest, size: int, upload_id: str | None = None) -> None:
        """Bytes stored but refused (quota): a row with no link, which garbage collection removes
        (and the finished upload's session, whose staged bytes became them)."""
        async with self.db.write() as conn:
            await blob_rows.record_blob(self.db, conn, str(digest), size)
            if upload_id is not None:
                await upload_rows.delete_upload(conn, upload_id)

    # -- quotas -----------------------------------------------------------------------
    def usage_scopes(self) -> dict[str, frozenset[str]]:
        """The usage counters the quotas need (registry.metadata.usage)."""
        return {usage.quota_scope(quota.namespace): frozenset({quota.namespace}) for quota in self.quotas}

    async def _quota_used(self, quota: Quota) -> int:
        return await usage.counted(self.db, usage.quota_scope(quota.namespace), frozenset({quota.namespace}))

    async def _check_quota_room(self, repository: str) -> None:
        """Before accepting bytes: refuse when the namespace is already at its quota. Constant
        time: a counter, whatever the registry's size."""
        quota = quota_for(self.quotas, repository)
        if quota is None:
            return
        used = await self._quota_used(quota)
        if used >= quota.bytes:
            raise _quota_error(quota, used, None)

    async def _check_quota(self, repository: str, digest: str, size: int) -> None:
        """Before publishing an upload's bytes: refuse early if linking them would exceed the quota
        (a blob already in the namespace costs nothing more). `_link` decides for good."""
        quota = quota_for(self.quotas, repository)
        if quota is None:
            return
        used = await self._quota_used(quota)
        async with self.db.read() as conn:
            if await usage.holds(conn, usage.quota_scope(quota.namespace), digest):
                return
        if used + size > quota.bytes:
            raise _quota_error(quota, used, size)

    # -- upload sessions --------------------------------------------------------------
    async def start_upload(self, repository: str) -> Upload:
        await self._check_quota_room(repository)
        upload_id = _new_upload_id()
        await self.store.start_upload(upload_id)
        async with self.db.write(durable=False) as conn:  # a session lost in a crash is just restarted
            repo_id = await repo_rows.ensure_repository(self.db, conn, repository)
            await upload_rows.create_upload(conn, upload_id, repo_id)
        self._remember_hash(upload_id, _HashState())
        return Upload(upload_id, repository, 0)

    async def upload_status(self, repository: str, upload_id: str) -> Upload:
        async with self._upload_locks.hold(upload_id):  # report after an in-flight chunk settles
            await self._upload_row(repository, upload_id)
            return Upload(upload_id, repository, await self._staged_size(upload_id))

    async def append_upload(self, repository: str, upload_id: str, body: AsyncIterable[bytes],
                            start: int | None) -> Upload:
        """Append a chunk; `start` (from Content-Range) must equal the staged size, else 416."""
        async with self._writing(repository, upload_id):
            size = await self._write(upload_id, body, start)
            async with self.db.write(durable=False) as conn:  # progress: the staged bytes are the truth
                await upload_rows.set_upload_size(conn, upload_id, size)
        return Upload(upload_id, repository, size)

    async def finish_upload(self, repository: str, upload_id: str, digest: Digest,
                            body: AsyncIterable[bytes] | None, start: int | None) -> BlobContent:
        async with self._writing(repository, upload_id) as lease:
            if body is not None:
                size = await self._write(upload_id, body, start)
            else:
                size = await self._staged_size(upload_id)
            actual = await self._staged_digest(upload_id, digest.algorithm, size)
            if actual != digest.hex:
                # The bytes can never become this digest: drop them so nothing wrong lingers.
                await self._drop_upload(upload_id)
                raise RegistryError("DIGEST_INVALID", detail={"digest": str(digest)})
            try:
                await self._check_quota(repository, str(digest), size)
                linked = await self._link_known_blob(repository, upload_id, digest, size)
            except RegistryError:
                await self._drop_upload(upload_id)
                raise
            if not linked:
                known = await self._settled(digest)
                await self.store.commit_upload(upload_id, digest)
                try:
                    async with self.db.write() as conn:
                        await self._record_and_link(conn, repository, digest, size, known)
                        await upload_rows.delete_upload(conn, upload_id)
                        await self.record(conn, _blob_pushed(repository, digest, size))
                except RegistryError as exc:
                    if exc.code == "DENIED":  # a concurrent push took the quota's last room
                        lease.ended = True
                        await self._leave_for_collection(digest, size, upload_id)
                        self._hash_states.pop(upload_id, None)
                    raise
            lease.ended = True  # the session row, lease included, is gone: nothing to release
            self._hash_states.pop(upload_id, None)
        return BlobContent(str(digest), size)

    async def _link_known_blob(self, repository: str, upload_id: str, digest: Digest, size: int) -> bool:
        """When the registry has these bytes already, link them and drop the staged copy.

        Decided under the blob row's lock rather than by looking at the store, so a concurrent
        garbage collection cannot delete the stored copy between the look and the link.
        """
        async with self.db.read() as conn:
            if await blob_rows.blob_size(conn, str(digest)) is None:
                return False  # the common case, a new blob: no write transaction needed
        if await self.store.stat(digest) is None:
            return False  # its bytes are lost (fsck will say): publish ours
        async with self.db.write() as conn:
            # Bytes go only after their row (garbage collection tombstones it first): the row still
            # there under our lock means the bytes looked at above are too.
            if not await blob_rows.lock_blob(conn, str(digest)):
                return False
            repo_id = await repo_rows.ensure_repository(self.db, conn, repository)
            await self._link(conn, repository, repo_id, str(digest), size)
            await upload_rows.delete_upload(conn, upload_id)
            await self.record(conn, _blob_pushed(repository, digest, size))
        await self.store.abort_upload(upload_id)
        return True

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        async with self._writing(repository, upload_id):
            await self._drop_upload(upload_id)

    @contextlib.asynccontextmanager
    async def _writing(self, repository: str, upload_id: str) -> AsyncIterator[_Lease]:
        """Exclusive write access to an upload: within this process, then across processes.

        The cross-process part is a lease in the uploads row, renewed while the chunk streams,
        so any process can take the next chunk and a dead one cannot block the upload. A write or
        commit that finds the disk full drops the whole session at once: its bytes would only hold
        space the disk needs until gc's upload expiry, and the client's retry starts afresh.
        """
        async with self._upload_locks.hold(upload_id):
            owner = f"{PROCESS_TAG}:{secrets.token_hex(4)}"
            deadline = time.monotonic() + LEASE_SECONDS
            while True:
                async with self.db.write(durable=False) as conn:
                    if await leases.take(self.db, conn, leases.UPLOAD, upload_id, owner, LEASE_SECONDS, repository):
                        break
                # Unknown, another repository's, or cancelled meanwhile: BLOB_UPLOAD_UNKNOWN. Else busy.
                await self._upload_row(repository, upload_id)
                if time.monotonic() > deadline:
                    raise Conflict("BLOB_UPLOAD_INVALID", "another request is writing this upload",
                                   detail={"uuid": upload_id})
                await asyncio.sleep(0.05)
            lease = _Lease()
            async with leases.renewed(self.db, leases.UPLOAD, upload_id, owner, LEASE_SECONDS,
                                      release_after=lambda: not lease.ended):
                try:
                    yield lease
                except StorageFull:
                    await self._drop_after_full_disk(upload_id)
                    lease.ended = True
                    raise

    async def _drop_after_full_disk(self, upload_id: str) -> None:
        try:
            await self._drop_upload(upload_id)  # the staged bytes first: that frees the space
        except Exception as exc:  # noqa: BLE001 - the disk-full answer matters more; gc purges what is left
            log.warning("upload %s: could not drop the session after a full disk: %r", upload_id, exc)

    async def _upload_row(self, repository: str, upload_id: str) -> upload_rows.UploadRow:
        async with self.db.read() as conn:
            row = await upload_rows.get_upload(conn, upload_id)
        if row is None or row.repository != repository:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id})
        return row

    async def _staged_size(self, upload_id: str) -> int:
        try:
            return await self.store.upload_size(upload_id)
        except UploadNotFound:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id}) from None

    async def _write(self, upload_id: str, body: AsyncIterable[bytes], start: int | None) -> int:
        """Append the body at `start` (None: at the staged end); returns the staged size."""
        state = self._hash_states.get(upload_id)
        try:
            size = await self.store.write_upload(upload_id, start, body, state)
        except UploadOffsetMismatch as exc:
            raise ChunkOutOfOrder(upload_id, exc.expected) from None
        except UploadNotFound:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id}) from None
        if state is not None and state.size != size:
            # The running hash did not start where the staging did (another process wrote, a
            # crash, a failed write): its digest would be wrong, so the commit hashes the bytes.
            self._hash_states.pop(upload_id, None)
        return size

    async def _staged_digest(self, upload_id: str, algorithm: str, size: int) -> str:
        state = self._hash_states.get(upload_id)
        if algorithm == DEFAULT_ALGORITHM and state is not None and state.size == size:
            return state.hasher.hexdigest()
        hasher = hashlib.new(algorithm)
        async for chunk in self.store.read_upload(upload_id):
            hasher.update(chunk)
        return hasher.hexdigest()

    async def _drop_upload(self, upload_id: str) -> None:
        await self.store.abort_upload(upload_id)
        async with self.db.write() as conn:
            await upload_rows.delete_upload(conn, upload_id)
        self._hash_states.pop(upload_id, None)

    def _remember_hash(self, upload_id: str, state: _HashState) -> None:
        self._hash_states[upload_id] = state
        while len(self._hash_states) > MAX_HASH_STATES:
            self._hash_states.popitem(last=False)

    # -- manifests --------------------------------------------------------------------
    async def manifest(self, repository: str, reference: str | Digest) -> Manifest:
        async with self.db.read() as conn:
            if isinstance(reference, Digest):
                row = await manifest_rows.manifest_by_digest(conn, repository, str(reference))
            else:
                row = await manifest_rows.manifest_by_tag(conn, repository, reference)
            if row is None:
                if await repo_rows.repository_id(conn, repository) is None:
                    raise RegistryError("NAME_UNKNOWN", detail={"name": repository})
                raise RegistryError("MANIFEST_UNKNOWN", detail={"reference": str(reference)})
        self.pulls.record(repository, [row.digest])
        return Manifest(row.digest, row.media_type, row.payload, row.subject)

    def record_pull(self, repository: str, digest: str) -> None:
        """A manifest served from elsewhere (a mirror's cache) counts as pulled from `repository`."""
        self.pulls.record(repository, [digest])

    async def put_manifest(self, repository: str, reference: str | Digest, payload: bytes,
                           content_type: str | None, check_references: bool = True) -> Manifest:
        """Store a manifest (and move the tag). A mirror's cache skips the reference check:
        it fetches blobs only when a client asks for them."""
        parsed = mf.parse_manifest(payload, content_type)
        algorithm = reference.algorithm if isinstance(reference, Digest) else DEFAULT_ALGORITHM
        digest = str(digest_bytes(payload, algorithm))
        if isinstance(reference, Digest) and str(reference) != digest:
            raise RegistryError("DIGEST_INVALID", "manifest digest does not match the reference",
                                detail={"reference": str(reference), "digest": digest})
        async with self.db.write() as conn:
            repo_id = await repo_rows.ensure_repository(self.db, conn, repository)
            if check_references:
                await self._check_references(conn, repo_id, parsed)
            manifest_id = await manifest_rows.store_manifest(
                self.db, conn, repo_id, digest=digest, media_type=parsed.media_type, payload=payload,
                artifact_type=parsed.artifact_type, subject=parsed.subject, annotations=parsed.annotations,
                references=[(d.digest, "blob") for d in parsed.blobs]
                + [(d.digest, "manifest") for d in parsed.manifests])
            tag = None if isinstance(reference, Digest) else reference
            pusher = None
            if check_references:  # a push (not a mirror's cache filling)
                request = current_request()
                pusher = request.actor_label() if request else None
                await self.record(conn, Change("push", "manifest", repository, digest, tag, parsed.media_type,
                                               len(payload)))
            if tag is not None:  # an immutable tag's refusal rolls back the manifest and its event
                await self._point_tag(conn, repository, repo_id, tag, manifest_id, pusher)
        return Manifest(digest, parsed.media_type, payload, parsed.subject)

    async def _point_tag(self, conn, repository: str, repository_id: int, tag: str, manifest_id: int,
                         pushed_by: str | None) -> None:
        """Inside the manifest's write transaction: point the tag at it. Moving a tag an immutable rule
        holds is DENIED, which rolls the whole transaction back (the manifest too: nothing changed);
        pointing it at the manifest it has already is a push like any other. `pushed_by` is kept on
        the tag either way (None for a mirror's cache)."""
        previous = await tag_rows.claim_tag(self.db, conn, repository_id, tag, manifest_id, pushed_by=pushed_by)
        if previous is None:
            return  # a new tag, created pointing at the manifest
        if previous != manifest_id:
            held = await self.immutable.holding(conn, repository, [tag])
            if held is not None:
                raise held_tag_error(repository, *held)
        await tag_rows.set_tag(self.db, conn, repository_id, tag, manifest_id, pushed_by=pushed_by)

    async def _check_references(self, conn, repo_id: int, parsed: mf.ParsedManifest) -> None:
        wanted = sorted({d.digest for d in parsed.blobs})
        linked = await blob_rows.linked_digests(conn, repo_id, wanted)
        for descriptor in parsed.blobs:
            size = linked.get(descriptor.digest)
            if size is None:
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {descriptor.digest}",
                                    detail={"digest": descriptor.digest})
            if size != descriptor.size:
                raise RegistryError("MANIFEST_INVALID", f"descriptor size {descriptor.size} of "
                                    f"{descriptor.digest} does not match the blob's size {size}",
                                    detail={"digest": descriptor.digest, "size": size})
        children = sorted({d.digest for d in parsed.manifests})
        present = await manifest_rows.existing_manifests(conn, repo_id, children)
        for child in children:
            if child not in present:
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", f"manifest unknown to repository: {child}",
                                    detail={"digest": child})

    async def tagged(self, repository: str, tag: str) -> tuple[Manifest, float] | None:
        """A tag's manifest and when it was last set or (a mirror's) confirmed upstream."""
        async with self.db.read() as conn:
            found = await manifest_rows.manifest_by_tag_with_time(conn, repository, tag)
        if found is None:
            return None
        row, updated_at = found
        return Manifest(row.digest, row.media_type, row.payload, row.subject), updated_at

    async def confirm_tag(self, repository: str, tag: str) -> None:
        async with self.db.write() as conn:
            repo_id = await repo_rows.repository_id(conn, repository)
            if repo_id is not None:
                await tag_rows.verify_tag(conn, repo_id, tag)

    async def has_repository(self, repository: str) -> bool:
        async with self.db.read() as conn:
            return await repo_rows.repository_id(conn, repository) is not None

    async def adopt_file(self, repository: str, digest: Digest, path: Path, size: int, pushed: bool = False) -> None:
        """Store a local file already verified against `digest` (a mirror's fill), and link it.

        `pushed`: the file is a push by other means (`registry import`), so it is one in every way: the
        quota is checked first and the blob's push event commits with its link.
        """
        if pushed:
            await self._check_quota(repository, str(digest), size)
        known = await self._settled(digest)
        await self.store.put_file(digest, path)
        try:
            async with self.db.write() as conn:
                await self._record_and_link(conn, repository, digest, size, known)
                if pushed:
                    await self.record(conn, _blob_pushed(repository, digest, size))
        except RegistryError as exc:
            if pushed and exc.code == "DENIED":  # over the quota after all: the bytes are left for gc
                await self._leave_for_collection(digest, size)
            raise

    async def link_stored(self, repository: str, digest: Digest) -> BlobContent | None:
        """Link a blob the registry already stores (for another repository) without moving its bytes;
        None when it is not stored. Replication's cross-repository mount: the source of the bytes is
        this registry's own store, whichever repository holds them."""
        quota = quota_for(self.quotas, repository)
        if quota is not None:
            await self._quota_used(quota)  # counted, for `_link` to check, as for a mount
        known = await self._settled(digest)  # before looking: a deletion from here on is seen when linking
        size = await self.stored_size(digest)
        if size is None or await self.store.stat(digest) != size:
            return None
        async with self.db.write() as conn:
            await self._record_and_link(conn, repository, digest, size, known)
            await self.record(conn, _blob_pushed(repository, digest, size))
        return BlobContent(str(digest), size)

    async def holders(self, digest: Digest, limit: int = 10) -> list[str]:
        """Repositories linking the blob (a few, by name): where a copy elsewhere could mount it from."""
        async with self.db.read() as conn:
            return await blob_rows.holders(conn, str(digest), limit)

    async def stored_size(self, digest: Digest) -> int | None:
        """Size of a blob known to the registry (in any repository)."""
        async with self.db.read() as conn:
            return await blob_rows.blob_size(conn, str(digest))

    async def delete_manifest(self, repository: str, reference: str | Digest) -> None:
        async with self.db.write() as conn:
            repo_id = await repo_rows.repository_id(conn, repository)
            if repo_id is None:
                raise RegistryError("NAME_UNKNOWN", detail={"name": repository})
            if isinstance(reference, Digest):
                await self._delete_by_digest(conn, repository, repo_id, str(reference))
                return
            deleted = await tag_rows.delete_tag(conn, repo_id, reference)
            held = await self.immutable.holding(conn, repository, [reference] if deleted else [])
            if held is not None:
                raise held_tag_error(repository, *held)  # and the delete rolls back
            if not deleted:
                raise RegistryError("MANIFEST_UNKNOWN", detail={"reference": str(reference)})
            await self.record(conn, Change("delete", "manifest", repository, tag=reference))

    async def delete_with_referrers(self, repository: str, digest: Digest, limit: int) -> list[str]:
        """Delete a manifest and every manifest referring to it, however deep (a signature of its SBOM),
        in one transaction: all go or none does. Returns the referrers deleted. More than `limit` of them
        is refused (`DENIED`) rather than held in one transaction."""
        async with self.db.write() as conn:
            repo_id = await repo_rows.repository_id(conn, repository)
            if repo_id is None:
                raise RegistryError("NAME_UNKNOWN", detail={"name": repository})
            referrers = await inventory_rows.referrer_closure(conn, repo_id, str(digest), limit)
            if len(referrers) > limit:
                raise RegistryError("DENIED", f"{repository}@{digest} has more than {limit} referrers: delete "
                                    "some of them first", detail={"digest": str(digest)})
            for each in [*referrers, str(digest)]:  # the deepest first: a subject outlives its referrers
                await self._delete_by_digest(conn, repository, repo_id, each)
            return referrers

    async def _delete_by_digest(self, conn, repository: str, repo_id: int, digest: str) -> None:
        # Locked first (PostgreSQL), so a push tagging it meanwhile is seen or waits.
        if await manifest_rows.lock_manifest(conn, repo_id, digest):
            held = await self.immutable.holding(  # its own tags, and those of indexes listing it
                conn, repository, await inventory_rows.tags_reaching(conn, repo_id, digest))
            if held is not None:
                raise held_manifest_error(repository, digest, *held)
        if not await manifest_rows.delete_manifest(conn, repo_id, digest):
            raise RegistryError("MANIFEST_UNKNOWN", detail={"reference": digest})
        await self.record(conn, Change("delete", "manifest", repository, digest))

    async def record(self, conn, change: Change) -> None:
        """The one hook for events: inside a write transaction, so the event commits with the change."""
        if self.journal is not None:
            await self.journal.record(conn, change)

    # -- discovery --------------------------------------------------------------------
    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        found = await tag_rows.list_tags(self.db, repository, limit, last)
        if found is None:
            raise RegistryError("NAME_UNKNOWN", detail={"name": repository})
        return found

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        async with self.db.read() as conn:
            return await repo_rows.catalog(conn, limit, last)

    async def referrers(self, repository: str, subject: Digest,
                        artifact_type: str | None) -> list[manifest_rows.Referrer]:
        async with self.db.read() as conn:
            return await manifest_rows.referrers(conn, repository, str(subject), artifact_type)


def _blob_pushed(repository: str, digest: Digest, size: int) -> Change:
    return Change("push", "blob", repository, str(digest), media_type=BLOB_MEDIA_TYPE, size=size)


def _new_upload_id() -> str:
    return secrets.token_urlsafe(24)


def _quota_error(quota: Quota, used: int, size: int | None) -> RegistryError:
    needs = f"; this blob needs {format_bytes(size)} more" if size is not None else ""
    return RegistryError("DENIED", f"quota exceeded for namespace {quota.namespace!r}: "
                         f"{format_bytes(used)} used of its {format_bytes(quota.bytes)} quota{needs}",
                         detail={"namespace": quota.namespace, "quota": quota.bytes, "usage": used, "size": size})

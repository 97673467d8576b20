"""One run of a rule: walk the source's repositories and tags through the rule's filters and make the
destination hold the same manifests, byte for byte, with the blobs they need and their referrers.

What the destination has is never sent again: a tag already pointing at the source's digest is
skipped, a manifest or blob is asked for (HEAD) before it is written, a blob the destination holds in
another repository is mounted, and only then are bytes streamed from one end to the other (never
held whole). A run killed midway therefore resumes by running again: it finds what the first one
finished and sends the rest. Children go before their index, blobs before their manifest, and a
tag is moved last, so a destination never shows a tag whose image is incomplete.

Failures are per tag: one line each in the run's history, and the run goes on with the next tag. A
429 waits for its Retry-After (bounded) and tries again; so does an unavailable peer, a few times.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from registry.client import UpstreamError, UpstreamThrottled, UpstreamUnavailable
from registry.errors import RegistryError
from registry.manifest import parse_manifest
from registry.replication.ends import End, Fetched, ReplicationError
from registry.replication.rules import Rule

log = logging.getLogger("registry.replication")

T = TypeVar("T")
MAX_ATTEMPTS = 5
MAX_WAIT = 60.0  # a Retry-After longer than this is waited in steps of this, up to MAX_ATTEMPTS
REFERRER_DEPTH = 4  # a signature of an SBOM of an image: referrers of referrers, this deep
MAX_REFERRERS = 1000  # of one subject: more is a peer gone wrong (or hostile), not a supply chain
MAX_ERROR_LINES = 50
MAX_COPIED_LINES = 200
REFERRERS_TAG = re.compile(r"sha256-[0-9a-f]{64}")  # the OCI 1.1 fallback tag: follows its subject


@dataclass
class Tally:
    """What a run did, as its history row records it."""

    manifests: int = 0
    blobs: int = 0
    mounted: int = 0
    present: int = 0
    bytes: int = 0
    deleted: int = 0
    errors: int = 0
    skipped: int = 0
    error_lines: list[str] = field(default_factory=list)
    skip_lines: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"manifests": self.manifests, "blobs": self.blobs, "mounted": self.mounted, "present": self.present,
                "bytes": self.bytes, "deleted": self.deleted, "errors": self.errors}

    def failed(self, where: str, exc: BaseException) -> None:
        self.errors += 1
        line = f"{where}: {_one_line(exc)}"
        log.warning("replication: %s", line)
        if len(self.error_lines) < MAX_ERROR_LINES:
            self.error_lines.append(line)

    def skip(self, line: str) -> None:
        """Left out on purpose (not an error: the run succeeds)."""
        self.skipped += 1
        if len(self.skip_lines) < MAX_ERROR_LINES:
            self.skip_lines.append(line)

    def wrote(self, line: str) -> None:
        if len(self.copied) < MAX_COPIED_LINES:
            self.copied.append(line)


class Replicator:
    def __init__(self, rule: Rule, source: End, destination: End, tally: Tally | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rule = rule
        self.source = source
        self.destination = destination
        self.tally = tally or Tally()
        self.sleep = sleep
        self._blob_slots = asyncio.Semaphore(rule.concurrency)
        self._tag_slots = asyncio.Semaphore(rule.concurrency)
        self._blobs: dict[tuple[str, str], asyncio.Task[None]] = {}  # (destination repo, digest): one copy
        self._where: dict[str, str] = {}  # digest -> a destination repository holding it (to mount from)

    async def run(self, repositories: list[str] | None = None) -> Tally:
        """Every repository the rule covers, or only `repositories` (those a push event named)."""
        names = repositories if repositories is not None else await self._call(
            lambda: self.source.repositories(self.rule.literal_repositories()))
        for repository in sorted(n for n in names if self.rule.wants_repository(n)):
            try:
                await self.repository(repository)
            except Exception as exc:  # noqa: BLE001 - one repository's failure is recorded; the others go on
                self.tally.failed(repository, exc)
        return self.tally

    async def repository(self, repository: str) -> None:
        source_tags = await self._call(lambda: self.source.tags(repository))
        wanted = [t for t in source_tags if self.rule.wants_tag(t)
                  and not (self.rule.referrers and REFERRERS_TAG.fullmatch(t))]
        target = self.rule.destination(repository)
        await asyncio.gather(*(self._tag_in_slot(repository, target, tag) for tag in wanted))
        if self.rule.delete:
            await self._delete_missing(target, set(source_tags))

    async def _tag_in_slot(self, repository: str, target: str, tag: str) -> None:
        async with self._tag_slots:
            try:
                await self.tag(repository, target, tag)
            except Exception as exc:  # noqa: BLE001 - recorded with the run; the other tags go on
                self.tally.failed(f"{repository}:{tag}", exc)

    async def tag(self, repository: str, target: str, tag: str) -> None:
        fetched = await self._call(lambda: self.source.manifest(repository, tag))
        if fetched is None:
            return  # deleted since the tag list was read
        if await self._call(lambda: self.destination.tag_digest(target, tag)) == fetched.digest:
            self.tally.present += 1
        else:
            whole = await self._tree(repository, target, fetched)
            try:
                await self._call(lambda: self.destination.put_manifest(target, tag, fetched))
            except (RegistryError, UpstreamError) as exc:
                if whole:
                    raise
                # The platform filter left children out, and the destination (this registry among them)
                # refuses an index whose children it lacks: the chosen platforms stay, by digest.
                self.tally.skip(f"{target}:{tag}: the index is not written without all its children "
                                f"({_one_line(exc)}); the images of {', '.join(self.rule.platforms)} are copied "
                                "by digest")
                return
            self.tally.manifests += 1
            self.tally.wrote(f"{target}:{tag}@{fetched.digest}")
        if self.rule.referrers:
            await self._referrers(repository, target, fetched.digest, REFERRER_DEPTH)

    async def _manifest_by_digest(self, repository: str, target: str, digest: str) -> None:
        if await self._call(lambda: self.destination.has_manifest(target, digest)):
            self.tally.present += 1
            return
        fetched = await self._call(lambda: self.source.manifest(repository, digest))
        if fetched is None:
            raise ReplicationError(f"manifest {digest} is not in {repository} at the source")
        await self._tree(repository, target, fetched)  # a child of an index, or a referrer: not itself filtered
        await self._call(lambda: self.destination.put_manifest(target, digest, fetched))
        self.tally.manifests += 1
        self.tally.wrote(f"{target}@{digest}")

    async def _tree(self, repository: str, target: str, fetched: Fetched) -> bool:
        """What `fetched` needs at the destination before it can be written: an index's children (those
        of the platforms the rule takes), an image's config and layers. False when the platform filter
        left a child out."""
        parsed = parse_manifest(fetched.payload, fetched.media_type)
        entries = parsed.document.get("manifests") if parsed.manifests else None
        whole = True
        for position, child in enumerate(parsed.manifests):
            platform = entries[position].get("platform") if isinstance(entries, list) else None
            if self.rule.wants_platform(platform):
                await self._manifest_by_digest(repository, target, child.digest)
            else:
                whole = False
        await asyncio.gather(*(self._blob(repository, target, d.digest, d.size) for d in parsed.blobs))
        return whole

    async def _referrers(self, repository: str, target: str, subject: str, depth: int) -> None:
        found = await self._call(lambda: self.source.referrers(repository, subject))
        if len(found) > MAX_REFERRERS:
            self.tally.skip(f"{target}@{subject}: {len(found)} referrers; the first {MAX_REFERRERS} are copied")
        copied = []
        for descriptor in found[:MAX_REFERRERS]:
            digest = descriptor.get("digest")
            if not isinstance(digest, str):
                continue
            await self._manifest_by_digest(repository, target, digest)
            copied.append(descriptor)
            if depth > 1:
                await self._referrers(repository, target, digest, depth - 1)
        if await self._call(lambda: self.destination.list_referrers(target, subject, copied)):
            self.tally.manifests += 1
            self.tally.wrote(f"{target}:{subject.replace(':', '-')} (the referrers tag)")

    async def _blob(self, repository: str, target: str, digest: str, size: int) -> None:
        key = (target, digest)
        task = self._blobs.get(key)
        if task is None:  # the first manifest that needs it copies it; the others wait for that copy
            task = self._blobs[key] = asyncio.ensure_future(self._copy_blob(repository, target, digest, size))
        await asyncio.shield(task)

    async def _copy_blob(self, repository: str, target: str, digest: str, size: int) -> None:
        async with self._blob_slots:
            if await self._call(lambda: self.destination.has_blob(target, digest)):
                self.tally.present += 1
                self._where.setdefault(digest, target)
                return
            mount_from = self._where.get(digest) or await self._mount_source(target, digest)
            mounted = await self._call(lambda: self.destination.put_blob(
                target, digest, size, mount_from, lambda: self.source.open_blob(repository, digest)))
            self._where.setdefault(digest, target)
            if mounted:
                self.tally.mounted += 1
            else:
                self.tally.blobs += 1
                self.tally.bytes += size

    async def _mount_source(self, target: str, digest: str) -> str | None:
        """A destination repository an earlier run copied the blob to: another repository of the source
        that holds it and that this rule covers, under its destination name. A mount that misses costs
        nothing more: the destination answers it with an upload session, which the bytes then use."""
        for holder in await self._call(lambda: self.source.holders(digest)):
            candidate = self.rule.destination(holder)
            if candidate != target and self.rule.wants_repository(holder):
                return candidate
        return None

    async def _delete_missing(self, target: str, source_tags: set[str]) -> None:
        for tag in await self._call(lambda: self.destination.tags(target)):
            if tag in source_tags or not self.rule.wants_tag(tag):
                continue
            try:
                await self._call(lambda tag=tag: self.destination.delete_tag(target, tag))  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - recorded; the other deletions go on
                self.tally.failed(f"delete {target}:{tag}", exc)
            else:
                self.tally.deleted += 1
                self.tally.wrote(f"deleted {target}:{tag}")

    async def _call(self, action: Callable[[], Awaitable[T]]) -> T:
        """`action`, again after a 429's Retry-After or an unavailable peer's pause, a few times."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await action()
            except UpstreamThrottled as exc:
                if attempt == MAX_ATTEMPTS:
                    raise
                await self.sleep(min(max(exc.retry_after, 0.1), MAX_WAIT))
            except UpstreamUnavailable:
                if attempt == MAX_ATTEMPTS:
                    raise
                await self.sleep(min(2.0 ** attempt, MAX_WAIT))
        raise AssertionError("unreachable")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, RegistryError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, UpstreamError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:500] if text else type(exc).__name__


def as_detail(tally: Tally) -> dict[str, Any]:
    return {"errors": tally.error_lines, "skipped": tally.skip_lines, "copied": tally.copied}

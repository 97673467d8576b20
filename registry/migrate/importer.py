"""Importing a source (registry/migrate/source.py) through the content layer, as pushes.

Per repository, in the order a client pushes: blobs first (each verified by streaming it through its
digest, then adopted: hard-linked when the store is on the same filesystem), then image manifests, then
the indexes listing them (a manifest with a subject after its subject), then tags. What the repository
holds already is skipped without a write, so a second run changes nothing and a run after an interrupted
one finishes the job. What cannot be imported is skipped with its reason, and so is all that needs it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from registry import manifest as mf
from registry.content.local import LocalContent
from registry.digest import Digest, parse_digest
from registry.errors import RegistryError
from registry.metadata import blobs as blob_rows
from registry.metadata import manifests as manifest_rows
from registry.migrate.hashing import Checked, check_blob, read_verified
from registry.migrate.report import Report
from registry.migrate.source import Source, SourceRepository
from registry.reference import is_valid_tag, validate_name

_PLURAL = {"blob": "blobs", "manifest": "manifests", "tag": "tags", "repository": "repositories"}


@dataclass
class _Manifest:
    """A manifest of the source: `state` is present (the repository holds it), ready, imported or bad."""

    digest: str
    state: str
    payload: bytes = b""
    parsed: mf.ParsedManifest | None = None
    reason: str = ""

    def dependencies(self) -> list[str]:
        """What must be stored before it: the manifests an index lists, and its subject."""
        if self.parsed is None:
            return []
        found = [child.digest for child in self.parsed.manifests]
        return found + [self.parsed.subject] if self.parsed.subject else found


class Importer:
    def __init__(self, content: LocalContent, source: Source, *, prefix: str | None = None, dry_run: bool = False,
                 manifest_limit: int = 4 * 1024 * 1024, blob_limit: int = 0) -> None:
        self.content = content
        self.db = content.db
        self.source = source
        self.prefix = prefix.strip("/") if prefix else None
        self.dry_run = dry_run
        self.manifest_limit = manifest_limit
        self.blob_limit = blob_limit  # limits.blob_bytes; 0: none
        self.report = Report(str(source.root), source.kind, dry_run)

    async def run(self) -> Report:
        for problem in self.source.problems:
            where = self._target_name(problem.repository) if problem.repository else None
            self.report.skip(_PLURAL[problem.kind], where, problem.name, problem.reason)
        for repository in self.source.repositories:
            await self._repository(repository)
        return self.report

    def _target_name(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    async def _repository(self, repository: SourceRepository) -> None:
        target = self._target_name(repository.name)
        try:
            validate_name(target)
        except RegistryError as exc:
            self.report.skip("repositories", None, target, f"not a valid repository name ({exc.message})")
            return
        imported_before = self._imported()
        manifests = await self._load_manifests(target, repository)
        blobs = await self._blobs(target, repository, manifests)
        for digest in _push_order(manifests):
            await self._manifest(target, manifests[digest], manifests, blobs)
        for tag, tagged in sorted(repository.tags.items()):
            await self._tag(target, tag, manifests[str(tagged)])
        self.report.count("repositories", "imported" if self._imported() > imported_before else "present")

    def _imported(self) -> int:
        return sum(self.report.counts[kind]["imported"] for kind in ("tags", "manifests", "blobs"))

    # -- manifests, read --------------------------------------------------------------------------
    async def _load_manifests(self, target: str, repository: SourceRepository) -> dict[str, _Manifest]:
        """Every manifest the repository has or its tags and indexes name, read and parsed."""
        found: dict[str, _Manifest] = {}
        pending = [*repository.manifests, *repository.tags.values()]
        while pending:
            digest = pending.pop()
            if str(digest) in found:
                continue
            loaded = found[str(digest)] = await self._load_manifest(target, digest)
            for child in loaded.parsed.manifests if loaded.parsed else []:
                pending.append(parse_digest(child.digest))  # the parser checked it
        return found

    async def _load_manifest(self, target: str, digest: Digest) -> _Manifest:
        async with self.db.read() as conn:
            row = await manifest_rows.manifest_by_digest(conn, target, str(digest))
        if row is not None:  # held already: its stored bytes are the same (the digest says so)
            return _Manifest(str(digest), "present", row.payload, mf.parse_manifest(row.payload, row.media_type))
        read = await asyncio.to_thread(read_verified, self.source.blob_path(digest), digest, self.manifest_limit)
        if isinstance(read, Checked):
            return _Manifest(str(digest), "bad", reason=f"{read.problem}: {read.reason}")
        try:
            parsed = mf.parse_manifest(read, None)
        except RegistryError as exc:
            return _Manifest(str(digest), "bad", reason=f"not a manifest this registry stores: {exc.message}")
        return _Manifest(str(digest), "ready", read, parsed)

    # -- blobs ------------------------------------------------------------------------------------
    async def _blobs(self, target: str, repository: SourceRepository,
                     manifests: dict[str, _Manifest]) -> dict[str, str | None]:
        """Import the repository's linked blobs and those its manifests need; digest -> None when the
        repository has it now, else why not."""
        wanted = {str(digest): digest for digest in repository.blobs}
        for loaded in manifests.values():
            if loaded.parsed is not None:  # a manifest held already too: its blobs count as present
                for descriptor in loaded.parsed.blobs:
                    wanted.setdefault(descriptor.digest, parse_digest(descriptor.digest))
        outcome: dict[str, str | None] = {}
        for name, digest in sorted(wanted.items()):
            outcome[name] = await self._blob(target, digest)
        return outcome

    async def _blob(self, target: str, digest: Digest) -> str | None:
        async with self.db.read() as conn:
            link = await blob_rows.linked_blob(conn, target, str(digest))
        if link is not None:
            self.report.count("blobs", "present")
            self.report.bytes["present"] += link.size
            return None
        path = self.source.blob_path(digest)
        checked = await check_blob(path, digest)
        if not checked.ok or checked.size is None:
            return self._skip_blob(target, digest, f"{checked.problem}: {checked.reason}")
        if self.blob_limit and checked.size > self.blob_limit:
            return self._skip_blob(target, digest, f"{checked.size} bytes: larger than limits.blob_bytes")
        if not self.dry_run:
            try:
                await self.content.adopt_file(target, digest, path, checked.size, pushed=True)
            except RegistryError as exc:
                return self._skip_blob(target, digest, exc.message)
        self.report.count("blobs", "imported")
        self.report.bytes["imported"] += checked.size
        return None

    def _skip_blob(self, target: str, digest: Digest, reason: str) -> str:
        self.report.skip("blobs", target, str(digest), reason)
        return reason

    # -- manifests, written -----------------------------------------------------------------------
    async def _manifest(self, target: str, loaded: _Manifest, manifests: dict[str, _Manifest],
                        blobs: dict[str, str | None]) -> None:
        if loaded.state == "present":
            self.report.count("manifests", "present")
            return
        if loaded.state == "ready":
            loaded.reason = _missing_dependency(loaded, manifests, blobs)
            if loaded.reason:
                loaded.state = "bad"
        if loaded.state == "bad":
            self.report.skip("manifests", target, loaded.digest, loaded.reason)
            return
        if not self.dry_run:
            try:
                await self.content.put_manifest(target, parse_digest(loaded.digest), loaded.payload, None)
            except RegistryError as exc:
                loaded.state, loaded.reason = "bad", exc.message
                self.report.skip("manifests", target, loaded.digest, exc.message)
                return
        loaded.state = "imported"
        self.report.count("manifests", "imported")

    # -- tags -------------------------------------------------------------------------------------
    async def _tag(self, target: str, tag: str, loaded: _Manifest) -> None:
        if not is_valid_tag(tag):
            self.report.skip("tags", target, tag[:200], "not a valid tag name")
            return
        if loaded.state == "bad":
            self.report.skip("tags", target, tag, f"its manifest {loaded.digest} was skipped ({loaded.reason})")
            return
        async with self.db.read() as conn:
            row = await manifest_rows.manifest_by_tag(conn, target, tag)
        if row is not None and row.digest == loaded.digest:
            self.report.count("tags", "present")
            return
        if not self.dry_run:
            try:
                await self.content.put_manifest(target, tag, loaded.payload, None)
            except RegistryError as exc:
                self.report.skip("tags", target, tag, exc.message)
                return
        self.report.count("tags", "imported")


def _missing_dependency(loaded: _Manifest, manifests: dict[str, _Manifest], blobs: dict[str, str | None]) -> str:
    """Why `loaded` cannot be stored (a blob or listed manifest skipped), or "" when it can."""
    assert loaded.parsed is not None
    for descriptor in loaded.parsed.blobs:
        reason = blobs.get(descriptor.digest)
        if reason is not None:
            return f"needs blob {descriptor.digest}, which was skipped ({reason})"
    for child in loaded.parsed.manifests:
        found = manifests.get(child.digest)
        if found is not None and found.state == "bad":
            return f"needs manifest {child.digest}, which was skipped ({found.reason})"
    return ""


def _push_order(manifests: dict[str, _Manifest]) -> list[str]:
    """Each manifest after those it depends on (children, subject) that the source has: image manifests,
    then indexes, then referrers. Iterative, so a deep chain in a hostile source cannot overflow."""
    order: list[str] = []
    done: set[str] = set()
    entered: set[str] = set()
    for start in sorted(manifests):
        stack = [(start, False)]
        while stack:
            digest, finished = stack.pop()
            if digest in done:
                continue
            if finished:
                done.add(digest)
                order.append(digest)
                continue
            if digest in entered:
                continue  # a cycle (digests make one impossible, but the bytes are not trusted)
            entered.add(digest)
            stack.append((digest, True))
            stack.extend((dep, False) for dep in manifests[digest].dependencies() if dep in manifests)
    return order

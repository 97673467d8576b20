"""Integrity check: do the store's bytes and the database's rows agree, and do the bytes hash
to their names?

Findings: `corrupt` (bytes that do not hash to their digest, or a size that differs from the
row), `missing` (a row without bytes), `orphan` (bytes without a row), `stray` (a file in the
blob area that is not a blob). With repair, bad bytes are moved to the store's quarantine (kept
for inspection, never served) and rows whose bytes are bad or gone are forgotten, so the
registry answers BLOB_UNKNOWN instead of serving something wrong; pushing the blob again heals it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

from registry.digest import Digest, parse_digest
from registry.metadata import gc as gc_rows
from registry.metadata.db import Database
from registry.storage import BlobStore

log = logging.getLogger("registry.fsck")

ROW_BATCH = 1000


@dataclass
class Findings:
    checked: int = 0
    hashed: int = 0
    hashed_bytes: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, **details: Any) -> None:
        self.problems.append({"problem": kind, **details})


async def check(db: Database, store: BlobStore, sample: float | None = None, repair: bool = False,
                rng: random.Random | None = None) -> Findings:
    """Check every blob's presence and size; re-hash all of them, or a random `sample` fraction."""
    rng = rng or random.Random()
    findings = Findings()
    async with db.read() as conn:
        rows = await gc_rows.all_blob_sizes(conn)
    stored: dict[str, int] = {}
    async for blob, size in store.iter_blobs():
        stored[str(blob)] = size

    for digest, size in sorted(rows.items()):
        findings.checked += 1
        on_disk = stored.get(digest)
        if on_disk is None:
            findings.add("missing", digest=digest, size=size)
        elif on_disk != size:
            findings.add("corrupt", digest=digest, size=size, stored_size=on_disk, reason="size differs")
        elif sample is None or rng.random() < sample:
            actual = await _hash(store, parse_digest(digest))
            findings.hashed += 1
            findings.hashed_bytes += size
            if actual != parse_digest(digest).hex:
                findings.add("corrupt", digest=digest, size=size, reason="content does not match the digest")
    for digest in sorted(set(stored) - set(rows)):
        findings.add("orphan", digest=digest, size=stored[digest])
    async for name in store.iter_strays():
        findings.add("stray", name=name)

    if findings.problems:
        async with db.read() as conn:
            broken = await gc_rows.manifests_needing(conn, [p["digest"] for p in findings.problems
                                                           if p["problem"] in ("missing", "corrupt")])
        for problem in findings.problems:
            if problem.get("digest") in broken:
                problem["manifests"] = broken[problem["digest"]]
    if repair:
        await _repair(db, store, findings)
    return findings


async def _hash(store: BlobStore, digest: Digest) -> str:
    hasher = digest.hasher()
    async for chunk in store.read(digest):
        hasher.update(chunk)
    return hasher.hexdigest()


async def _repair(db: Database, store: BlobStore, findings: Findings) -> None:
    forget = []
    for problem in findings.problems:
        kind = problem["problem"]
        try:
            if kind == "corrupt":
                problem["quarantined"] = await store.quarantine(parse_digest(problem["digest"]), "corrupt")
                forget.append(problem["digest"])
            elif kind == "missing":
                forget.append(problem["digest"])
            elif kind == "orphan":
                async with db.read() as conn:  # recorded meanwhile (a push finishing): not an orphan
                    if await gc_rows.all_blob_sizes(conn, [problem["digest"]]):
                        problem["repaired"] = "recorded meanwhile; left alone"
                        continue
                problem["quarantined"] = await store.quarantine(parse_digest(problem["digest"]), "orphan")
            elif kind == "stray":
                problem["quarantined"] = await store.quarantine_stray(problem["name"], "stray")
        except Exception as exc:  # report it and go on with the rest
            log.warning("fsck could not repair %s", problem, exc_info=True)
            problem["repair_failed"] = repr(exc)
    for problem in findings.problems:
        if problem.get("digest") in forget and "repair_failed" not in problem:
            problem["repaired"] = "forgotten: push the blob again to restore it"
    async with db.write() as conn:
        await gc_rows.forget_blobs_everywhere(conn, [d for d in forget])

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
from collections.abc import AsyncIterator
from typing import Any

from registry.digest import Digest, parse_digest
from registry.metadata import gc as gc_rows
from registry.metadata.db import Database
from registry.metadata.inventory import blob_sizes
from registry.storage import BlobStore
from registry.storage.base import bucket_of

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
    """Check every blob's presence and size; re-hash all of them, or a random `sample` fraction.

    The store lists its blobs a bucket at a time (`iter_stored_blobs`); each bucket is compared with the
    rows of the same digest range, and the rows between two listed buckets are missing from the store.
    Memory holds one bucket (1/256 of a hash algorithm's blobs), not the registry.
    """
    rng = rng or random.Random()
    findings = Findings()
    compared_up_to = ""  # rows below this digest are accounted for
    async for (algorithm, prefix), stored in _buckets(store):
        low = f"{algorithm}:{prefix}"
        high = low + "z"  # above every digest of the bucket (hex digits), below the next bucket's
        async for digest, size in _rows_between(db, compared_up_to, low):
            findings.checked += 1
            findings.add("missing", digest=digest, size=size)
        rows: dict[str, int] = {}
        async for digest, size in _rows_between(db, low, high):
            rows[digest] = size
        for digest, size in sorted(rows.items()):
            findings.checked += 1
            await _compare(store, findings, digest, size, stored.get(digest), sample, rng)
        for digest in sorted(set(stored) - set(rows)):
            findings.add("orphan", digest=digest, size=stored[digest])
        compared_up_to = high
    async for digest, size in _rows_between(db, compared_up_to, None):
        findings.checked += 1
        findings.add("missing", digest=digest, size=size)
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


async def _compare(store: BlobStore, findings: Findings, digest: str, size: int, on_disk: int | None,
                   sample: float | None, rng: random.Random) -> None:
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


async def _buckets(store: BlobStore) -> AsyncIterator[tuple[tuple[str, str], dict[str, int]]]:
    """The store's blobs a bucket at a time, in ascending bucket order (the storage contract)."""
    current: tuple[str, str] | None = None
    stored: dict[str, int] = {}
    async for blob, size in store.iter_blobs():
        bucket = bucket_of(blob)
        if bucket != current:
            if current is not None:
                if bucket < current:  # a store breaking its contract would make every row look missing
                    raise RuntimeError(f"the store listed bucket {bucket} after {current}")
                yield current, stored
            current, stored = bucket, {}
        stored[str(blob)] = size
    if current is not None:
        yield current, stored


async def _rows_between(db: Database, low: str, high: str | None) -> AsyncIterator[tuple[str, int]]:
    """Rows with low <= digest < high (None: no upper bound), a page at a time."""
    after = None
    while True:
        async with db.read() as conn:
            page = await gc_rows.blob_sizes_between(conn, low, high, after, ROW_BATCH)
        for digest, size in page:
            yield digest, size
        if len(page) < ROW_BATCH:
            return
        after = page[-1][0]


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
                    if await blob_sizes(conn, [problem["digest"]]):
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

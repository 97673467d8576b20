"""fsck compares the store with the database a bucket at a time (registry/gc/fsck.py): rows whose whole
bucket is absent from the store (before the first listed bucket, between two, after the last) are
missing, bytes without a row are orphans, and the database is read in pages, on both databases."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from registry.gc import fsck
from registry.metadata.db import Database
from registry.metadata.schema import blobs
from registry.storage.filesystem import FilesystemStore
from tests.storage.test_contract import put


def digest_in_bucket(prefix: str, n: int) -> str:
    """A well-formed digest whose hex starts with `prefix` (no bytes behind it: a row only)."""
    return "sha256:" + prefix + hashlib.sha256(f"{prefix}{n}".encode()).hexdigest()[len(prefix):]


def test_rows_and_bytes_compared_bucket_by_bucket(database_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsck, "ROW_BATCH", 3)  # pages of 3 rows: the walk crosses page ends everywhere

    async def scenario() -> None:
        db = Database(database_url)
        store = FilesystemStore(tmp_path / "store")
        try:
            recorded = {}
            for i in range(40):
                data = f"blob {i}".encode()
                recorded[str(await put(store, f"u{i}", data))] = len(data)
            orphan = str(await put(store, "orphan", b"no row records me"))
            listed = sorted({d.split(":")[1][:2] for d in recorded} | {orphan.split(":")[1][:2]})
            # Rows only, in buckets the store does not list: below the first, above the last, in a gap.
            gap = next(f"{b:02x}" for b in range(int(listed[0], 16) + 1, 256) if f"{b:02x}" not in listed)
            missing = {digest_in_bucket(prefix, n): 10 for prefix in ("00", gap, "ff") for n in range(4)
                       if prefix not in listed}
            # And one in a bucket the store does list.
            missing[digest_in_bucket(listed[0], 99)] = 7
            async with db.write() as conn:
                for digest, size in {**recorded, **missing}.items():
                    await conn.execute(blobs.insert().values(digest=digest, size=size, created_at=1.0))
            findings = await fsck.check(db, store, sample=1.0)
            assert findings.checked == len(recorded) + len(missing)
            assert findings.hashed == len(recorded)
            problems = {(p["problem"], p["digest"]) for p in findings.problems}
            assert problems == {("missing", d) for d in missing} | {("orphan", orphan)}
        finally:
            await db.close()

    asyncio.run(scenario())

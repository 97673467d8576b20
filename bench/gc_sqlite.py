"""Garbage collection on the embedded default (SQLite): wall time, peak RSS, and how long it holds the event loop.

    .venv/bin/python bench/gc_sqlite.py --size tenth                       # this tree
    .venv/bin/python bench/gc_sqlite.py --size tenth --code /tmp/old-tree --code .

The database is seeded with bench/scale.py's shape (SIZES; `tenth` is a tenth of full), written by Python's
sqlite3 into a database the migrations made. Each tree then runs a dry run with every untagged manifest
planned (`gc.untagged_days` 0, no grace) in a process of its own, as a server would run it: on its event
loop, beside a task that sleeps 1 ms at a time and records how late it wakes (a late wake is a request
that would have waited). Prints seconds, peak RSS (MiB), the longest stall and the 99th percentile (ms).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.gc_scale import GC_SIZES  # noqa: E402

RUN = """
import asyncio, json, resource, sys, time
from pathlib import Path
from registry.gc.jobs import Maintenance, Settings
from registry.metadata.db import Database
from registry.storage.filesystem import FilesystemStore

async def main():
    db = Database(sys.argv[1])
    maintenance = Maintenance(db, FilesystemStore(Path(sys.argv[2])), Settings(grace_seconds=0.0, untagged_days=0.0))
    stalls = []
    done = asyncio.Event()

    async def ticker():
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append((time.perf_counter() - before) * 1000 - 1)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)  # the ticker is asleep: a gc that holds the loop from its first step wakes it late
    started = time.perf_counter()
    report = await maintenance.gc(dry_run=True)
    seconds = time.perf_counter() - started
    done.set()
    await tick
    await db.close()
    stalls.sort()
    print(json.dumps({"seconds": round(seconds, 1), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "longest_stall_ms": round(stalls[-1], 1), "p99_stall_ms": round(stalls[int(0.99 * len(stalls))], 1),
                      "deleted": report["deleted"]}))

asyncio.run(main())
"""


def digest(kind: str, number: int) -> str:
    return "sha256:" + hashlib.sha256(f"{kind}{number}".encode()).hexdigest()


def seed(path: Path, n: dict[str, int]) -> None:
    """bench/scale.py's seed_sql, row for row, in Python (SQLite has no generate_series or sha256)."""
    now = time.time()
    per_repo = max(1, n["manifests"] // n["repositories"])
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO repositories (id, name, created_at) VALUES (?, ?, ?)",
                       ((i, "big/repo" if i == 1 else f"ns{i % 1000}/repo{i}", now)
                        for i in range(1, n["repositories"] + 1)))
        db.executemany("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?)",
                       ((digest("b", i), 1000 + i % 100_000, now) for i in range(n["blobs"])))
        db.executemany("INSERT INTO manifests (id, repository_id, digest, media_type, payload, size, created_at) "
                       "VALUES (?, ?, ?, 'application/vnd.oci.image.manifest.v1+json', ?, 300, ?)",
                       ((i + 1, 1 + (i // per_repo) % n["repositories"], digest("m", i), b"{}", now)
                        for i in range(n["manifests"])))
        db.executemany("INSERT INTO manifest_references (manifest_id, digest, kind) VALUES (?, ?, 'blob')",
                       ((i + 1, digest("b", 2 * i + k)) for i in range(n["manifests"]) for k in (0, 1)
                        if 2 * i + k < n["blobs"]))
        db.executemany("INSERT OR IGNORE INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)",
                       ((1 + i % n["repositories"], digest("b", i % n["blobs"]), now) for i in range(n["links"])))
        db.executemany("INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES (1, ?, ?, ?)",
                       ((f"v{i}", 1 + i % per_repo, now) for i in range(n["big_tags"])))
        db.execute(f"INSERT INTO tags (repository_id, name, manifest_id, updated_at) SELECT repository_id, 't' || id, "
                   f"id, {now} FROM manifests WHERE repository_id <> 1 ORDER BY id LIMIT {n['tags'] - n['big_tags']}")
        db.executemany("INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest, "
                       "payload, size, created_at) VALUES (1, ?, 'application/vnd.oci.image.manifest.v1+json', "
                       "'application/vnd.example.sig', ?, '{}', 2, ?)",
                       ((digest("r", i), digest("m", 0), now) for i in range(n["referrers"])))
        db.execute("ANALYZE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(GC_SIZES), default="small")
    parser.add_argument("--code", action="append", type=Path, help="a source tree to run gc from (repeatable)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-gc-sqlite-"))
    database = work / "data" / "registry.db"
    subprocess.run([sys.executable, "-m", "registry", "db", "upgrade", "--data-dir", str(work / "data")],
                   env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT, check=True, capture_output=True)
    started = time.monotonic()
    seed(database, GC_SIZES[args.size])
    print(f"seeded {args.size} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    results = {}
    for tree in args.code or [REPO_ROOT]:
        proc = subprocess.run([sys.executable, "-c", RUN, f"sqlite+aiosqlite:///{database}", str(work / "blobs")],
                              env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree, capture_output=True, text=True,
                              timeout=7200)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        results[str(tree)] = json.loads(proc.stdout)
        print(f"{tree}: {results[str(tree)]}", file=sys.stderr)
    print(json.dumps({"size": args.size, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Acceptance 5: gc of a store with 10,000 manifests and 50,000 blobs finishes; its time is
written to test-artifacts/gc-scale.json (and printed).

The store is seeded straight into the database and the blob directory (pushing 50,000 blobs
over HTTP would measure the push path, not gc): 100 repositories of 100 manifests, each
manifest with its own 5 blobs; half the manifests tagged, half untagged and 30 days old, so
gc (untagged_days 7) must delete 5,000 manifests, 25,000 links and 25,000 blobs and their files.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPOSITORIES, MANIFESTS_PER_REPOSITORY, BLOBS_PER_MANIFEST = 100, 100, 5
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _registry(data: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "registry", *args, "--data-dir", str(data)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _seed(data: Path) -> None:
    _registry(data, "db", "upgrade")
    now = time.time()
    old = now - 30 * 86400
    repos, manifests, tags, references, links, blobs = [], [], [], [], [], []
    manifest_id = 0
    for r in range(1, REPOSITORIES + 1):
        repos.append((r, f"scale/repo{r:03d}", old))
        for m in range(MANIFESTS_PER_REPOSITORY):
            manifest_id += 1
            digests = []
            for b in range(BLOBS_PER_MANIFEST):
                content = f"{manifest_id}-{b}".encode()
                digest = "sha256:" + hashlib.sha256(content).hexdigest()
                digests.append(digest)
                blobs.append((digest, len(content), old, content))
                links.append((r, digest, old))
                references.append((manifest_id, digest, "blob"))
            payload = json.dumps({"schemaVersion": 2, "layers": digests}).encode()
            manifest_digest = "sha256:" + hashlib.sha256(payload).hexdigest()
            manifests.append((manifest_id, r, manifest_digest, "application/vnd.oci.image.manifest.v1+json",
                              payload, len(payload), old))
            if m % 2 == 0:
                tags.append((r, f"v{m}", manifest_id, old))
    with sqlite3.connect(data / "registry.db") as db:
        db.executemany("INSERT INTO repositories (id, name, created_at) VALUES (?, ?, ?)", repos)
        db.executemany("INSERT INTO manifests (id, repository_id, digest, media_type, payload, size, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", manifests)
        db.executemany("INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES (?, ?, ?, ?)", tags)
        db.executemany("INSERT INTO manifest_references (manifest_id, digest, kind) VALUES (?, ?, ?)", references)
        db.executemany("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?)",
                       [(d, s, t) for d, s, t, _ in blobs])
        db.executemany("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)", links)
    for digest, _, _, content in blobs:
        hex_ = digest[7:]
        path = data / "blobs" / "sha256" / hex_[:2] / hex_
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_gc_of_ten_thousand_manifests_and_fifty_thousand_blobs(tmp_path):
    data = tmp_path / "data"
    started = time.perf_counter()
    _seed(data)
    seeded = time.perf_counter() - started

    started = time.perf_counter()
    dry = json.loads(_registry(data, "gc", "--dry-run", "--json", "--gc-untagged-days", "7").stdout)
    dry_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = json.loads(_registry(data, "gc", "--json", "--gc-untagged-days", "7").stdout)
    gc_seconds = time.perf_counter() - started

    half = REPOSITORIES * MANIFESTS_PER_REPOSITORY // 2
    expected = {"tags": 0, "manifests": half, "links": half * BLOBS_PER_MANIFEST,
                "blobs": half * BLOBS_PER_MANIFEST, "uploads": 0, "orphans": 0}
    assert dry["deleted"] == expected and report["deleted"] == expected
    assert dry["freed_bytes"] == report["freed_bytes"]
    remaining = sum(1 for _ in (data / "blobs" / "sha256").glob("*/*"))
    assert remaining == half * BLOBS_PER_MANIFEST
    check = json.loads(_registry(data, "fsck", "--json", "--sample", "0").stdout)
    assert check["problems"] == [] and check["checked"] == remaining

    figures = {"manifests": REPOSITORIES * MANIFESTS_PER_REPOSITORY,
               "blobs": REPOSITORIES * MANIFESTS_PER_REPOSITORY * BLOBS_PER_MANIFEST,
               "seed_seconds": round(seeded, 1), "dry_run_seconds": round(dry_seconds, 1),
               "gc_seconds": round(gc_seconds, 1), "deleted": report["deleted"]}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "gc-scale.json").write_text(json.dumps(figures, indent=2))
    print(f"\ngc at scale: {figures}")

"""The metadata path at the size real registries reach: a database seeded in SQL, the API timed over HTTP,
then gc, a mirror cache eviction pass and fsck timed on the same data.

    .venv/bin/python bench/scale.py --size small                      # a hundredth: minutes
    .venv/bin/python bench/scale.py --size full                       # 100,000 repositories, 1,000,000 tags, ...
    .venv/bin/python bench/scale.py --size small --database sqlite    # the embedded default
    .venv/bin/python bench/scale.py --size tenth --database sqlite    # where SQLite is still the right choice?
    .venv/bin/python bench/scale.py --size smoke                      # seconds: the test suite runs it

The seed is written by the database itself (INSERT ... SELECT over generate_series on PostgreSQL, over a
recursive CTE on SQLite: no rows cross the wire), into a database the project's own migrations made
(`registry db upgrade`); bench/scale_seed.py has the statements. At full size:
- 100,000 repositories in 1,000 namespaces;
- 3,000,000 blobs, each with its 8 bytes on the filesystem store (so fsck finds them all);
- 2,000,000 manifests, each a real image manifest whose digest is its payload's sha256, with its config
  and one layer as references, and 10,000,000 repository-blob links;
- 1,000,000 tags, 100,000 of them in one repository (`big/repo`);
- 1,000 referrers of one subject in `big/repo`;
- garbage for gc: 20,000 untagged manifests a month old with 40,000 blobs linked a month ago, and 20,000
  blobs linked nowhere;
- a mirror cache: 100,000 links in `hub/lib*`, each to a blob of its own.

Then `registry serve` runs on that database, with a quota on the namespace `ns7` and gc collecting untagged
manifests after 7 days, and 8 concurrent clients time (p50 and p99, client-side, in milliseconds):
- the read paths: catalog first and deep page, tags first and deep page of the 100,000-tag repository,
  manifest GET by tag and by digest, blob HEAD, referrers, the admin repository list and search;
- small pushes (two blobs by POST and monolithic PUT, then the manifest) into `ns7/push` (quota on) and
  into `ns8/push` (no quota): the whole push and each kind of request in it;
- a full gc through the admin API: its wall time, the server's peak RSS meanwhile, and the latency of
  manifest GET, blob HEAD and the tags first page asked while it runs.
With the server stopped: one mirror cache eviction pass (bench/scale_jobs.py: evicting `evict` links) and
`registry fsck --sample 0.01`, each with its time and its process's peak RSS.

Prints one JSON document on stdout, and a table on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
REPO_ROOT = BENCH.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(BENCH))

from scale_jobs import PeakRSS, run_measured  # noqa: E402
from scale_load import MANIFEST, during, time_paths, time_pushes  # noqa: E402
from scale_seed import MIRROR_ALIAS, Dialect, blob_digest, open_sqlite, seed_sql, write_blob_files  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.server import RegistryProcess  # noqa: E402

# requests: per read path; pushes: per namespace; evict: links one eviction pass removes.
SIZES = {
    "full": {"repositories": 100_000, "blobs": 3_000_000, "manifests": 2_000_000, "links": 10_000_000,
             "tags": 1_000_000, "big_tags": 100_000, "referrers": 1_000, "garbage": 20_000,
             "mirror_links": 100_000, "mirror_repos": 1_000, "evict": 100, "requests": 400, "pushes": 80},
    "tenth": {"repositories": 10_000, "blobs": 300_000, "manifests": 200_000, "links": 1_000_000,
              "tags": 100_000, "big_tags": 10_000, "referrers": 1_000, "garbage": 2_000,
              "mirror_links": 10_000, "mirror_repos": 100, "evict": 100, "requests": 400, "pushes": 80},
    "small": {"repositories": 1_000, "blobs": 30_000, "manifests": 20_000, "links": 100_000,
              "tags": 10_000, "big_tags": 1_000, "referrers": 1_000, "garbage": 200,
              "mirror_links": 1_000, "mirror_repos": 10, "evict": 100, "requests": 400, "pushes": 80},
    "smoke": {"repositories": 20, "blobs": 300, "manifests": 200, "links": 1_000,
              "tags": 100, "big_tags": 20, "referrers": 20, "garbage": 10,
              "mirror_links": 50, "mirror_repos": 2, "evict": 10, "requests": 16, "pushes": 8},
}
CONCURRENCY = 8
QUOTA_NAMESPACE = "ns7"
PUSHES = {"quota on": f"{QUOTA_NAMESPACE}/push", "no quota": "ns8/push"}
GC_UNTAGGED_DAYS = 7  # the seed's garbage is older (scale_seed.OLD_DAYS); every other manifest is newer
FSCK_SAMPLE = 0.01
JOB_TIMEOUT = 4 * 3600
START_TIMEOUT = 600  # a first start counts the quota's usage from scratch: a few seconds at full size


# -- the database -------------------------------------------------------------------------------------
@dataclass
class Target:
    """The database under test: its URL, the server's environment for it, and how the seed reaches it."""

    name: str
    url: str
    env: dict[str, str]
    pg: PostgresServer | None = None
    sqlite_path: Path | None = None
    _sqlite: sqlite3.Connection | None = field(default=None, repr=False)

    def execute(self, statement: str) -> None:
        if self.pg is not None:
            self.pg.psql(statement, database="registry", timeout=JOB_TIMEOUT)  # a full-size statement: minutes
            return
        assert self.sqlite_path is not None
        if self._sqlite is None:
            self._sqlite = open_sqlite(self.sqlite_path)
        self._sqlite.execute(statement)

    def close_seed(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None


@contextlib.contextmanager
def database(kind: str, work: Path, data: Path) -> Iterator[Target]:
    if kind == "postgres":
        with PostgresServer(work) as pg:
            url = pg.create_database("registry")
            yield Target(kind, url, {"REGISTRY_DATABASE_URL": url}, pg=pg)
        return
    path = data / "registry.db"
    yield Target(kind, f"sqlite+aiosqlite:///{path}", {}, sqlite_path=path)


# -- what is timed over HTTP --------------------------------------------------------------------------
def read_paths(first_manifest: str) -> dict[str, tuple[str, str, dict[str, str]]]:
    accept = {"Accept": MANIFEST}
    return {
        "catalog, first page": ("GET", "/v2/_catalog?n=100", {}),
        "catalog, deep page": ("GET", "/v2/_catalog?n=100&last=ns5%2Frepo5", {}),
        "tags of big/repo, first page": ("GET", "/v2/big/repo/tags/list?n=100", {}),
        "tags of big/repo, deep page": ("GET", "/v2/big/repo/tags/list?n=100&last=v5", {}),
        "manifest GET by tag": ("GET", "/v2/big/repo/manifests/v1", accept),
        "manifest GET by digest": ("GET", f"/v2/big/repo/manifests/{first_manifest}", accept),
        "blob HEAD": ("HEAD", f"/v2/big/repo/blobs/{blob_digest(0)}", {}),
        "referrers of one subject": ("GET", f"/v2/big/repo/referrers/{first_manifest}", {}),
        "admin repository list, first page": ("GET", "/admin/api/repositories?n=50", {}),
        "admin repository search": ("GET", "/admin/api/repositories?n=50&q=repo77", {}),
    }


GC_PATHS = ("manifest GET by tag", "blob HEAD", "tags of big/repo, first page")


def progress(name: str, figures: dict[str, float]) -> None:
    print(f"  {name}: p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms", file=sys.stderr)


async def measure_http(server: RegistryProcess, n: dict[str, int], first_manifest: str) -> dict[str, Any]:
    paths = read_paths(first_manifest)
    async with httpx.AsyncClient(base_url=server.url, timeout=JOB_TIMEOUT) as client:
        print("read paths, idle:", file=sys.stderr)
        ms = await time_paths(client, paths, n["requests"], CONCURRENCY, progress)
        for label, repository in PUSHES.items():
            print(f"small pushes into {repository} ({label}):", file=sys.stderr)
            for step, figures in (await time_pushes(client, repository, n["pushes"], CONCURRENCY)).items():
                name = f"small push, {label}" if step == "push" else f"small push, {label}: {step}"
                ms[name] = figures
                progress(name, figures)

        async def gc() -> dict[str, Any]:
            response = await client.post("/admin/api/gc", json={})
            if response.status_code != 200:
                raise RuntimeError(f"gc: {response.status_code} {response.text[:300]}")
            return response.json()

        print("full gc, with reads meanwhile:", file=sys.stderr)
        with PeakRSS(server.pid) as rss:
            started = time.perf_counter()
            report, meanwhile = await during(client, gc(), {p: paths[p] for p in GC_PATHS}, CONCURRENCY)
            seconds = time.perf_counter() - started
        for name, figures in meanwhile.items():
            progress(f"{name}, while gc runs", figures)
    expected = {"manifests": n["garbage"], "links": 2 * n["garbage"], "blobs": 3 * n["garbage"]}
    gc_figures = {"seconds": seconds, "peak_rss_mib": rss.peak_mib, "rss_before_mib": rss.before_mib,
                  "rss_source": rss.source, "deleted": report["deleted"], "seeded_garbage": expected,
                  "ms_during": meanwhile}
    return {"ms": ms, "gc": gc_figures}


# -- jobs run with the server stopped -----------------------------------------------------------------
def measure_eviction(target: Target, data: Path, n: dict[str, int], work: Path) -> dict[str, Any]:
    """One pass with the cap set `evict` blobs (8 bytes each) below the cache's usage."""
    cap = (n["mirror_links"] - n["evict"]) * 8
    argv = [sys.executable, str(BENCH / "scale_jobs.py"), "evict", "--database-url", target.url, "--store",
            str(data), "--prefix", MIRROR_ALIAS, "--cap", str(cap)]
    seconds, peak, out, _ = run_measured(argv, {**os.environ, **target.env}, JOB_TIMEOUT, work, "evict")
    report = json.loads(out)
    return {"seconds": report["seconds"], "first_usage_seconds": report["first_usage_seconds"],
            "process_seconds": seconds, "peak_rss_mib": peak,
            "cached_links": n["mirror_links"], "evicted_links": report["evicted_links"],
            "deleted_blobs": report["deleted_blobs"]}


def measure_fsck(target: Target, data: Path, work: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "registry", "fsck", "--data-dir", str(data), "--sample", str(FSCK_SAMPLE),
            "--json"]
    seconds, peak, out, _ = run_measured(argv, {**os.environ, **target.env}, JOB_TIMEOUT, work, "fsck")
    report = json.loads(out)
    return {"seconds": report["finished_at"] - report["started_at"], "process_seconds": seconds,
            "peak_rss_mib": peak, "sample": FSCK_SAMPLE, "checked": report["checked"], "hashed": report["hashed"],
            "problems": len(report["problems"]), "problem_kinds": sorted({p["problem"] for p in report["problems"]})}


# -- the run ------------------------------------------------------------------------------------------
def run(size: str, kind: str, work: Path, n: dict[str, int]) -> dict[str, Any]:
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    with database(kind, work, data) as target:
        subprocess.run([sys.executable, "-m", "registry", "db", "upgrade", "--data-dir", str(data)],
                       env={**os.environ, **target.env}, check=True, capture_output=True)
        print(f"seeding {size} into {kind}...", file=sys.stderr)
        started = time.monotonic()
        for statement in seed_sql(n, Dialect(sqlite=kind == "sqlite"), time.time()):
            target.execute(statement)
        target.close_seed()
        seeded = time.monotonic() - started
        started = time.monotonic()
        files = write_blob_files(data, n)
        written = time.monotonic() - started
        print(f"seeded in {seeded:.0f} s; {files} blob files written in {written:.0f} s", file=sys.stderr)
        env = {**target.env, "REGISTRY_QUOTA_NAMESPACES": json.dumps([{"namespace": QUOTA_NAMESPACE,
                                                                        "bytes": "1TiB"}]),
               "REGISTRY_GC_UNTAGGED_DAYS": str(GC_UNTAGGED_DAYS), "REGISTRY_LIMITS_RATE": "0"}
        server = RegistryProcess(data, env=env)
        with contextlib.ExitStack() as running:
            server.start(timeout=START_TIMEOUT)
            running.callback(server.stop)
            with httpx.Client(base_url=server.url) as client:
                first_manifest = client.get("/v2/big/repo/manifests/v0",  # manifest 1: the referrers' subject
                                            headers={"Accept": MANIFEST}).headers["Docker-Content-Digest"]
            http = asyncio.run(measure_http(server, n, first_manifest))
        print("mirror cache eviction pass...", file=sys.stderr)
        eviction = measure_eviction(target, data, n, work)
        print(f"registry fsck --sample {FSCK_SAMPLE}...", file=sys.stderr)
        fsck = measure_fsck(target, data, work)
    return {"size": size, "database": kind, "seed_seconds": seeded, "blob_files": files,
            "blob_files_seconds": written, "concurrency": CONCURRENCY, "requests_per_path": n["requests"],
            "pushes_per_namespace": n["pushes"], **http, "mirror_eviction": eviction, "fsck": fsck,
            "server_log": str(server.log_path), "work_dir": str(work)}


def rounded(value: Any) -> Any:
    """One decimal for floats; NaN (no sample) as null, which JSON has."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 1 if abs(value) >= 1 else 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def table(result: dict[str, Any]) -> str:
    def row(name: str, figures: dict[str, Any]) -> str:
        p50, p99 = (f"{figures[q]:9.1f}" if figures[q] is not None else "        -" for q in ("p50", "p99"))
        return f"{name:<58}{p50}{p99}{figures['n']:7}"

    lines = [f"scale bench: {result['size']} on {result['database']}, {result['concurrency']} clients",
             f"{'path':<58}{'p50 ms':>9}{'p99 ms':>9}{'n':>7}"]
    lines += [row(name, figures) for name, figures in result["ms"].items()]
    lines += [row(f"{name}, while gc runs", figures) for name, figures in result["gc"]["ms_during"].items()]
    gc, ev, fsck = result["gc"], result["mirror_eviction"], result["fsck"]
    lines += [
        f"full gc: {gc['seconds']} s, server peak RSS {gc['peak_rss_mib']} MiB (before: {gc['rss_before_mib']} "
        f"MiB); deleted {gc['deleted']}",
        f"mirror eviction pass: {ev['seconds']} s for {ev['evicted_links']} of {ev['cached_links']} cached links, "
        f"peak RSS {ev['peak_rss_mib']} MiB",
        f"fsck --sample {fsck['sample']}: {fsck['seconds']} s for {fsck['checked']} blobs ({fsck['hashed']} "
        f"re-hashed), peak RSS {fsck['peak_rss_mib']} MiB, {fsck['problems']} problems",
        f"seed: {result['seed_seconds']} s; blob files: {result['blob_files_seconds']} s",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--requests", type=int, help="per read path (default: the size's)")
    parser.add_argument("--pushes", type=int, help="per namespace (default: the size's)")
    parser.add_argument("--work-dir", type=Path, help="for the data and the logs (default: a new temporary one)")
    parser.add_argument("--keep-data", action="store_true", help="keep the store and SQLite database afterwards")
    args = parser.parse_args()
    n = {**SIZES[args.size], **{k: v for k, v in (("requests", args.requests), ("pushes", args.pushes)) if v}}
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        result = rounded(run(args.size, args.database, work.resolve(), n))
    finally:
        if not args.keep_data:
            shutil.rmtree(work / "data", ignore_errors=True)  # the logs stay
    print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

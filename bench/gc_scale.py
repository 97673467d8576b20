"""Garbage collection at the size real registries reach: wall time and peak RSS of `registry gc`.

    .venv/bin/python bench/gc_scale.py --size small                      # a hundredth of full
    .venv/bin/python bench/gc_scale.py --size small --code /tmp/old-tree # the same, run by another source tree

PostgreSQL is seeded by bench/scale.py's `seed_sql` (rows only), then each run is the `registry gc` CLI
under /usr/bin/time -v, one process per run, so its peak RSS is the collector's alone. The runs:
- `default`: a dry run with the defaults (untagged manifests kept, one hour of grace): the whole graph is
  marked, nothing is planned;
- `untagged`: a dry run with `--gc-untagged-days 0 --gc-grace-period 0`: every untagged manifest, every
  link no surviving manifest needs and every blob left without a link is planned (the largest plan);
- `real` (with --real): the same settings, not a dry run: the sweep deletes the plan (run last).
Each `--code` tree (default: this one) runs every dry run in turn, `--repeat` times, interleaved.

With --latency, each tree then serves the database (`registry serve`) and 4 clients time manifest GETs by
digest, blob HEADs and the first tags page of the 100,000-tag repository, idle and then while the server
itself runs the `untagged` dry run (POST /admin/api/gc): p50, p99 and the slowest call, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.scale import SIZES, seed_sql  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.server import RegistryProcess  # noqa: E402

GC_SIZES = {**SIZES, "tenth": {**{k: v // 10 for k, v in SIZES["full"].items()}, "referrers": 1_000}}
RUNS = {"default": ["--dry-run"], "untagged": ["--dry-run", "--gc-untagged-days", "0", "--gc-grace-period", "0"]}
REAL = ["--gc-untagged-days", "0", "--gc-grace-period", "0"]
CLIENTS = 4


def timed_gc(code: Path, data: Path, env: dict[str, str], args: list[str]) -> dict[str, object]:
    """One `registry gc --json` process under /usr/bin/time -v: seconds, peak RSS (MiB), what it counted."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "registry", "gc", "--json", "--data-dir", str(data), *args]
    started = time.monotonic()
    # Run from the tree: `python -m` puts the working directory first on the path, before PYTHONPATH.
    proc = subprocess.run(command, env={**os.environ, **env, "PYTHONPATH": str(code)}, cwd=code, capture_output=True,
                          text=True, timeout=7200)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"gc failed: {proc.stderr[-3000:]}")
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))  # type: ignore[union-attr]
    report = json.loads(proc.stdout)
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(rss_kib / 1024, 1), "deleted": report["deleted"],
            "freed_bytes": report["freed_bytes"]}


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """`python -m registry` takes the package from the working directory first."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def figures(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"calls": len(ordered), "p50": round(ordered[len(ordered) // 2], 1),
            "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1), "max": round(ordered[-1], 1)}


async def during(url: str, paths: list[tuple[str, str, dict[str, str]]], gc: bool) -> dict[str, object]:
    """Time the paths round-robin from CLIENTS clients: 200 rounds idle, or for as long as a gc dry run
    that the server runs takes."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        started = time.monotonic()
        job = asyncio.ensure_future(client.post("/admin/api/gc", json={"dry_run": True})) if gc else None

        async def worker() -> None:
            rounds = 0
            while (job is not None and not job.done()) or (job is None and rounds < 200):
                for method, path, headers in paths:
                    sent = time.perf_counter()
                    response = await client.request(method, path, headers=headers)
                    latencies.append((time.perf_counter() - sent) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                rounds += 1

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        result: dict[str, object] = figures(latencies)
        if job is not None:
            report = (await job).json()
            result |= {"gc_seconds": round(time.monotonic() - started, 1), "gc_deleted": report["deleted"]}
    return result


def latency(tree: Path, pg: PostgresServer, data: Path, env: dict[str, str]) -> dict[str, object]:
    manifest = pg.psql("SELECT digest FROM manifests WHERE id = 1", database="registry")
    blob = pg.psql("SELECT digest FROM repository_blobs WHERE repository_id = 1 LIMIT 1", database="registry")
    paths = [("GET", f"/v2/big/repo/manifests/{manifest}", {"Accept": "application/vnd.oci.image.manifest.v1+json"}),
             ("HEAD", f"/v2/big/repo/blobs/{blob}", {}), ("GET", "/v2/big/repo/tags/list?n=100", {})]
    settings = {**env, "PYTHONPATH": str(tree), "REGISTRY_GC_UNTAGGED_DAYS": "0", "REGISTRY_GC_GRACE_PERIOD": "0"}
    with working_directory(tree), RegistryProcess(data, env=settings) as server:
        idle = asyncio.run(during(server.url, paths, gc=False))
        busy = asyncio.run(during(server.url, paths, gc=True))
    return {"idle": idle, "while gc runs": busy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(GC_SIZES), default="small")
    parser.add_argument("--code", action="append", type=Path, help="a source tree to run gc from (repeatable)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--real", action="store_true", help="end with a real gc by the last --code tree")
    parser.add_argument("--latency", action="store_true", help="time API calls idle and while the server runs gc")
    args = parser.parse_args()
    trees = args.code or [REPO_ROOT]
    work = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    results: dict[str, list[dict[str, object]]] = {}
    with PostgresServer(work) as pg:
        url = pg.create_database("registry")
        env = {"REGISTRY_DATABASE_URL": url}
        subprocess.run([sys.executable, "-m", "registry", "db", "upgrade", "--data-dir", str(work / "data")],
                       env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT, check=True,
                       capture_output=True)
        started = time.monotonic()
        for statement in seed_sql(GC_SIZES[args.size]):
            pg.psql(statement, database="registry", timeout=3600)
        print(f"seeded {args.size} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        for _ in range(args.repeat):
            for name, extra in RUNS.items():
                for tree in trees:
                    figures = timed_gc(tree, work / "data", env, extra)
                    results.setdefault(f"{name} {tree}", []).append(figures)
                    print(f"{name} by {tree}: {figures}", file=sys.stderr)
        if args.latency:
            for tree in trees:
                results[f"latency {tree}"] = [latency(tree, pg, work / "data", env)]
                print(f"latency by {tree}: {results[f'latency {tree}']}", file=sys.stderr)
        if args.real:
            figures = timed_gc(trees[-1], work / "data", env, REAL)
            results[f"real {trees[-1]}"] = [figures]
            print(f"real by {trees[-1]}: {figures}", file=sys.stderr)
    print(json.dumps({"size": args.size, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

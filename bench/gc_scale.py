"""Garbage collection at the size real registries reach, source tree against source tree: wall time, peak
RSS and how long it holds the event loop.

    .venv/bin/python bench/gc_scale.py --size small --code /tmp/before --code .            # PostgreSQL
    .venv/bin/python bench/gc_scale.py --size tenth --database sqlite --code /tmp/before --code .

The database is seeded by bench/scale_seed.py (rows only: gc's mark reads no bytes), at one of bench/scale.py's
sizes or `tenth` (a tenth of full), into a database the migrations of this tree made. Then, for each `--code`
tree in turn (`git archive REV | tar -x -C DIR` makes one), each a process of its own started from that tree:
- `default`: `registry gc --dry-run` with the defaults (untagged manifests kept, an hour of grace): the whole
  graph is marked, only the seed's unlinked blobs are planned; under /usr/bin/time -v;
- `untagged`: the same with `--gc-untagged-days 0 --gc-grace-period 0`: every untagged manifest, every link
  no surviving manifest needs and every blob left without one is planned (the largest plan);
- `stalls`: the `untagged` dry run inside a process as a server runs it, on its event loop, beside a task
  that sleeps 1 ms at a time and records how late it wakes (a late wake is a request that waited): the
  longest stall and the 99th percentile, in ms;
- with --real, last and by the last tree only: the `untagged` run for real (the sweep deletes the plan).
Prints one JSON document on stdout, and each run on stderr as it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from scale import SIZES  # noqa: E402
from scale_seed import Dialect, open_sqlite, seed_sql  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

GC_SIZES = {**SIZES, "tenth": {k: max(1, v // 10) for k, v in SIZES["full"].items()}}
UNTAGGED = ["--gc-untagged-days", "0", "--gc-grace-period", "0"]
RUNS = {"default": ["--dry-run"], "untagged": ["--dry-run", *UNTAGGED]}

STALLS = """
import asyncio, json, resource, sys, time
from pathlib import Path
from registry.gc.jobs import Maintenance, Settings
from registry.metadata.db import Database
from registry.storage.filesystem import FilesystemStore

async def main():
    db = Database(sys.argv[1])
    maintenance = Maintenance(db, FilesystemStore(Path(sys.argv[2])), Settings(grace_seconds=0.0, untagged_days=0.0))
    stalls, done = [], asyncio.Event()

    async def ticker():
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append((time.perf_counter() - before) * 1000 - 1)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)  # the ticker sleeps: a gc that holds the loop from its first step wakes it late
    started = time.perf_counter()
    report = await maintenance.gc(dry_run=True)
    seconds = time.perf_counter() - started
    done.set()
    await tick
    await db.close()
    stalls.sort()
    print(json.dumps({"seconds": round(seconds, 1), "longest_stall_ms": round(stalls[-1], 1),
                      "p99_stall_ms": round(stalls[int(0.99 * len(stalls))], 1), "ticks": len(stalls),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "deleted": report["deleted"]}))

asyncio.run(main())
"""


def in_tree(tree: Path, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run from the tree: `python -m` and `-c` put the working directory first on the path."""
    proc = subprocess.run(command, env={**os.environ, **env, "PYTHONPATH": str(tree)}, cwd=tree, capture_output=True,
                          text=True, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:6]} failed: {proc.stderr[-3000:]}")
    return proc


def timed_gc(tree: Path, data: Path, env: dict[str, str], args: list[str]) -> dict[str, Any]:
    """One `registry gc --json` under /usr/bin/time -v: seconds, peak RSS (MiB), what it counted."""
    started = time.monotonic()
    proc = in_tree(tree, ["/usr/bin/time", "-v", sys.executable, "-m", "registry", "gc", "--json", "--data-dir",
                          str(data), *args], env)
    seconds = time.monotonic() - started
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    assert peak is not None, proc.stderr[-1000:]
    report = json.loads(proc.stdout)
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(int(peak.group(1)) / 1024, 1),
            "deleted": report["deleted"], "freed_bytes": report["freed_bytes"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(GC_SIZES), default="small")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--code", action="append", type=Path, help="a source tree to run gc from (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the dry runs, trees interleaved")
    parser.add_argument("--real", action="store_true", help="end with a real gc by the last --code tree")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.code or [REPO_ROOT]]
    work = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    data = work / "data"
    results: dict[str, list[dict[str, Any]]] = {}
    pg = PostgresServer(work).start() if args.database == "postgres" else None
    try:
        url = pg.create_database("registry") if pg else f"sqlite+aiosqlite:///{data / 'registry.db'}"
        env = {"REGISTRY_DATABASE_URL": url} if pg else {}
        in_tree(REPO_ROOT, [sys.executable, "-m", "registry", "db", "upgrade", "--data-dir", str(data)], env)
        started = time.monotonic()
        statements = seed_sql(GC_SIZES[args.size], Dialect(sqlite=pg is None), time.time())
        if pg is not None:
            for statement in statements:
                pg.psql(statement, database="registry", timeout=7200)
        else:
            conn = open_sqlite(data / "registry.db")
            for statement in statements:
                conn.execute(statement)
            conn.close()
        print(f"seeded {args.size} ({args.database}) in {time.monotonic() - started:.0f} s", file=sys.stderr)
        for _ in range(args.repeat):
            for tree in trees:
                for name, extra in RUNS.items():
                    results.setdefault(f"{name} {tree}", []).append(timed_gc(tree, data, env, extra))
                proc = in_tree(tree, [sys.executable, "-c", STALLS, url, str(data)], env)
                results.setdefault(f"stalls {tree}", []).append(json.loads(proc.stdout))
                for name in (*RUNS, "stalls"):
                    print(f"{name} by {tree}: {results[f'{name} {tree}'][-1]}", file=sys.stderr)
        if args.real:
            results[f"real {trees[-1]}"] = [timed_gc(trees[-1], data, env, UNTAGGED)]
            print(f"real by {trees[-1]}: {results[f'real {trees[-1]}'][0]}", file=sys.stderr)
    finally:
        if pg is not None:
            pg.stop()
    print(json.dumps({"size": args.size, "database": args.database, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

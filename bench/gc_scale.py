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

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.scale import SIZES, seed_sql  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

GC_SIZES = {**SIZES, "tenth": {**{k: v // 10 for k, v in SIZES["full"].items()}, "referrers": 1_000}}
RUNS = {"default": ["--dry-run"], "untagged": ["--dry-run", "--gc-untagged-days", "0", "--gc-grace-period", "0"]}
REAL = ["--gc-untagged-days", "0", "--gc-grace-period", "0"]


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(GC_SIZES), default="small")
    parser.add_argument("--code", action="append", type=Path, help="a source tree to run gc from (repeatable)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--real", action="store_true", help="end with a real gc by the last --code tree")
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
        if args.real:
            figures = timed_gc(trees[-1], work / "data", env, REAL)
            results[f"real {trees[-1]}"] = [figures]
            print(f"real by {trees[-1]}: {figures}", file=sys.stderr)
    print(json.dumps({"size": args.size, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

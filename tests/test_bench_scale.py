"""bench/scale.py still runs: its smoke size on PostgreSQL and on SQLite, end to end (seed, reads, pushes with
and without a quota, gc with reads meanwhile, a mirror eviction pass, fsck). No timing is asserted: only that
every figure is there, that gc and eviction did the work seeded for them, that fsck found the seeded bytes
whole, and that no process logged a traceback."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.logcheck import assert_clean

ROOT = Path(__file__).resolve().parents[1]
READ_PATHS = ["catalog, first page", "catalog, deep page", "tags of big/repo, first page",
              "tags of big/repo, deep page", "manifest GET by tag", "manifest GET by digest", "blob HEAD",
              "referrers of one subject", "admin repository list, first page", "admin repository search"]
PUSH_STEPS = ["", ": upload start (POST)", ": upload finish (PUT)", ": manifest PUT"]
PUSHES = [f"small push, {label}{step}" for label in ("quota on", "no quota") for step in PUSH_STEPS]
DURING_GC = ["manifest GET by tag", "blob HEAD", "tags of big/repo, first page"]


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_the_scale_bench_runs_at_smoke_size(database: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "scale.py"), "--size", "smoke", "--database",
                             database, "--work-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-6000:]
    report = json.loads(result.stdout)

    for name in READ_PATHS + PUSHES:
        figures = report["ms"][name]
        assert is_number(figures["p50"]) and is_number(figures["p99"]) and figures["n"] > 0, (name, figures)
    gc = report["gc"]
    for name in DURING_GC:
        figures = gc["ms_during"][name]
        assert is_number(figures["p50"]) and is_number(figures["p99"]) and figures["n"] > 0, (name, figures)
    assert is_number(gc["seconds"]) and gc["peak_rss_mib"] > 0
    assert {k: gc["deleted"][k] for k in gc["seeded_garbage"]} == gc["seeded_garbage"]

    eviction, fsck = report["mirror_eviction"], report["fsck"]
    assert is_number(eviction["seconds"]) and eviction["peak_rss_mib"] > 0
    assert eviction["evicted_links"] == eviction["deleted_blobs"] == 10
    assert is_number(fsck["seconds"]) and fsck["peak_rss_mib"] > 0
    assert fsck["checked"] > 0 and fsck["problems"] == 0, fsck

    assert_clean(Path(report["server_log"]).read_text(errors="replace"), "the bench's registry log")
    for job in ("evict", "fsck"):
        assert_clean((tmp_path / f"{job}.err").read_text(errors="replace"), f"{job}.err")

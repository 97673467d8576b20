"""Shared metric files for `--workers N` (prometheus_client's multi-process mode).

Kept apart from registry/admin/metrics.py on purpose: prometheus_client picks its value storage
when it is first imported, so the directory must be in the environment before that import,
that is before the supervisor forks its workers.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics(data_dir: Path) -> Path:
    """Point every worker at one fresh directory (old files would add a previous run's counts)."""
    directory = Path(os.environ.get(ENV) or Path(data_dir) / "metrics")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # only prometheus_client's own files
        stale.unlink()
    os.environ[ENV] = str(directory)
    return directory


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges; its counters stay counted, as Prometheus expects."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)

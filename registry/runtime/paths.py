"""Where the runtime keeps its state: REGISTRY_RUNTIME_ROOT, by default /var/lib/registry-runtime."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ROOT = "/var/lib/registry-runtime"


def runtime_root() -> Path:
    return Path(os.environ.get("REGISTRY_RUNTIME_ROOT") or DEFAULT_ROOT)


def containers_dir() -> Path:
    return runtime_root() / "containers"


def cgroup_parent() -> str:
    """The cgroup (relative to each hierarchy's root) under which containers get theirs."""
    return os.environ.get("REGISTRY_RUNTIME_CGROUP", "registry-runtime").strip("/")

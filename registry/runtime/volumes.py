"""Anonymous volumes: a directory of the runtime's for `-v /path` and for each `Volumes` entry of an
image's config, as Docker makes them.

Each lives in `ROOT/volumes/ID/_data` with an `owner` file naming the container that made it. A new
one starts with what the image holds at its path (owners and modes kept), as Docker fills it. It
outlives `rm` unless `rm -v` (or `--rm`) removes it with its container, as in Docker.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from registry.runtime.paths import runtime_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from registry.runtime.state import State


def volumes_dir() -> Path:
    return runtime_root() / "volumes"


def create() -> Path:
    """A new empty anonymous volume; its data directory (what gets bind-mounted)."""
    volume = volumes_dir() / os.urandom(32).hex()
    (volume / "_data").mkdir(parents=True)
    return volume / "_data"


def is_anonymous(data: str) -> bool:
    path = Path(data)
    return path.name == "_data" and path.parent.parent == volumes_dir()


def claim(data: str, container_id: str) -> None:
    (Path(data).parent / "owner").write_text(container_id)


def owned_by(container_id: str) -> list[Path]:
    found = []
    for volume in volumes_dir().glob("*/owner") if volumes_dir().is_dir() else []:
        try:
            if volume.read_text().strip() == container_id:
                found.append(volume.parent)
        except OSError:
            continue
    return found


def remove_for(container_id: str) -> list[str]:
    """Remove the anonymous volumes a container made; their ids."""
    removed = []
    for volume in owned_by(container_id):
        shutil.rmtree(volume, ignore_errors=True)
        removed.append(volume.name)
    return removed


def remove_auto_removed(state: "State") -> None:
    """A --rm container's end: its directory and, as docker run --rm, its anonymous volumes."""
    from registry.runtime.state import remove_dir

    remove_dir(state)
    remove_for(state.id)

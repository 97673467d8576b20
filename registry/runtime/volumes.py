"""Anonymous volumes: a directory of the runtime's for `-v /path` and for each `Volumes` entry of an
image's config, as Docker makes them.

Each lives in `ROOT/volumes/ID/_data` with an `owner` file naming the container that made it. A new
one starts with what the image holds at its path (owners and modes kept), as Docker fills it. It
outlives `rm` unless `rm -v` (or `--rm`) removes it with its container, as in Docker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from registry.runtime.paths import runtime_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from registry.runtime.state import Spec, State
    from registry.runtime.store import ImageRecord


def volumes_dir() -> Path:
    return runtime_root() / "volumes"


def create() -> Path:
    """A new empty anonymous volume; its data directory (what gets bind-mounted)."""
    volume = volumes_dir() / os.urandom(32).hex()
    (volume / "_data").mkdir(parents=True)
    return volume / "_data"


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


def remove_auto_removed(state: State) -> None:
    """A --rm container's end: its directory and, as docker run --rm, its anonymous volumes."""
    from registry.runtime.state import remove_dir

    remove_dir(state)
    remove_for(state.id)


def create_with_volumes(spec: Spec, image: ImageRecord, name: str | None) -> State:
    """Create the container with a new volume for each `-v /CTR` and each path the image declares in
    `Volumes` (unless something is mounted there already), filled from the image as Docker does."""
    from registry.runtime import lifecycle

    declared = sorted((image.config.get("config") or {}).get("Volumes") or {})
    taken = {container.rstrip("/") or "/" for host, container, _ in spec.volumes if host}
    wanted = [c for h, c, _ in spec.volumes if not h] + [p for p in declared if p.rstrip("/") not in taken]
    spec.volumes = [v for v in spec.volumes if v[0]]
    made: dict[str, str] = {}
    for container in wanted:
        if container.rstrip("/") not in made:
            made[container.rstrip("/")] = str(create())
    spec.volumes += [(data, path, False) for path, data in made.items()]
    try:
        state = lifecycle.create(spec, name)
    except BaseException:
        for data in made.values():
            shutil.rmtree(os.path.dirname(data), ignore_errors=True)
        raise
    if made:
        from registry.runtime.copy import CopyError, copy_out  # tarfile and tempfile: only for volumes to fill
    for path, data in made.items():
        claim(data, state.id)
        os.rmdir(data)  # the image's directory (owner and mode too) becomes the volume, as Docker fills it
        try:
            copy_out(state, path, data, follow=True, archive=True)  # a symlink resolved inside the container
        except CopyError:
            pass  # nothing at that path in the image: the volume starts empty
        if os.path.islink(data) or not os.path.exists(data):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(data)
            os.mkdir(data)
    return state

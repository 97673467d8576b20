"""Anonymous volumes as Docker makes them: `-v /CTR` and the image config's `Volumes`, each a new
directory of the runtime's, filled from the image (owners and modes kept, a symlink resolved inside
the container), kept by `rm` and removed by `rm -v`."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pytest

from tests.runtime import images as im
from tests.runtime.conftest import Runtime


@pytest.fixture(scope="module")
def volume_image(runtime: Runtime) -> str:
    entries = im.busybox_entries() + [
        im.directory("srv"), im.directory("srv/data", mode=0o750, uid=1000, gid=1000),
        im.file("srv/data/seed", "from the image\n", uid=1000, gid=1000),
        im.directory("srv/real"), im.file("srv/real/marker", "inside\n"), im.symlink("srv/link", "/srv/real"),
    ]
    image = im.push(runtime.registry.url, f"rt-{uuid.uuid4().hex[:8]}/volumes", "v1", [im.layer(entries)],
                    {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "Volumes": {"/srv/data": {}, "/srv/link": {}}})
    runtime.cli("pull", image.reference)
    return image.reference


def _volumes(runtime: Runtime, name: str) -> dict[str, str]:
    spec = json.loads(runtime.cli("inspect", name).stdout)[0]["spec"]
    return {container: host for host, container, _ in spec["volumes"]}


def test_image_volumes_are_filled_from_the_image(runtime: Runtime, volume_image: str) -> None:
    runtime.cli("create", "--name", "vol-a", volume_image, "sh", "-c",
                "stat -c '%u %g %a' /srv/data /srv/data/seed; cat /srv/data/seed /srv/link/marker; "
                "echo mine > /srv/data/new")
    try:
        mounts = _volumes(runtime, "vol-a")
        data, link = Path(mounts["/srv/data"]), Path(mounts["/srv/link"])
        assert data.parent.parent == runtime.root / "volumes" and data.name == "_data"
        assert (data / "seed").read_text() == "from the image\n"
        assert not link.is_symlink() and (link / "marker").read_text() == "inside\n", \
            "a symlink in the image is followed inside the container, never on the host"
        runtime.cli("start", "vol-a")
        assert runtime.cli("wait", "vol-a").stdout == "0\n"
        assert runtime.cli("logs", "vol-a").stdout == "1000 1000 750\n1000 1000 644\nfrom the image\ninside\n"
        assert (data / "new").read_text() == "mine\n"
    finally:
        runtime.cli("rm", "-f", "-v", "vol-a", check=False)
    assert not data.parent.exists() and not link.parent.exists(), "rm -v removes the anonymous volumes"


def test_dash_v_path_makes_a_volume_that_rm_keeps_and_rm_v_removes(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "--name", "vol-b", "-v", "/cache", pulled_base, "sh", "-c", "echo kept > /cache/f")
    data = Path(_volumes(runtime, "vol-b")["/cache"])
    runtime.cli("rm", "vol-b")
    assert (data / "f").read_text() == "kept\n", "rm without -v keeps anonymous volumes, as docker"
    runtime.cli("run", "--name", "vol-c", "-v", "/cache", pulled_base, "true")
    other = Path(_volumes(runtime, "vol-c")["/cache"])
    assert other != data and not any(other.iterdir()), "each container gets a new, empty one"
    runtime.cli("rm", "-v", "vol-c")
    assert not other.parent.exists()
    shutil.rmtree(data.parent)  # the volume rm kept, made by this test


def test_a_mount_at_a_declared_path_replaces_the_volume(runtime: Runtime, volume_image: str, tmp_path: Path) -> None:
    (tmp_path / "mine").write_text("host\n")
    out = runtime.cli("run", "--name", "vol-d", "-v", f"{tmp_path}:/srv/data", volume_image, "cat", "/srv/data/mine")
    try:
        assert out.stdout == "host\n"
        mounts = _volumes(runtime, "vol-d")
        assert mounts["/srv/data"] == str(tmp_path) and set(mounts) == {"/srv/data", "/srv/link"}
    finally:
        runtime.cli("rm", "-v", "vol-d", check=False)


def test_bad_volume_arguments(runtime: Runtime, pulled_base: str) -> None:
    for bad in ("relative", "/a:/b:rx", "/a:b", ""):
        refused = runtime.cli("run", "--rm", "-v", bad, pulled_base, "true", check=False)
        assert refused.returncode == 2 and "invalid volume" in refused.stderr, bad


def test_run_rm_removes_its_anonymous_volumes(runtime: Runtime, pulled_base: str) -> None:
    """docker run --rm: the container and its anonymous volumes go when it ends (foreground and -d)."""
    volumes = runtime.root / "volumes"
    before = set(volumes.iterdir()) if volumes.is_dir() else set()
    runtime.cli("run", "--rm", "-v", "/scratch", pulled_base, "sh", "-c", "echo x > /scratch/f")
    runtime.cli("run", "-d", "--rm", "--name", "vol-rm", "-v", "/scratch", pulled_base, "true")
    deadline = time.monotonic() + 15
    while "vol-rm" in runtime.cli("ps", "-a").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "vol-rm" not in runtime.cli("ps", "-a").stdout
    assert (set(volumes.iterdir()) if volumes.is_dir() else set()) == before

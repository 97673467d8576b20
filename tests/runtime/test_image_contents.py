"""Acceptance 1: an image of gzip, zstd and plain layers (whiteouts, opaque dirs, hardlinks within and across
layers, setuid bits, owners, absolute symlinks) is pushed, pulled and run; the container sees what the layers say."""

from __future__ import annotations

import uuid

import pytest

from tests.runtime import images as im
from tests.runtime.conftest import Runtime


def layers() -> list[im.Layer]:
    bottom = im.busybox_entries() + [
        im.directory("data"), im.directory("data/old"), im.file("data/old/a.txt", "old a\n"),
        im.file("data/keep.txt", "keep v1\n"), im.file("data/gone.txt", "gone\n"),
        im.directory("opaque"), im.file("opaque/x.txt", "x\n"), im.directory("opaque/sub"),
        im.file("opaque/sub/y.txt", "y\n"),
        im.directory("hl"), im.file("hl/orig.txt", "linked across layers\n", 0o640, 1000, 1000),
        im.symlink("abs-passwd", "/etc/passwd"),
        im.directory("usr"), im.directory("usr/bin"),
    ]
    middle = [  # zstd
        im.directory("data"), im.file("data/.wh.old", ""), im.file("data/.wh.gone.txt", ""),
        im.directory("opaque"), im.file("opaque/.wh..wh..opq", ""), im.file("opaque/z.txt", "z\n"),
        im.directory("hl"), im.hardlink("hl/cross.txt", "hl/orig.txt"),
        im.directory("usr/bin"), im.file("usr/bin/suid", "#!/bin/sh\n", 0o4755, 0, 0),
        im.file("usr/bin/sgid-app", "#!/bin/sh\n", 0o6750, 1000, 2000),
        im.symlink("usr/bin/abs-busybox", "/bin/busybox"),
    ]
    top = [  # plain
        im.directory("data"), im.file("data/keep.txt", "keep v3\n"),
        im.file("data/new.txt", "new\n"), im.hardlink("data/new-link.txt", "data/new.txt"),
        im.directory("owned", 0o750, 1000, 1000),
    ]
    return [im.layer(bottom, "gzip"), im.layer(middle, "zstd"), im.layer(top, "plain")]


SCRIPT = r"""
cd /
for p in data/old data/old/a.txt data/gone.txt opaque/x.txt opaque/sub opaque/z.txt data/keep.txt data/new.txt; do
  if [ -e "$p" ]; then echo "exists $p"; else echo "missing $p"; fi
done
echo "keep=$(cat data/keep.txt)"
echo "cross=$(cat hl/cross.txt)"
echo "cross-owner=$(stat -c '%u:%g:%a' hl/cross.txt)"
echo "inner-inodes=$(stat -c %i data/new.txt) $(stat -c %i data/new-link.txt)"
echo "suid=$(stat -c '%a:%u:%g' usr/bin/suid)"
echo "sgid=$(stat -c '%a:%u:%g' usr/bin/sgid-app)"
echo "owned=$(stat -c '%a:%u:%g' owned)"
echo "abs=$(readlink abs-passwd) $(head -1 abs-passwd)"
echo "absbin=$(readlink usr/bin/abs-busybox)"
echo "whiteout-devices=$(find / -xdev -type c 2>/dev/null | grep -v '^/dev' | wc -l)"
"""


@pytest.fixture(scope="module")
def layered(runtime: Runtime) -> im.Image:
    return im.push(runtime.registry.url, f"rt-{uuid.uuid4().hex[:8]}/layered", "v1", layers(),
                   {"Cmd": ["/bin/sh", "-c", SCRIPT], "Env": ["PATH=/bin"]})


def test_pull_reports_each_layer_and_stores_it_once(runtime: Runtime, layered: im.Image) -> None:
    first = runtime.cli("pull", layered.reference)
    assert first.stdout.strip() == f"{layered.reference}@{layered.digest}"
    assert first.stderr.count(": done") == 3, first.stderr
    again = runtime.cli("pull", layered.reference)
    assert again.stderr.count(": exists") == 3 and ": done" not in again.stderr, again.stderr
    for lay in layered.layers:
        assert (runtime.root / "layers" / lay.diff_id.split(":")[1]).is_dir()
        assert (runtime.root / "l" / lay.diff_id.split(":")[1][:12]).is_symlink()
    assert not list((runtime.root / "tmp").iterdir()), "downloads must not stay around"


def test_files_seen_inside_match_the_layers(runtime: Runtime, layered: im.Image) -> None:
    result = runtime.cli("run", "--rm", layered.reference)
    facts = result.stdout.splitlines()
    for missing in ("data/old", "data/old/a.txt", "data/gone.txt", "opaque/x.txt", "opaque/sub"):
        assert f"missing {missing}" in facts, result.stdout
    for present in ("opaque/z.txt", "data/keep.txt", "data/new.txt"):
        assert f"exists {present}" in facts, result.stdout
    assert "keep=keep v3" in facts
    assert "cross=linked across layers" in facts
    assert "cross-owner=1000:1000:640" in facts
    inodes = next(f for f in facts if f.startswith("inner-inodes=")).split("=")[1].split()
    assert inodes[0] == inodes[1], "a hardlink within a layer is one inode"
    assert "suid=4755:0:0" in facts
    assert "sgid=6750:1000:2000" in facts
    assert "owned=750:1000:1000" in facts
    assert "abs=/etc/passwd root:x:0:0:root:/root:/bin/sh" in facts
    assert "absbin=/bin/busybox" in facts
    assert "whiteout-devices=0" in facts, "overlay whiteouts must not show as files"


def test_layer_not_matching_its_diff_id_is_refused(runtime: Runtime) -> None:
    good = im.layer([im.file("a.txt", "a\n")])
    lying = im.Layer(good.blob, "sha256:" + "0" * 64, good.media_type)
    image = im.push(runtime.registry.url, f"rt-{uuid.uuid4().hex[:8]}/lying", "v1", [lying], {"Cmd": ["x"]})
    result = runtime.cli("pull", image.reference, check=False)
    assert result.returncode != 0
    assert "diff_id" in result.stderr
    assert not (runtime.root / "layers" / ("0" * 64)).exists()


def test_more_than_a_hundred_layers(runtime: Runtime) -> None:
    """The overlay option string stays under a page (short layer links), so no layer is silently dropped."""
    many = [im.layer(im.busybox_entries())] + [
        im.layer([im.directory("many"), im.file(f"many/f{i:03}", f"{i}\n")], ("gzip", "zstd", "plain")[i % 3])
        for i in range(120)]
    image = im.push(runtime.registry.url, f"rt-{uuid.uuid4().hex[:8]}/many", "v1", many, {"Cmd": ["sh"]})
    out = runtime.cli("run", "--rm", image.reference, "sh", "-c", "ls /many | wc -l; cat /many/f000 /many/f119",
                      timeout=300).stdout
    assert out.split() == ["120", "0", "119"]


def test_pull_picks_this_platform_from_an_index(runtime: Runtime) -> None:
    import httpx
    import json as _json

    from tests.support.host import oci_arch

    ours = oci_arch()
    other = "arm64" if ours != "arm64" else "amd64"
    name = f"rt-{uuid.uuid4().hex[:8]}/multi"
    native = im.push(runtime.registry.url, name, ours, [im.layer(im.busybox_entries() + [im.file("arch", f"{ours}\n")])],
                     {"Cmd": ["cat", "/arch"]})
    foreign = im.push(runtime.registry.url, name, other, [im.layer([im.file("arch", f"{other}\n")])],
                      {"Cmd": ["cat", "/arch"]}, architecture=other)
    with httpx.Client(base_url=runtime.registry.url) as http:
        sizes = {d: len(http.get(f"/v2/{name}/manifests/{d}", headers={"Accept": im.OCI_MANIFEST}).content)
                 for d in (native.digest, foreign.digest)}
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"mediaType": im.OCI_MANIFEST, "digest": foreign.digest, "size": sizes[foreign.digest],
             "platform": {"architecture": other, "os": "linux"}},
            {"mediaType": im.OCI_MANIFEST, "digest": native.digest, "size": sizes[native.digest],
             "platform": {"architecture": ours, "os": "linux"}}]}
        resp = http.put(f"/v2/{name}/manifests/multi", content=_json.dumps(index).encode(),
                        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
        assert resp.status_code == 201, resp.text
    reference = f"{runtime.registry.host}/{name}:multi"
    pulled = runtime.cli("pull", reference).stdout.strip()
    assert pulled.endswith(native.digest)
    assert runtime.cli("run", "--rm", reference).stdout == f"{ours}\n"


def test_docker_hub_names_go_to_the_configured_mirror(runtime: Runtime) -> None:
    """REGISTRY_MIRRORS plays dockerd's registry-mirrors: `NAME:TAG` is asked of the mirror as library/NAME."""
    import subprocess
    import sys

    short = f"rt-mirror-{uuid.uuid4().hex[:8]}"
    im.push(runtime.registry.url, f"library/{short}", "v1", [im.layer(im.busybox_entries())], {"Cmd": ["true"]})
    env = {**runtime.env, "REGISTRY_MIRRORS": runtime.registry.url}
    result = subprocess.run([sys.executable, "-m", "registry", "pull", f"{short}:v1"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"docker.io/library/{short}:v1@sha256:")
    assert runtime.cli("run", "--rm", "--pull", "never", f"{short}:v1").returncode == 0


def test_an_image_without_layers_runs_with_a_volume(runtime: Runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    tools = tmp_path / "tools"
    tools.mkdir()
    shutil.copy(im.BUSYBOX, tools / "busybox")
    image = im.push(runtime.registry.url, f"rt-{uuid.uuid4().hex[:8]}/empty", "v1", [], {"Cmd": ["/t/busybox", "true"]})
    runtime.cli("run", "--rm", "-v", f"{tools}:/t:ro", image.reference)

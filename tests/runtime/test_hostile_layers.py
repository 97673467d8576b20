"""Acceptance 6: a hostile layer cannot write outside its layer directory: `..` names, writes through a symlink
(absolute or relative), hardlinks out of the layer, device nodes, a file replacing a symlink to a host file."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path
from collections.abc import Iterator

import pytest

from registry.runtime.unpack import LayerError, unpack_layer
from tests.runtime import images as im
from tests.runtime.conftest import Runtime

CLIMB = "../" * 30


@pytest.fixture
def outside() -> Iterator[Path]:
    """A host directory a hostile layer aims at; it must stay as it is."""
    target = Path("/tmp") / f"rt-hostile-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    (target / "victim").write_text("original\n")
    yield target
    for child in target.iterdir():
        child.unlink()
    target.rmdir()


def unpack(tmp_path: Path, entries: list[im.Entry]) -> tuple[Path, list[str]]:
    lay = im.layer(entries, "plain")
    blob = tmp_path / "blob.tar"
    blob.write_bytes(lay.blob)
    dest = tmp_path / "layer"
    return dest, unpack_layer(blob, dest, lay.diff_id)


def assert_untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "original\n"


HOSTILE = {
    "dotdot": lambda o: [im.file(f"{CLIMB}{str(o)[1:]}/escaped", "x")],
    "dotdot-inside": lambda o: [im.directory("a"), im.file(f"a/../../{o.name}/escaped", "x")],
    "absolute-symlink-then-file": lambda o: [im.symlink("evil", str(o)), im.file("evil/escaped", "x")],
    "relative-symlink-then-file": lambda o: [im.symlink("evil", f"{CLIMB}{str(o)[1:]}"), im.file("evil/escaped", "x")],
    "symlink-then-dir": lambda o: [im.symlink("evil", str(o)), im.directory("evil/sub")],
    "nested-symlink": lambda o: [im.directory("d"), im.symlink("d/evil", str(o)), im.file("d/evil/escaped", "x")],
    "hardlink-out": lambda o: [im.hardlink("stolen", f"{CLIMB}{str(o)[1:]}/victim")],
    "hardlink-through-symlink": lambda o: [im.symlink("evil", str(o)), im.hardlink("stolen", "evil/victim")],
    "whiteout-through-symlink": lambda o: [im.symlink("evil", str(o)), im.file("evil/.wh.victim", "")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_unpack_refuses_the_layer(case: str, tmp_path: Path, outside: Path) -> None:
    with pytest.raises(LayerError):
        unpack(tmp_path, HOSTILE[case](outside))
    assert_untouched(outside)
    assert not (tmp_path / "layer").exists(), "nothing of a refused layer is kept"


def test_a_file_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path, outside: Path) -> None:
    dest, _ = unpack(tmp_path, [im.symlink("link", str(outside / "victim")), im.file("link", "layer's own\n")])
    assert_untouched(outside)
    assert not (dest / "link").is_symlink() and (dest / "link").read_text() == "layer's own\n"


def test_device_nodes_are_not_created(tmp_path: Path) -> None:
    dest, skipped = unpack(tmp_path, [im.directory("dev"), im.device("dev/sda", "blk", 8, 0),
                                      im.device("dev/mem", "chr", 1, 1), im.file("ok.txt", "fine\n")])
    assert sorted(skipped) == ["dev/mem", "dev/sda"]
    assert os.listdir(dest / "dev") == []
    for root, dirs, files in os.walk(dest):
        for name in files + dirs:
            mode = os.lstat(os.path.join(root, name)).st_mode
            assert not (stat.S_ISBLK(mode) or stat.S_ISCHR(mode))
    assert (dest / "ok.txt").read_text() == "fine\n"


def test_pull_of_a_hostile_image_fails_cleanly(runtime: Runtime, outside: Path) -> None:
    layers = [im.layer(im.busybox_entries()),
              im.layer([im.symlink("evil", str(outside)), im.file("evil/escaped", "x")], "zstd")]
    image = im.push(runtime.registry.url, f"rt-{uuid.uuid4().hex[:8]}/hostile", "v1", layers, {"Cmd": ["sh"]})
    result = runtime.cli("pull", image.reference, check=False)
    assert result.returncode != 0 and "symlink" in result.stderr, result.stderr
    assert_untouched(outside)
    assert not (runtime.root / "layers" / layers[1].diff_id.split(":")[1]).exists()
    assert not list((runtime.root / "tmp").iterdir())
    assert runtime.cli("run", "--rm", "--pull", "never", image.reference, "true", check=False).returncode == 125


def test_device_nodes_in_an_image_do_not_reach_the_container(runtime: Runtime) -> None:
    layers = [im.layer(im.busybox_entries() + [im.directory("devs"), im.device("devs/sda", "blk", 8, 0),
                                                im.device("devs/mem", "chr", 1, 1)])]
    image = im.push(runtime.registry.url, f"rt-{uuid.uuid4().hex[:8]}/devices", "v1", layers, {"Cmd": ["sh"]})
    out = runtime.cli("run", "--rm", image.reference, "ls", "-A", "/devs").stdout
    assert out.strip() == ""

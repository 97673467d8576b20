"""`registry import` and `registry export` with real parts (issue 22): Debian's docker-registry (CNCF
Distribution 2.8) filled by `docker push` and `skopeo copy --all`, stopped, and its storage root imported
by the `registry import` command into a running registry; then docker and skopeo read every tag back.

Acceptance: the digests are the source's, byte for byte, and pulled layers verify; a second import
changes nothing (rows and events); a corrupt layer is skipped with what needs it (exit status 1); an
export is read back by skopeo and imported again; bad inputs are one line or a reported skip.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.images import CommandFailed, OciLayout, read_oci_layout, run
from tests.support.mirror import DistributionProcess
from tests.support.server import RegistryProcess

pytestmark = pytest.mark.e2e

USER, PASSWORD = "mover", "moving-day"
APP = "team/app"               # docker push: tags one (app1) and two (app2)
MULTI = "team/sub/multi"       # skopeo copy --all: an index over two platforms, tag multi
NO_TLS = "--tls-verify=false"


def registry_cli(*args: object, check_status: int | None = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "registry", *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    if check_status is not None:
        assert result.returncode == check_status, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def import_json(*args: object, status: int = 0) -> dict:
    return json.loads(registry_cli("import", *args, "--json", check_status=status).stdout)


@dataclass
class Filled:
    root: Path                  # the stopped docker-registry's storage root
    raw: dict[str, bytes]       # "repo:tag" -> the manifest's bytes as docker-registry served them
    app2_layer: str             # the layer only team/app:two has


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, docker_images, skopeo, oci_index: OciLayout) -> Filled:
    root = tmp_path_factory.mktemp("distribution")
    server = DistributionProcess(root, {USER: PASSWORD}).start()
    config = root / "docker-config"  # docker's credentials for it, not the host's
    try:
        run(["docker", "--config", config, "login", "-u", USER, "--password-stdin", server.host], check=False)
        login = subprocess.run(["docker", "--config", str(config), "login", "-u", USER, "--password-stdin",
                                server.host], input=PASSWORD, capture_output=True, text=True, timeout=60)
        assert login.returncode == 0, login.stderr
        for image, tag in ((docker_images.app1, "one"), (docker_images.app2, "two")):
            ref = f"{server.host}/{APP}:{tag}"
            run(["docker", "tag", image.id, ref])
            run(["docker", "--config", config, "push", ref], timeout=300)
            run(["docker", "image", "rm", ref])
        skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds",
               f"{USER}:{PASSWORD}", oci_index.ref("multi"), f"docker://{server.host}/{MULTI}:multi")
        raw = {}
        for ref in (f"{APP}:one", f"{APP}:two", f"{MULTI}:multi"):
            raw[ref] = skopeo("inspect", NO_TLS, "--raw", "--creds", f"{USER}:{PASSWORD}",
                              f"docker://{server.host}/{ref}", text=False).stdout
    except CommandFailed as exc:
        raise AssertionError(f"{exc}\n--- docker-registry log\n{server.log_tail()}") from None
    finally:
        server.stop()
    one, two = (json.loads(raw[f"{APP}:{tag}"]) for tag in ("one", "two"))
    only_two = {layer["digest"] for layer in two["layers"]} - {layer["digest"] for layer in one["layers"]}
    assert len(only_two) == 1, "app2 adds one layer of its own to the shared base"
    return Filled(root / "storage", raw, only_two.pop())


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    with RegistryProcess(tmp_path_factory.mktemp("import-target") / "data") as server:
        yield server


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under `root`: size, modification time and inode (an import must change none)."""
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns, path.stat().st_ino)
            for path in root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def imported(filled: Filled, target: RegistryProcess) -> dict:
    """The first import, with the server running; the source is left as it was."""
    before = snapshot(filled.root)
    report = import_json(filled.root, "--data-dir", target.data_dir)
    assert snapshot(filled.root) == before
    return report


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def db_counts(data_dir: Path) -> dict[str, int]:
    """Rows of what an import writes, and events. Pulls are events too, noted by the server and written
    within a second (registry/events/journal.py): waited for, so the earlier tests' pulls are in."""
    time.sleep(2.5)
    with sqlite3.connect(f"file:{data_dir / 'registry.db'}?mode=ro", uri=True) as conn:
        counts = {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
                  for table in ("manifests", "tags", "repository_blobs", "events")}
        counts["push events"] = conn.execute("SELECT count(*) FROM events WHERE action = 'push'").fetchone()[0]
    return counts


def verify_layout(layout: OciLayout) -> None:
    """Every blob file of a layout skopeo wrote hashes to its name."""
    for name, data in layout.blobs.items():
        assert digest(data) == name, f"{name} does not verify"


def test_import_from_docker_registry_then_docker_and_skopeo_read_every_tag(
        filled: Filled, target: RegistryProcess, imported: dict, skopeo, tmp_path: Path) -> None:
    assert imported["skipped"] == [], imported["skipped"]
    assert imported["tags"] == {"imported": 3, "present": 0, "skipped": 0}
    assert imported["repositories"]["imported"] == 2
    for ref, source in filled.raw.items():
        ours = skopeo("inspect", NO_TLS, "--raw", f"docker://{target.host}/{ref}", text=False).stdout
        assert ours == source, f"{ref}: the manifest's bytes changed"
        out = tmp_path / ref.replace("/", "_").replace(":", "_")
        skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", f"docker://{target.host}/{ref}",
               f"oci:{out}:{ref.rsplit(':', 1)[1]}")
        layout = read_oci_layout(out)
        verify_layout(layout)
        tag = ref.rsplit(":", 1)[1]
        assert layout.refs[tag].digest == digest(source)
    # Same filesystem: the layers were hard-linked, not copied.
    hexdigest = filled.app2_layer.split(":")[1]
    source = filled.root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"
    stored = target.data_dir / "blobs" / "sha256" / hexdigest[:2] / hexdigest
    assert stored.samefile(source)
    for tag in ("one", "two"):
        ref = f"{target.host}/{APP}:{tag}"
        pulled = run(["docker", "pull", ref], timeout=300).stdout
        assert f"Digest: {digest(filled.raw[f'{APP}:{tag}'])}" in pulled, pulled
        run(["docker", "image", "rm", ref])


def test_a_second_import_finds_everything_present_and_changes_nothing(filled: Filled, target: RegistryProcess,
                                                                      imported: dict) -> None:
    before = db_counts(target.data_dir)
    again = import_json(filled.root, "--data-dir", target.data_dir)
    assert again["skipped"] == []
    for kind in ("repositories", "tags", "manifests", "blobs"):
        assert again[kind]["imported"] == 0 and again[kind]["present"] == imported[kind]["imported"], kind
    assert again["bytes"]["present"] == imported["bytes"]["imported"] and again["bytes"]["imported"] == 0
    assert db_counts(target.data_dir) == before
    text = registry_cli("import", filled.root, "--data-dir", target.data_dir).stdout
    assert "nothing skipped" in text and "0 imported" in text


def test_a_corrupt_layer_is_skipped_with_what_needs_it(filled: Filled, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(filled.root, copy, symlinks=True)
    hexdigest = filled.app2_layer.split(":")[1]
    data = copy / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"
    data.write_bytes(b"\x1f\x8b not the layer any more")
    report = import_json(copy, "--data-dir", tmp_path / "data", status=1)  # no server: it need not run
    reasons = {(s["type"], s["repository"], s["name"]): s["reason"] for s in report["skipped"]}
    two = digest(filled.raw[f"{APP}:two"])
    assert reasons.pop(("blob", APP, filled.app2_layer)).startswith("corrupt")
    assert filled.app2_layer in reasons.pop(("manifest", APP, two))
    assert two in reasons.pop(("tag", APP, "two"))
    assert reasons == {}
    assert report["tags"] == {"imported": 2, "present": 0, "skipped": 1}
    text = registry_cli("import", copy, "--data-dir", tmp_path / "data", check_status=1).stdout
    assert "corrupt" in text and "2 already present" in text


def test_export_is_read_back_by_skopeo_and_imported_again(filled: Filled, target: RegistryProcess, imported: dict,
                                                          skopeo, tmp_path: Path) -> None:
    out = tmp_path / "layout"
    result = json.loads(registry_cli("export", APP, out, "--data-dir", target.data_dir, "--json").stdout)
    assert sorted(result["tags"]) == ["one", "two"] and result["problems"] == []
    for tag in ("one", "two"):
        raw = skopeo("inspect", "--raw", f"oci:{out}:{tag}", text=False).stdout
        assert raw == filled.raw[f"{APP}:{tag}"]
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{out}:one",
           f"docker://{target.host}/exported/app:one")
    copied = skopeo("inspect", NO_TLS, "--raw", f"docker://{target.host}/exported/app:one", text=False).stdout
    assert copied == filled.raw[f"{APP}:one"]

    multi = tmp_path / "multi"
    registry_cli("export", f"{MULTI}:multi", multi, "--data-dir", target.data_dir)
    assert skopeo("inspect", "--raw", f"oci:{multi}:multi", text=False).stdout == filled.raw[f"{MULTI}:multi"]

    back = import_json(out, "--repository", "exported/back", "--data-dir", target.data_dir)
    assert back["skipped"] == [] and back["tags"]["imported"] == 2
    tags = json.loads(skopeo("list-tags", NO_TLS, f"docker://{target.host}/exported/back").stdout)["Tags"]
    assert sorted(tags) == ["one", "two"]

    refused = registry_cli("export", APP, filled.root, "--data-dir", target.data_dir, check_status=2)
    assert len(refused.stderr.strip().splitlines()) == 1 and "not an OCI image layout" in refused.stderr


def test_bad_inputs_are_one_line_or_reported_skips(filled: Filled, tmp_path: Path) -> None:
    neither = tmp_path / "neither"
    neither.mkdir()
    (neither / "something").write_text("x")
    for path in (neither, tmp_path / "absent"):
        result = registry_cli("import", path, "--data-dir", tmp_path / "data", check_status=2)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    copy = tmp_path / "copy"
    shutil.copytree(filled.root, copy, symlinks=True)
    tags = copy / "docker" / "registry" / "v2" / "repositories" / APP / "_manifests" / "tags"
    (tags / "one" / "current" / "link").write_bytes(b"\x00\xffgarbage")
    shutil.copytree(tags / "two", tags / "ghost")
    (tags / "ghost" / "current" / "link").write_text("sha256:" + "0" * 64)
    report = import_json(copy, "--data-dir", tmp_path / "data", status=1)
    reasons = {(s["type"], s["name"]): s["reason"] for s in report["skipped"]}
    assert "not ASCII" in reasons.pop(("tag", "one"))
    assert "missing" in reasons.pop(("tag", "ghost"))
    assert reasons.pop(("manifest", "sha256:" + "0" * 64)).startswith("missing")
    assert reasons == {}
    assert report["tags"]["imported"] == 2
    assert re.search(r"skipped tag +team/app ghost: ", registry_cli("import", copy, "--data-dir",
                                                                    tmp_path / "data", check_status=1).stdout)


def test_import_into_a_running_registry_on_postgresql(postgres_url: str, oci_image: OciLayout, skopeo,
                                                      tmp_path: Path) -> None:
    data = tmp_path / "data"
    with RegistryProcess(data, args=["--database-url", postgres_url]) as server:
        where = ("--data-dir", data, "--database-url", postgres_url)
        report = import_json(oci_image.path, "--repository", "pg/image", *where)
        assert report["skipped"] == [] and report["tags"]["imported"] == 2
        for tag in ("v1", "other"):
            raw = skopeo("inspect", NO_TLS, "--raw", f"docker://{server.host}/pg/image:{tag}", text=False).stdout
            assert raw == oci_image.manifest(tag)
        again = import_json(oci_image.path, "--repository", "pg/image", *where)
        assert again["tags"] == {"imported": 0, "present": 2, "skipped": 0}


def test_an_import_killed_midway_is_finished_by_the_next(tmp_path: Path) -> None:
    from tests.support.host import oci_arch
    from tests.support.images import OciLayoutWriter, file_layer

    images = 200
    writer = OciLayoutWriter(tmp_path / "layout")
    for number in range(images):
        writer.tag(writer.add_image(oci_arch(), [file_layer("/etc/n", f"{number}\n".encode())]), f"n{number}")
    writer.write()
    data = tmp_path / "data"
    command = [sys.executable, "-m", "registry", "import", str(writer.root), "--repository", "many/images",
               "--data-dir", str(data)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline:
            try:
                with sqlite3.connect(f"file:{data / 'registry.db'}?mode=ro", uri=True) as conn:
                    if conn.execute("SELECT count(*) FROM repository_blobs").fetchone()[0] >= 20:
                        break
            except sqlite3.Error:
                pass  # not created yet
            time.sleep(0.02)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == -9, "the import ended before it could be killed: give it more to do"
    partial = db_counts(data)
    assert 20 <= partial["repository_blobs"] < 2 * images and partial["tags"] < images

    report = import_json(writer.root, "--repository", "many/images", "--data-dir", data)
    assert report["blobs"]["present"] >= 20 and report["blobs"]["imported"] == 2 * images - report["blobs"]["present"]
    done = db_counts(data)
    assert (done["manifests"], done["tags"], done["repository_blobs"]) == (images, images, 2 * images)

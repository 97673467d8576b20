"""`registry cp`, against docker cp's documented behaviour (placement of files and directories, `SRC/.`,
tar streams, -a), with running and stopped containers; and what a hostile image or archive must not
reach: host paths outside the destination, host-side device nodes, setuid files, and code of the
image's own run by the privileged copier (glibc's NSS modules, CVE-2019-14271 in docker cp)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.runtime import images as im
from tests.runtime.conftest import Runtime


def _inspect(runtime: Runtime, name: str) -> dict:
    return json.loads(runtime.cli("inspect", name).stdout)[0]


def test_cp_out_of_and_into_a_running_container(runtime: Runtime, pulled_base: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runtime.cli("run", "-d", "--name", "copied", pulled_base, "sh", "-c",
                "mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b && ln -s /etc /data/etc-link && "
                "sleep 1000")
    try:
        deadline = time.monotonic() + 15
        while runtime.cli("exec", "copied", "test", "-L", "/data/etc-link", check=False).returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # a file onto a missing name, then into a directory under its own name
        runtime.cli("cp", "copied:/data/a", tmp_path / "a-copy")
        assert (tmp_path / "a-copy").read_text() == "one\n"
        (tmp_path / "into").mkdir()
        runtime.cli("cp", "copied:/data/a", tmp_path / "into")
        assert (tmp_path / "into" / "a").read_text() == "one\n"
        # a directory onto a missing name becomes it; into an existing one, a subdirectory; /. its contents
        runtime.cli("cp", "copied:/data", tmp_path / "tree")
        assert (tmp_path / "tree" / "sub" / "b").read_text() == "two\n"
        assert os.readlink(tmp_path / "tree" / "etc-link") == "/etc"  # a link, as it is, never followed
        runtime.cli("cp", "copied:/data", tmp_path / "into")
        assert (tmp_path / "into" / "data" / "a").exists()
        runtime.cli("cp", "copied:/data/sub/.", tmp_path / "into")
        assert (tmp_path / "into" / "b").read_text() == "two\n"
        # -L with SRC/. copies what the link points to, its contents; a name ending in a dot keeps it
        runtime.cli("cp", "-L", "copied:/data/etc-link/.", tmp_path / "etc-contents")
        assert (tmp_path / "etc-contents" / "hostname").exists()
        runtime.cli("exec", "copied", "sh", "-c", "echo dotted > /data/name.")
        runtime.cli("cp", "copied:/data/name.", tmp_path / "into")
        assert (tmp_path / "into" / "name.").read_text() == "dotted\n"
        # a symlink in the container resolves inside it: /data/etc-link/hostname is the container's
        runtime.cli("cp", "copied:/data/etc-link/hostname", tmp_path / "hostname")
        assert (tmp_path / "hostname").read_text().strip() == _inspect(runtime, "copied")["spec"]["hostname"]
        # into the container: root-owned unless -a
        source = tmp_path / "in.txt"
        source.write_text("from the host\n")
        os.chown(source, 1234, 1234)
        runtime.cli("cp", source, "copied:/data/")
        runtime.cli("cp", "-a", source, "copied:/data/kept.txt")
        shown = runtime.cli("exec", "copied", "sh", "-c", "cat /data/in.txt; stat -c '%u %g' /data/in.txt "
                            "/data/kept.txt").stdout.splitlines()
        assert shown == ["from the host", "0 0", "1234 1234"]
        # a tar stream both ways
        tar = runtime.cli_bytes("cp", "copied:/data/sub", "-")
        assert tar[257:262] == b"ustar"
        runtime.cli_bytes("cp", "-", "copied:/tmp", stdin=tar)
        assert runtime.cli("exec", "copied", "cat", "/tmp/sub/b").stdout == "two\n"
        # errors: exit 1 and one line
        missing = runtime.cli("cp", "copied:/nope", tmp_path / "x", check=False)
        assert missing.returncode == 1 and "no such file or directory" in missing.stderr and "Traceback" not in missing.stderr
        nowhere = runtime.cli("cp", "copied:/data/a", tmp_path / "no" / "such" / "dir", check=False)
        assert nowhere.returncode == 1 and "no such directory" in nowhere.stderr
        both = runtime.cli("cp", tmp_path / "a-copy", tmp_path / "b", check=False)
        assert both.returncode != 0 and "CONTAINER:PATH" in both.stderr
    finally:
        runtime.cli("rm", "-f", "copied", check=False)


def test_cp_with_a_stopped_container(runtime: Runtime, pulled_base: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runtime.cli("run", "--name", "done", pulled_base, "sh", "-c", "echo kept > /result")
    try:
        runtime.cli("cp", "done:/result", tmp_path / "result")
        assert (tmp_path / "result").read_text() == "kept\n"
        (tmp_path / "config").write_text("set\n")
        runtime.cli("cp", tmp_path / "config", "done:/config")
        runtime.cli("start", "done")
        assert runtime.cli("wait", "done").stdout == "0\n"
        runtime.cli("cp", "done:/config", tmp_path / "back")
        assert (tmp_path / "back").read_text() == "set\n"
        assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if "done" in line]
    finally:
        runtime.cli("rm", "-f", "done", check=False)


def test_cp_refuses_a_hostile_archive_on_the_host(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What a container sends is checked before it lands: no link or name leaves the destination."""
    import io
    import tarfile

    from registry.runtime.copy import CopyError, _receive

    def archive(*members: tarfile.TarInfo) -> int:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for member in members:
                tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isreg() else None)
        read_fd, write_fd = os.pipe()
        os.write(write_fd, buffer.getvalue())
        os.close(write_fd)
        return read_fd

    victim = tmp_path / "victim"
    victim.write_text("safe\n")
    link = tarfile.TarInfo("evil")
    link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path)
    through = tarfile.TarInfo("evil/victim")
    through.size = 1
    hard = tarfile.TarInfo("hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, str(victim)
    dotdot = tarfile.TarInfo("../victim")
    dotdot.size = 1
    (tmp_path / "out").mkdir()
    for members in ((link, through), (hard,), (dotdot,)):
        with pytest.raises((CopyError, tarfile.TarError)):
            _receive(archive(*members), str(tmp_path / "out" / "x"), (0, 0), raw=False)
        assert victim.read_text() == "safe\n"


EVIL_LIBRARY = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen("/pwned", "w");
    if (f) { fputs("the image's code ran in the copier\n", f); fclose(f); }
}
"""


@pytest.fixture(scope="module")
def nss_image(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image whose nsswitch.conf names a module of its own, which writes /pwned when loaded."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler on this host to build the image's NSS module (apt-get install -y gcc)")
    work = tmp_path_factory.mktemp("nss")
    (work / "evil.c").write_text(EVIL_LIBRARY)
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(work / "libnss_evil.so.2"), str(work / "evil.c")],
                   check=True, capture_output=True)
    library = (work / "libnss_evil.so.2").read_bytes()
    entries = im.busybox_entries() + [
        im.file("etc/nsswitch.conf", "passwd: evil\ngroup: evil\nhosts: evil\n"),
        im.directory("lib"), im.directory("lib/x86_64-linux-gnu"),
        im.file("lib/x86_64-linux-gnu/libnss_evil.so.2", library, mode=0o755),
        im.directory("usr/lib"), im.directory("usr/lib/x86_64-linux-gnu"),
        im.file("usr/lib/x86_64-linux-gnu/libnss_evil.so.2", library, mode=0o755),
        im.directory("data", uid=4321, gid=4321), im.file("data/owned", "x\n", uid=4321, gid=4321),
    ]
    image = im.push(runtime.registry.url, f"rt-{uuid.uuid4().hex[:8]}/nss", "v1", [im.layer(entries)],
                    {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "Volumes": {"/data": {}}})
    runtime.cli("pull", image.reference)
    return image.reference


def test_the_copier_never_runs_the_images_nss_modules(runtime: Runtime, nss_image: str, tmp_path: Path) -> None:
    runtime.cli("run", "-d", "--name", "nss", nss_image, "sleep", "100")  # its /data volume filled by the copier
    try:
        runtime.cli("cp", "nss:/data", tmp_path / "mine")
        assert (tmp_path / "mine" / "owned").stat().st_uid == os.getuid()  # without -a: the copier's
        runtime.cli("cp", "-a", "nss:/data", tmp_path / "out")
        assert (tmp_path / "out" / "owned").stat().st_uid == 4321
        runtime.cli("cp", "-a", tmp_path / "out", "nss:/tmp/in")
        assert runtime.cli("exec", "nss", "test", "-e", "/pwned", check=False).returncode == 1, \
            "the image's libnss_evil.so.2 was loaded by the privileged copier"
        # owners are numbers, in both directions: 4321 has no name anywhere
        assert runtime.cli("exec", "nss", "stat", "-c", "%u:%g", "/data/owned", "/tmp/in/owned").stdout == \
            "4321:4321\n4321:4321\n"
    finally:
        runtime.cli("rm", "-f", "-v", "nss", check=False)


def test_modes_are_kept_and_setid_bits_do_not_reach_the_host(runtime: Runtime, pulled_base: str,
                                                              tmp_path: Path) -> None:
    runtime.cli("run", "-d", "--name", "modes", pulled_base, "sh", "-c",
                "mkdir -m 1777 /scratch && touch /scratch/shared && chmod 2775 /scratch/shared && "
                "cp /bin/busybox /suid && chmod 4755 /suid && sleep 100")
    try:
        deadline = time.monotonic() + 15
        while runtime.cli("exec", "modes", "test", "-u", "/suid", check=False).returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        runtime.cli("cp", "modes:/scratch", tmp_path / "scratch")
        assert oct((tmp_path / "scratch").stat().st_mode & 0o7777) == "0o1777"  # sticky and world-write kept
        assert oct((tmp_path / "scratch" / "shared").stat().st_mode & 0o7777) == "0o775"  # setgid dropped
        runtime.cli("cp", "modes:/suid", tmp_path / "suid")
        assert (tmp_path / "suid").stat().st_mode & 0o7777 == 0o755, "no setuid file of the container's on the host"
        runtime.cli("cp", "-a", "modes:/suid", tmp_path / "suid-a")
        assert (tmp_path / "suid-a").stat().st_mode & 0o7777 == 0o4755  # -a: as it was, owners and all
        (tmp_path / "sticky").mkdir(mode=0o1777)
        os.chmod(tmp_path / "sticky", 0o1777)
        runtime.cli("cp", tmp_path / "sticky", "modes:/sticky")
        assert runtime.cli("exec", "modes", "stat", "-c", "%a", "/sticky").stdout == "1777\n"
    finally:
        runtime.cli("rm", "-f", "modes", check=False)

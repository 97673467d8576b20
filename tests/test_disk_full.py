"""A full disk (issue 16), on a small loop-mounted ext4 holding the registry's whole data dir.

A push bigger than the free space (chunked or monolithic) is a 503 UNAVAILABLE with Retry-After
that says the disk is full, logged at ERROR without a traceback, and leaves nothing staged: no
upload file, no session row. /readyz is 503 `down: disk full` while free space is below
`storage.min_free_bytes`, logged once per change. A manifest PUT while SQLite has no room is
the same 503. Once space is freed, the same pushes succeed without a restart, byte-exact.
A client that goes away mid-body is still not a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from registry.errors import is_database_full
from registry.storage import StorageFull
from registry.storage.base import full_disk_as_storage_full
from tests.support.http import send_partial
from tests.support.server import RegistryProcess

MiB = 1024 * 1024
DISK_BYTES = 128 * MiB
FLOOR = 8 * MiB  # storage.min_free_bytes of the registry under test
BLOB_BYTES = 24 * MiB  # more than is left while the disk is nearly full, less than it holds when empty
SETTLE = 20.0  # seconds /readyz may take to see a change
# A manifest bigger than SQLite's WAL ever grows by itself (its auto-checkpoint keeps it near
# 4 MiB), so storing it must take new blocks from the disk whatever ran before.
MANIFEST_BYTES = 8 * MiB


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 128 MiB ext4 on a loop device, mounted for this module; unmounted and detached after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root")
    for tool in ("mkfs.ext4", "losetup", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (e2fsprogs, mount)")
    base = tmp_path_factory.mktemp("small-disk")
    image, mountpoint = base / "disk.img", base / "mnt"
    mountpoint.mkdir()
    with open(image, "wb") as f:
        f.truncate(DISK_BYTES)
    # -m 0: no blocks kept for root, so what statvfs calls available is what the registry (root) gets.
    made = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
    if made.returncode:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
    attached = _run("losetup", "--find", "--show", str(image))
    if attached.returncode:
        pytest.skip(f"no loop device on this host: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    try:
        mounted = _run("mount", "-t", "ext4", device, str(mountpoint))
        if mounted.returncode:
            pytest.skip(f"cannot mount a loop device here: {mounted.stderr.strip()}")
        try:
            yield mountpoint
        finally:
            for _ in range(50):  # the registry process may take a moment to let go
                if _run("umount", str(mountpoint)).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                _run("umount", "--lazy", str(mountpoint))
    finally:
        _run("losetup", "-d", device)


@pytest.fixture(scope="module")
def registry(small_disk: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    log_path = tmp_path_factory.mktemp("small-disk-log") / "registry.log"  # the log must not fill up too
    with RegistryProcess(small_disk / "data", log_path=log_path,
                         env={"REGISTRY_STORAGE_MIN_FREE_BYTES": str(FLOOR),
                              "REGISTRY_LIMITS_MANIFEST_BYTES": str(2 * MANIFEST_BYTES)}) as server:
        yield server


@pytest.fixture
def http(registry: RegistryProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=60) as client:
        yield client


def _free(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


@contextlib.contextmanager
def _filled(disk: Path, leave: int) -> Iterator[None]:
    """Take all but about `leave` bytes of the disk with a filler file; delete it afterwards."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        size = max(_free(disk) - leave - MiB, 0)
        os.posix_fallocate(fd, 0, size)
        if leave == 0:  # the last blocks, one at a time, until the disk refuses
            block = b"\0" * 65536
            try:
                while True:
                    os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        else:
            os.posix_fallocate(fd, size, max(_free(disk) - leave, 0))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        filler.unlink()
        raise
    os.close(fd)
    try:
        yield
    finally:
        filler.unlink()
        # ext4 hands freed blocks out again only once its journal commits the delete (up to 5 s
        # later): until then the next test's writes could still find the disk full.
        os.sync()


@contextlib.contextmanager
def _out_of_inodes(disk: Path) -> Iterator[None]:
    """Take every free inode with empty files (blocks stay free); remove them afterwards."""
    filler = disk / "inode-filler"
    filler.mkdir()
    try:
        for number in range(10_000_000):
            try:
                os.close(os.open(filler / str(number), os.O_WRONLY | os.O_CREAT, 0o600))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        yield
    finally:
        shutil.rmtree(filler)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _assert_disk_full(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    error = response.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert what in error["message"] and "disk full" in error["message"], error
    assert int(response.headers["Retry-After"]) > 0


def _staged(registry: RegistryProcess) -> list[str]:
    return sorted(os.listdir(registry.data_dir / "uploads"))


def _error_lines(registry: RegistryProcess, text: str) -> list[str]:
    return [line for line in registry.log_path.read_text(errors="replace").splitlines()
            if " ERROR " in line and text in line]


def _readyz_until(http: httpx.Client, status: int) -> dict:
    deadline = time.monotonic() + SETTLE
    while True:
        response = http.get("/readyz")
        if response.status_code == status:
            return response.json()
        if time.monotonic() > deadline:
            pytest.fail(f"/readyz still {response.status_code} after {SETTLE}s: {response.text}")
        time.sleep(0.2)


def _push_chunked(http: httpx.Client, repo: str, data: bytes, chunk: int = 4 * MiB) -> httpx.Response:
    """POST, PATCH by `chunk`, PUT: the first failing response, or the PUT's."""
    start = http.post(f"/v2/{repo}/blobs/uploads/")
    if start.status_code != 202:
        return start
    location = start.headers["Location"]
    for offset in range(0, len(data), chunk):
        piece = data[offset:offset + chunk]
        patched = http.patch(location, content=piece, headers={
            "Content-Range": f"{offset}-{offset + len(piece) - 1}", "Content-Type": "application/octet-stream"})
        if patched.status_code != 202:
            return patched
        location = patched.headers["Location"]
    return http.put(location, params={"digest": _sha(data)})


def test_readyz_is_unready_below_the_floor_and_says_why_once(http, registry, small_disk):
    assert _readyz_until(http, 200)["checks"] == {"database": "ok", "storage": "ok"}
    before = len(_error_lines(registry, "readiness: storage is down ("))
    with _filled(small_disk, leave=FLOOR // 2):
        body = _readyz_until(http, 503)
        # SQLite lives on the same disk here, so both say so.
        assert body["checks"] == {"database": "down: disk full", "storage": "down: disk full"}
        for _ in range(5):
            assert http.get("/readyz").status_code == 503
        assert http.get("/healthz").status_code == 200
        assert http.get("/v2/").status_code == 200  # pulls and the rest still answer
    assert _readyz_until(http, 200)["checks"] == {"database": "ok", "storage": "ok"}
    down = _error_lines(registry, "readiness: storage is down (")[before:]
    assert len(down) == 1 and "storage.min_free_bytes" in down[0], down  # once per change, not per probe
    assert len(_error_lines(registry, "readiness: database is down (")[before:]) == 1
    assert "readiness: storage is back" in registry.log_tail(200)


def test_readyz_watches_the_sqlite_directory_where_it_is(small_disk, tmp_path):
    """Blobs on a roomy disk, SQLite on the small one: only the database check goes down."""
    database = small_disk / "elsewhere" / "registry.db"
    own = RegistryProcess(tmp_path / "data", log_path=tmp_path / "registry.log",
                          env={"REGISTRY_STORAGE_MIN_FREE_BYTES": str(FLOOR),
                               "REGISTRY_DATABASE_URL": f"sqlite+aiosqlite:///{database}"})
    with own, httpx.Client(base_url=own.url, timeout=60) as http:
        assert _readyz_until(http, 200)["checks"] == {"database": "ok", "storage": "ok"}
        with _filled(small_disk, leave=FLOOR // 2):
            assert _readyz_until(http, 503)["checks"] == {"database": "down: disk full", "storage": "ok"}
        assert _readyz_until(http, 200)["checks"] == {"database": "ok", "storage": "ok"}
    assert len(_error_lines(own, f"readiness: database is down ({database.parent} has")) == 1


def test_chunked_push_bigger_than_the_free_space(http, registry, small_disk):
    data = os.urandom(BLOB_BYTES)
    errors_before = len(_error_lines(registry, "blob storage is full"))
    with _filled(small_disk, leave=6 * MiB):
        start = http.post("/v2/full/chunked/blobs/uploads/")
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        first = http.patch(location, content=data[:4 * MiB], headers={"Content-Range": f"0-{4 * MiB - 1}"})
        assert first.status_code == 202, first.text  # fits
        assert _staged(registry) == [location.rsplit("/", 1)[1]]
        rest = http.patch(location, content=data[4 * MiB:], headers={"Content-Range": f"{4 * MiB}-{len(data) - 1}"})
        _assert_disk_full(rest, "blob storage")
        # The whole session is gone at once, the first chunk's bytes included.
        assert _staged(registry) == []
        status = http.get(location)
        assert status.status_code == 404 and status.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        assert _free(small_disk) >= 5 * MiB  # the space is back
    assert len(_error_lines(registry, "blob storage is full")) == errors_before + 1

    # Space back: the same push works without a restart, and reads back byte-exact.
    pid = registry.pid
    done = _push_chunked(http, "full/chunked", data)
    assert done.status_code == 201, done.text
    assert http.get(f"/v2/full/chunked/blobs/{_sha(data)}").content == data
    assert registry.pid == pid and registry.proc.poll() is None
    assert _staged(registry) == []


def test_monolithic_pushes_bigger_than_the_free_space(http, registry, small_disk):
    data = os.urandom(BLOB_BYTES)
    digest = _sha(data)
    with _filled(small_disk, leave=6 * MiB):
        # POST ?digest= with the whole body
        posted = http.post("/v2/full/mono/blobs/uploads/", params={"digest": digest}, content=data)
        _assert_disk_full(posted, "blob storage")
        assert _staged(registry) == []
        assert http.head(f"/v2/full/mono/blobs/{digest}").status_code == 404

        # POST a session, then PUT ?digest= with the whole body
        start = http.post("/v2/full/mono/blobs/uploads/")
        assert start.status_code == 202
        put = http.put(start.headers["Location"], params={"digest": digest}, content=data)
        _assert_disk_full(put, "blob storage")
        assert _staged(registry) == []
        assert http.get(start.headers["Location"]).status_code == 404

        # POST with a first chunk (no digest): the session it opened goes too
        first = http.post("/v2/full/mono/blobs/uploads/", content=data)
        _assert_disk_full(first, "blob storage")
        assert _staged(registry) == []
        assert not list((registry.data_dir / "blobs").rglob(digest.split(":")[1]))

    posted = http.post("/v2/full/mono/blobs/uploads/", params={"digest": digest}, content=data)
    assert posted.status_code == 201, posted.text
    assert http.get(f"/v2/full/mono/blobs/{digest}").content == data
    start = http.post("/v2/full/mono2/blobs/uploads/")
    put = http.put(start.headers["Location"], params={"digest": digest}, content=data)
    assert put.status_code == 201, put.text
    assert http.get(f"/v2/full/mono2/blobs/{digest}").content == data
    assert _staged(registry) == []


def test_a_commit_that_finds_no_room_drops_the_session(http, registry, small_disk):
    """The bytes are staged, then the disk runs out of inodes: publishing needs a new directory
    (blobs/sha256/<2 hex>/), so the commit fails, and the session goes like a failed write's."""
    blobs = registry.data_dir / "blobs" / "sha256"
    data = os.urandom(MiB)
    while (blobs / _sha(data)[7:9]).exists():  # a prefix directory the commit must create
        data = os.urandom(MiB)
    start = http.post("/v2/full/commit/blobs/uploads/")
    patched = http.patch(start.headers["Location"], content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
    assert patched.status_code == 202, patched.text
    with _out_of_inodes(small_disk):
        assert _readyz_until(http, 503)["checks"]["storage"] == "down: disk full"  # the probe needs an inode
        put = http.put(patched.headers["Location"], params={"digest": _sha(data)})
        _assert_disk_full(put, "blob storage")
        assert _staged(registry) == []
        assert http.get(patched.headers["Location"]).status_code == 404
        assert http.head(f"/v2/full/commit/blobs/{_sha(data)}").status_code == 404
    _readyz_until(http, 200)
    done = _push_chunked(http, "full/commit", data)
    assert done.status_code == 201, done.text
    assert http.get(f"/v2/full/commit/blobs/{_sha(data)}").content == data


def test_a_client_gone_mid_body_is_not_a_full_disk(http, registry):
    _readyz_until(http, 200)  # room above the floor, whatever the tests before left
    start = http.post("/v2/full/gone/blobs/uploads/")
    location = start.headers["Location"]
    sent = 6 * MiB + 17
    send_partial(registry.host, "PATCH", location, declared=12 * MiB, send=os.urandom(sent))
    deadline = time.monotonic() + 10
    while (status := http.get(location)).status_code != 204 or status.headers["Range"] == "0-0":
        assert time.monotonic() < deadline, status.text
        time.sleep(0.05)
    staged = int(status.headers["Range"].split("-")[1]) + 1
    assert 0 < staged <= sent  # kept, so the client can resume: only a full disk drops a session
    assert not _error_lines(registry, "full/gone")  # logged at INFO as an aborted request, not an error
    assert http.delete(location).status_code == 204


# The test above runs before this one: in one full run of the suite, /readyz still said "disk full"
# 20 s after this test had freed the disk (cause not found: run alone, 78 MiB of 115 are free after
# it, SQLite's database and WAL holding 17 MiB each), and the next test waited for readiness.
def test_manifest_put_while_the_database_disk_is_full(http, registry, small_disk):
    repo = "full/manifest"
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(1000)
    for blob in (config, layer):
        assert http.post(f"/v2/{repo}/blobs/uploads/", params={"digest": _sha(blob)}, content=blob).status_code == 201
    annotations = {f"org.example.filler.{i}": os.urandom(512).hex() for i in range(MANIFEST_BYTES // 1024)}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _sha(layer),
                    "size": len(layer)}],
        "annotations": annotations,
    }).encode()
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    with _filled(small_disk, leave=0):
        full = http.put(f"/v2/{repo}/manifests/v1", content=manifest, headers=headers)
        _assert_disk_full(full, "metadata database")
        assert http.get(f"/v2/{repo}/manifests/v1").status_code == 404  # nothing half-stored
    assert _error_lines(registry, "the metadata database's disk is full")
    stored = http.put(f"/v2/{repo}/manifests/v1", content=manifest, headers=headers)
    assert stored.status_code == 201, stored.text
    assert http.get(f"/v2/{repo}/manifests/v1", headers={"Accept": headers["Content-Type"]}).content == manifest


def test_which_errors_mean_a_full_disk():
    """What the loop device cannot show here: EDQUOT (a quota) and PostgreSQL's disk_full."""
    for number in (errno.ENOSPC, errno.EDQUOT):
        with pytest.raises(StorageFull, match="/srv/x"):
            with full_disk_as_storage_full("/srv/x"):
                raise OSError(number, os.strerror(number))
    with pytest.raises(ConnectionResetError):  # a client gone is not a full disk
        with full_disk_as_storage_full("/srv/x"):
            raise ConnectionResetError("Connection lost")

    class Wrapped(Exception):  # SQLAlchemy's error, holding the driver's as .orig
        def __init__(self, orig: Exception) -> None:
            self.orig = orig

    class PostgresError(Exception):
        def __init__(self, sqlstate: str) -> None:
            self.sqlstate = sqlstate

    assert is_database_full(Wrapped(PostgresError("53100")))
    assert not is_database_full(Wrapped(PostgresError("57P01")))  # admin shutdown: down, not full
    assert not is_database_full(Wrapped(sqlite3.OperationalError("database is locked")))

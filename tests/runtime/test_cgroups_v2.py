"""The cgroup paths a host may lack, whatever this host is: what create() writes where on a v2-only layout (and
on a v1 blkio controller with or without BFQ), checked against a directory tree standing in for /sys/fs/cgroup
whose "kernel" gives each new cgroup the files a real one would have. The last test uses the real v2 hierarchy
where there is one."""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable

import pytest

from registry.runtime.cgroups import CgroupError, ContainerCgroups, Hierarchies, Resources
from tests.support import host

CID = "c" * 64


@pytest.fixture
def kernel_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """`kernel_files("io.weight", ...)`: every directory made under tmp_path from now on gets these (empty) files,
    as the kernel gives a new cgroup the interface files of its controllers, and rmdir takes them away with it."""
    made: list[str] = []
    real_mkdir, real_rmdir = Path.mkdir, os.rmdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        existed = self.is_dir()
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        if not existed and self.is_relative_to(tmp_path):
            for name in made:
                (self / name).touch()

    def rmdir(path: str | Path, *args: object, **kwargs: object) -> None:
        if Path(path).is_relative_to(tmp_path) and Path(path).is_dir():
            for name in made:
                Path(path, name).unlink(missing_ok=True)
        real_rmdir(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(os, "rmdir", rmdir)
    return lambda *names: made.extend(names)


def device() -> str:
    found = host.block_device()
    if found is None:
        pytest.skip("no block device on this host to name in a throttle rule (/sys/block lists none with a /dev node)")
    return found


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hierarchies:
    monkeypatch.setenv("REGISTRY_RUNTIME_CGROUP", "registry-runtime")
    return Hierarchies(v2_root=tmp_path, v2_controllers={"memory", "pids", "cpu", "io"}, v1={})


def test_limits_are_written_to_the_v2_files(v2: Hierarchies, tmp_path: Path) -> None:
    cg = ContainerCgroups.create(CID, Resources(memory=32 << 20, cpus=1.5, cpu_shares=1024, pids_limit=8), v2)
    leaf = tmp_path / "registry-runtime" / CID
    assert cg.dirs == {"v2": str(leaf)}
    assert set(cg.where.values()) == {"v2"}
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (tmp_path / "registry-runtime" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (leaf / "memory.max").read_text() == str(32 << 20)
    assert (leaf / "cpu.max").read_text() == "150000 100000"
    assert (leaf / "cpu.weight").read_text() == "39"  # runc's mapping of 1024 shares
    assert (leaf / "pids.max").read_text() == "8"
    cg.freeze(True)
    assert (leaf / "cgroup.freeze").read_text() == "1"


def test_swap_without_swap_accounting_is_an_error(v2: Hierarchies) -> None:
    with pytest.raises(CgroupError, match="swap"):
        ContainerCgroups.create(CID, Resources(memory=32 << 20, memory_swap=64 << 20), v2)


def test_device_rates_go_to_io_max(v2: Hierarchies, tmp_path: Path) -> None:
    ContainerCgroups.create(CID, Resources(device_read_bps=[(device(), 1 << 20)]), v2)
    text = (tmp_path / "registry-runtime" / CID / "io.max").read_text()
    assert text.endswith(f"rbps={1 << 20}") and ":" in text.split()[0]


def test_device_iops_go_to_io_max(v2: Hierarchies, tmp_path: Path) -> None:
    ContainerCgroups.create(CID, Resources(device_read_iops=[(device(), 300)], device_write_iops=[(device(), 400)]), v2)
    text = (tmp_path / "registry-runtime" / CID / "io.max").read_text()
    assert text.endswith("wiops=400")  # the fake file keeps the last write; the kernel merges keys per device


def test_blkio_weight_goes_to_io_weight_where_io_cost_offers_it(v2: Hierarchies, tmp_path: Path,
                                                               kernel_files: Callable[..., None]) -> None:
    kernel_files("io.weight", "io.max")
    ContainerCgroups.create(CID, Resources(blkio_weight=300), v2)
    assert (tmp_path / "registry-runtime" / CID / "io.weight").read_text() == "default 300"


def test_blkio_weight_without_io_weight_is_refused(v2: Hierarchies, tmp_path: Path,
                                                  kernel_files: Callable[..., None]) -> None:
    """A v2 host whose disks use mq-deadline or none, without io.cost: rates still work, a weight is an error."""
    kernel_files("io.max")
    with pytest.raises(CgroupError, match="--blkio-weight needs io.weight"):
        ContainerCgroups.create(CID, Resources(blkio_weight=300, device_read_bps=[(device(), 1 << 20)]), v2)
    assert not (tmp_path / "registry-runtime" / CID).exists(), "a refused create leaves no directory"
    ContainerCgroups.create(CID, Resources(device_read_bps=[(device(), 1 << 20)]), v2)
    assert (tmp_path / "registry-runtime" / CID / "io.max").read_text().endswith(f"rbps={1 << 20}")


@pytest.mark.parametrize("weight_file", ["blkio.bfq.weight", "blkio.weight", None])
def test_blkio_weight_on_v1(weight_file: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            kernel_files: Callable[..., None]) -> None:
    """v1 with BFQ (blkio.bfq.weight), with CFQ (blkio.weight, before Linux 5.0), and with neither."""
    monkeypatch.setenv("REGISTRY_RUNTIME_CGROUP", "registry-runtime")
    blkio = tmp_path / "blkio"
    blkio.mkdir()
    v1 = Hierarchies(v2_root=None, v2_controllers=set(), v1={"blkio": blkio})
    if weight_file:
        kernel_files(weight_file)
        cg = ContainerCgroups.create(CID, Resources(blkio_weight=300), v1)
        assert cg.dirs == {"blkio": str(blkio / "registry-runtime" / CID)}
        assert (blkio / "registry-runtime" / CID / weight_file).read_text() == "300"
    else:
        with pytest.raises(CgroupError, match="--blkio-weight needs blkio.bfq.weight"):
            ContainerCgroups.create(CID, Resources(blkio_weight=300), v1)
        assert not (blkio / "registry-runtime" / CID).exists()


def test_a_controller_missing_from_v2_and_v1_is_an_error(tmp_path: Path) -> None:
    only_memory = Hierarchies(v2_root=tmp_path, v2_controllers={"memory"}, v1={})
    with pytest.raises(CgroupError, match="pids"):
        ContainerCgroups.create(CID, Resources(pids_limit=8), only_memory)
    assert not (tmp_path / "registry-runtime" / CID).exists(), "a failed create leaves no directory"


def test_device_rules_as_an_ebpf_program_on_the_real_v2_hierarchy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where v1 has no devices controller, Docker's device rules are an eBPF program on the v2 cgroup."""
    import stat
    import uuid

    from tests.runtime.conftest import _require_root_prerequisites

    _require_root_prerequisites()
    hier = Hierarchies.detect()
    if hier.v2_root is None:
        pytest.skip(f"no cgroup v2 hierarchy mounted ({host.cgroups().describe()}): the device program attaches to a "
                    "v2 cgroup; the v1 devices controller is tested by test_isolation")
    block_device = device()
    hier.v1.pop("devices", None)  # as on a v2-only host
    monkeypatch.setenv("REGISTRY_RUNTIME_CGROUP", f"registry-runtime-test-{uuid.uuid4().hex[:8]}")
    cg = ContainerCgroups.create(uuid.uuid4().hex * 2, Resources(), hier)
    disk = f"/tmp/rt-bpf-{uuid.uuid4().hex[:8]}"
    try:
        if "devices" not in cg.where:
            pytest.skip("this kernel refused a cgroup device eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE); the "
                        "runtime then gives containers no CAP_MKNOD instead")
        assert cg.where.get("devices") == "v2" and cg.guards_devices
        block = os.stat(block_device).st_rdev
        os.mknod(disk, stat.S_IFBLK | 0o600, block)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                cg.join(os.getpid())
                os.close(os.open("/dev/null", os.O_RDWR))
                try:
                    os.open(disk, os.O_RDONLY)
                except PermissionError:
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the disk opened, or /dev/null did not"
    finally:
        if os.path.exists(disk):
            os.unlink(disk)
        cg.kill_all()
        cg.remove()
        for d in cg.dirs.values():
            try:
                os.rmdir(os.path.dirname(d))
            except OSError:
                pass


def test_join_places_another_process_by_its_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                kernel_files: Callable[..., None]) -> None:
    """A pid (or 0, the caller) goes to cgroup.procs on v2 and on v1 to `tasks` (one thread: the container's
    first process is single-threaded, and for the caller's own thread the kernel skips its global lock)."""
    monkeypatch.setenv("REGISTRY_RUNTIME_CGROUP", "registry-runtime")
    kernel_files("cgroup.procs", "tasks")
    (tmp_path / "unified").mkdir()
    (tmp_path / "pids").mkdir()
    hybrid = Hierarchies(v2_root=tmp_path / "unified", v2_controllers={"memory"}, v1={"pids": tmp_path / "pids"})
    cg = ContainerCgroups.create(CID, Resources(memory=32 << 20, pids_limit=8), hybrid)
    assert cg.where["memory"] == "v2" and cg.where["pids"] == "v1"
    cg.join(4242)
    assert (tmp_path / "unified" / "registry-runtime" / CID / "cgroup.procs").read_text() == "4242"
    assert (tmp_path / "pids" / "registry-runtime" / CID / "tasks").read_text() == "4242"
    assert (tmp_path / "pids" / "registry-runtime" / CID / "cgroup.procs").read_text() == ""
    files = cg.open_join_files()  # as exec's helper does before it enters the container's mount namespace
    try:
        cg.join_by_files(files, 4343)
    finally:
        for _, fd in files:
            os.close(fd)
    assert (tmp_path / "pids" / "registry-runtime" / CID / "tasks").read_text() == "4343"
    assert (tmp_path / "unified" / "registry-runtime" / CID / "cgroup.procs").read_text() == "4343"
    (tmp_path / "pids" / "registry-runtime" / CID / "tasks").write_text("")  # a real file takes each write anew
    cg.join()  # the caller itself, as the container's first process joins
    assert (tmp_path / "pids" / "registry-runtime" / CID / "tasks").read_text() == "0"


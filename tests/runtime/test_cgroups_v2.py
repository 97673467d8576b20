"""The cgroup v2 side, which this (v1) machine cannot run: what create() writes where on a v2-only layout,
checked against a directory tree standing in for /sys/fs/cgroup."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.runtime.cgroups import CgroupError, ContainerCgroups, Hierarchies, Resources

CID = "c" * 64


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
    device = next((f"/dev/{d}" for d in ("vda", "sda", "nvme0n1", "xvda", "loop0") if Path(f"/dev/{d}").exists()))
    ContainerCgroups.create(CID, Resources(device_read_bps=[(device, 1 << 20)]), v2)
    text = (tmp_path / "registry-runtime" / CID / "io.max").read_text()
    assert text.endswith(f"rbps={1 << 20}") and ":" in text.split()[0]


def test_a_controller_missing_from_v2_and_v1_is_an_error(tmp_path: Path) -> None:
    only_memory = Hierarchies(v2_root=tmp_path, v2_controllers={"memory"}, v1={})
    with pytest.raises(CgroupError, match="pids"):
        ContainerCgroups.create(CID, Resources(pids_limit=8), only_memory)
    assert not (tmp_path / "registry-runtime" / CID).exists(), "a failed create leaves no directory"


def test_device_rules_as_an_ebpf_program_on_the_real_v2_hierarchy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where v1 has no devices controller, Docker's device rules are an eBPF program on the v2 cgroup."""
    import os
    import stat
    import uuid

    from tests.runtime.conftest import _require_root_prerequisites

    _require_root_prerequisites()
    hier = Hierarchies.detect()
    if hier.v2_root is None:
        pytest.fail("no cgroup v2 hierarchy mounted", pytrace=False)
    hier.v1.pop("devices", None)  # as on a v2-only host
    monkeypatch.setenv("REGISTRY_RUNTIME_CGROUP", f"registry-runtime-test-{uuid.uuid4().hex[:8]}")
    cg = ContainerCgroups.create(uuid.uuid4().hex * 2, Resources(), hier)
    disk = f"/tmp/rt-bpf-{uuid.uuid4().hex[:8]}"
    try:
        assert cg.where.get("devices") == "v2" and cg.guards_devices
        block = os.stat(next(d for d in ("/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda", "/dev/loop0")
                             if os.path.exists(d))).st_rdev
        os.mknod(disk, stat.S_IFBLK | 0o600, block)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                cg.add(os.getpid())
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
